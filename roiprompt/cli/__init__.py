"""Command line: ``roiprompt datasets | methods | segment | oneshot | classify | bench | explain | demo | report``.

One ``main(argv=None) -> int`` with argparse subcommands, callable from tests. Each command lives in its own
module (``roiprompt/cli/<command>.py``) with ``register(sub, parents)``, which adds its parser and sets
``func``; :func:`main` only parses, applies the global options and calls ``args.func(args)``.

Global options (``--threads``, ``--runtime``) are accepted before or after the command name: the top parser and
every subparser share them, and in the subparsers their defaults are suppressed, so a value given before the
command name is kept unless it is given again after it.

Exit codes, the same for every command (:data:`~roiprompt.cli._common.EXIT_CODES`, also the --help epilog):

* 0: all done;
* 1: some input files were skipped (each listed at the end with its reason);
* 2: bad arguments or set-up: a bad option value, missing data or weights, an output folder that cannot be
  written (checked before any model loads), a folder holding a run with other settings, or an output write that
  fails mid-run (full disk: the message names the file; what was finished stays, and a rerun resumes);
* 3: internal error: one line on stderr naming a log file that holds the traceback (under ``$ROIPROMPT_LOG_DIR``,
  default ``~/.cache/roiprompt/logs``); never a traceback on the console. ``segment`` and ``oneshot`` go on with
  the other images when one image hits such an error, and exit 3 at the end (``classify predict`` too).

Error messages speak in the CLI's options (``--root``, ``--weights``, ``--shots``), never in Python calls.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Sequence

from ..errors import RoiPromptError
from . import app, bench, classify, datasets, demo, explain, methods, oneshot, report, segment
from ._common import EXIT_CODES, _cli_message, write_error_log

COMMANDS = (datasets, methods, segment, oneshot, classify, bench, explain, demo, report, app)


def _global_options(suppress_defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes. Added to the top parser and to each subparser; in the subparsers their
    defaults are suppressed so a value given before the command name is not reset after it."""
    from ..runtime import RUNTIMES

    default = argparse.SUPPRESS if suppress_defaults else None
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global options")
    g.add_argument("--threads", type=int, default=default,
                   help="CPU threads for the encoders (default: PyTorch's choice)")
    g.add_argument("--runtime", choices=RUNTIMES, default=default,
                   help="how the image encoder runs (default auto: OpenVINO when installed, else eager); "
                        "sets $ROIPROMPT_RUNTIME")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``roiprompt`` parser; every subcommand sets ``func(args) -> int``."""
    parser = argparse.ArgumentParser(prog="roiprompt", description=__doc__.splitlines()[0], epilog=EXIT_CODES,
                                     parents=[_global_options(suppress_defaults=False)])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = [_global_options(suppress_defaults=True)]
    for command in COMMANDS:
        command.register(sub, parents)
    for command_parser in sub.choices.values():  # every command exits with the same codes
        if not command_parser.epilog:
            command_parser.epilog = EXIT_CODES
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``roiprompt`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a bad argument (2): returned, not raised, for in-process callers
        return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 2
    args.argv = argv  # recorded in benchmark records as the exact command
    if args.threads is not None:
        if args.threads < 1:
            print(f"roiprompt: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(args.threads)
    if args.runtime is not None:
        os.environ["ROIPROMPT_RUNTIME"] = args.runtime  # read by every backbone this command builds
    try:
        return args.func(args)
    except (RoiPromptError, OSError) as err:  # bad input or set-up: one line in the CLI's terms, no traceback
        print(f"roiprompt {args.command}: error: {_cli_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"roiprompt {args.command}: interrupted (segment and oneshot resume when run again)", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - a bug: one line here, the traceback in a log file
        return _internal_error(args.command, argv, err)


def _internal_error(command: str, argv: Sequence[str], err: Exception) -> int:
    """Report an unexpected exception in one line on stderr, its traceback in a log file; exit status 3."""
    from ..errors import shown

    message = str(err).splitlines()[0] if str(err).strip() else ""
    summary = f"{type(err).__name__}: {message}" if message else type(err).__name__
    try:
        where = f"the traceback is in {shown(write_error_log(command, argv, traceback.format_exc()))}"
    except OSError as log_err:
        where = f"the log could not be written ({log_err.strerror or log_err})"
    print(f"roiprompt {command}: internal error: {summary}; {where}", file=sys.stderr)
    return 3


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
