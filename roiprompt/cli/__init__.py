"""Command line: ``roiprompt datasets | methods | segment | oneshot | bench | explain | demo``.

One ``main(argv=None) -> int`` with argparse subcommands, callable from tests. Each command lives in its own
module (``roiprompt/cli/<command>.py``) with ``register(sub, parents)``, which adds its parser and sets
``func``; :func:`main` only parses, applies the global options and calls ``args.func(args)``.

Global options (``--threads``, ``--runtime``) are accepted before or after the command name: the top parser and
every subparser share them, and in the subparsers their defaults are suppressed, so a value given before the
command name is kept unless it is given again after it.

Exit codes: 0 done, 1 some input files were skipped (listed), 2 bad arguments or set-up. Error messages speak in
the CLI's options (``--root``, ``--weights``, ``--shots``), never in Python calls.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from ..errors import RoiPromptError
from . import bench, datasets, demo, explain, methods, oneshot, segment
from ._common import _cli_message

COMMANDS = (datasets, methods, segment, oneshot, bench, explain, demo)


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
    parser = argparse.ArgumentParser(prog="roiprompt", description=__doc__.splitlines()[0],
                                     parents=[_global_options(suppress_defaults=False)])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = [_global_options(suppress_defaults=True)]
    for command in COMMANDS:
        command.register(sub, parents)
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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
