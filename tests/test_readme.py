"""README's "## Python API" block is code that runs: parsed, every name it reads defined in it, and executed as
written on the real datasets and LiteMedSAM (the block is the documentation most users copy first)."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

from tests.conftest import data_root

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_block() -> tuple[str, int]:
    """(code, README line of its first line) of the first ```python block under "## Python API"."""
    text = README.read_text()
    start = text.index("\n## Python API")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match is not None and "\n## " not in text[start + 1: match.start()], "no ```python block in Python API"
    return match.group(1), text[: match.start(1)].count("\n") + 1


def compiled_block():
    """The block compiled so that tracebacks and errors give README.md's own line numbers."""
    code, first = python_api_block()
    return compile("\n" * (first - 1) + code, str(README), "exec")


def undefined_names(code: str) -> list[tuple[int, str]]:
    """(line in the block, name) of every name read before any statement of the block binds it."""
    tree = ast.parse(code)
    bound: set[str] = set(dir(builtins))
    missing = []
    for stmt in tree.body:  # top-level statements in order: a name must be bound by an earlier (or the same) one
        stores = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        stores |= {(a.asname or a.name).split(".")[0] for n in ast.walk(stmt)
                   if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound | stores:
                missing.append((node.lineno, node.id))
        bound |= stores
    return missing


def test_python_api_block_defines_what_it_uses():
    code, first = python_api_block()
    compiled_block()  # valid Python
    missing = [f"README.md:{first + line - 1}: {name}" for line, name in undefined_names(code)]
    assert not missing, "the Python API block reads names it never defines:\n" + "\n".join(missing)


@pytest.mark.slow
def test_python_api_block_runs_as_written(tmp_path, monkeypatch):
    for name in ("kvasir_seg", "jsrt", "busbra"):
        data_root(name)  # fail in CI, skip elsewhere, when a dataset is missing
    code, first = python_api_block()
    if missing := undefined_names(code):  # it would stop there with a NameError, after minutes of fitting
        line, name = missing[0]
        pytest.fail(f"README.md:{first + line - 1}: NameError: {name!r} is not defined (the block cannot run)")
    monkeypatch.chdir(tmp_path)  # its cache_dir=".cache/embeddings" lands here, never in the checkout
    exec(compiled_block(), {"__name__": "readme"})
