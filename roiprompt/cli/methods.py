"""``roiprompt methods``: the table of registered methods, with their task, family, role and paper."""

from __future__ import annotations

import argparse

from ._common import _console


def cmd_methods(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..methods import list_methods, method_info

    where = ", ".join(f"{k} {v}" for k, v in (("task", args.task), ("family", args.family)) if v)
    table = Table(title="roiprompt methods" + (f" ({where})" if where else ""))
    for col in ("method", "task", "family", "role", "trains", "implements"):
        table.add_column(col)
    for name in list_methods(task=args.task, family=args.family):
        info = method_info(name)
        table.add_row(name, info.task, info.family, info.role, "yes" if info.trains else "no", info.paper)
    _console().print(table)
    return 0


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``methods`` subcommand."""
    from ..methods.base import TASKS

    p = sub.add_parser("methods", parents=parents, help="list every method with its task, family and paper")
    p.add_argument("--task", choices=TASKS, help="only the methods of this task")
    p.add_argument("--family", help="only the methods of this family (e.g. med_persam, segprompt)")
    p.set_defaults(func=cmd_methods)
