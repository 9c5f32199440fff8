"""The tree reads as the architecture (issue 18), checked so that drifting from it fails a test:

* the import graph of roiprompt's units (top-level subpackages and modules) has no cycle and follows the declared
  layers ``errors/types/files -> data, prompts, metrics -> runtime -> models -> predictor -> methods -> evaluation
  -> batch -> app -> cli``;
* no file in roiprompt/ is over 400 lines unless README's "Where each method lives" table names it (one algorithm);
* the CLI routes by registry, never by method name;
* ``roiprompt methods`` lists every registered method with its task.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import roiprompt

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "roiprompt"

#: unit -> layer; a unit may import units of its own layer or lower ones, never higher ones.
LAYERS = {"errors": 0, "types": 0, "files": 0, "version": 0, "data": 1, "prompts": 1, "metrics": 1, "runtime": 2, "models": 3,
          "predictor": 4, "methods": 5, "evaluation": 6, "batch": 7, "app": 8, "cli": 9}
MAX_LINES = 400


def _module_name(path: Path) -> tuple[list[str], list[str]]:
    """(module parts, package parts) of a file: roiprompt/cli/bench.py -> (roiprompt.cli.bench, roiprompt.cli)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return parts, parts
    return parts, parts[:-1]


def imported_modules(path: Path, source: str | None = None) -> list[tuple[str, int]]:
    """Every roiprompt module ``path`` (or ``source``, named as if it were ``path``) imports, as (absolute dotted
    name, line): relative imports resolved, imports inside functions or ``if TYPE_CHECKING`` blocks included (a
    layer is a design rule, not only a run-time one)."""
    _, package = _module_name(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != "roiprompt" and not target.startswith("roiprompt."):
                continue
            # `from . import x` / `from .pkg import x`: x may be a submodule, so count it (x a name costs nothing:
            # it resolves to the same unit as the module it comes from)
            found += [(f"{target}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "roiprompt"]
    return found


def unit_of(module: str) -> str:
    """roiprompt.models.cache -> models; the package root and the names it re-exports (``from roiprompt import
    load_method``) -> "roiprompt", which sits above every layer."""
    parts = module.split(".")
    if len(parts) > 1 and ((PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file()):
        return parts[1]
    return "roiprompt"


def unit_graph() -> dict[str, dict[str, list[str]]]:
    """{unit: {imported unit: ["path:line", ...]}} over every .py file under roiprompt/ except its __init__."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":
            continue  # the public API re-exports everything; it sits on top of every layer
        src = unit_of(".".join(_module_name(path)[0]))
        graph.setdefault(src, {})
        for module, line in imported_modules(path):
            dst = unit_of(module)
            if dst != src:
                graph[src].setdefault(dst, []).append(f"{path.relative_to(REPO)}:{line}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first search with colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) is None and (cycle := visit(nxt)):
                return cycle
        colour[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if colour.get(node) is None and (cycle := visit(node)):
            return cycle
    return None


def test_graph_code_sees_relative_function_level_and_package_imports():
    """The parser itself: relative imports of every depth, `from . import x`, imports inside functions."""
    source = ("from ...errors import InputError\nfrom . import cache\nimport numpy\n"
              "def f():\n    from ...methods.oneshot import OneShotMethod\n    import roiprompt.cli\n"
              "    from roiprompt import load_method\n")
    modules = imported_modules(PACKAGE / "models" / "backbones" / "x.py", source)
    assert modules == [("roiprompt.errors.InputError", 1), ("roiprompt.models.backbones.cache", 2),
                       ("roiprompt.methods.oneshot.OneShotMethod", 5), ("roiprompt.cli", 6),
                       ("roiprompt.load_method", 7)]
    assert [unit_of(m) for m, _ in modules] == ["errors", "models", "methods", "cli", "roiprompt"]
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": []}, "b": {}}) is None


def test_units_are_declared():
    graph = unit_graph()
    units = set(graph) | {dst for edges in graph.values() for dst in edges}
    assert units <= set(LAYERS), f"units without a layer: {sorted(units - set(LAYERS))}; declare them in LAYERS"


def test_no_import_cycle_between_units():
    graph = unit_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle " + " -> ".join(cycle) + "; first edges: " + "; ".join(
        f"{a}->{b} at {graph[a][b][0]}" for a, b in zip(cycle, cycle[1:]))


def test_imports_follow_the_layers():
    bad = [f"{src} (layer {LAYERS[src]}) imports {dst} (layer {LAYERS[dst]}) at {', '.join(where[:3])}"
           for src, edges in unit_graph().items() for dst, where in edges.items()
           if src in LAYERS and dst in LAYERS and LAYERS[dst] > LAYERS[src]]
    assert not bad, "\n".join(bad)


def readme_method_files() -> set[str]:
    """Repository paths in the "code" column of README's "Where each method lives" table. A bare file name
    (``warping.py`` in "`roiprompt/methods/med_persam/method.py` (+ `warping.py`)") lives next to the path before
    it in the same cell."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Where each method lives", 1)
    assert len(section) == 2, "README.md has no '## Where each method lives' section"
    rows = [line for line in section[1].split("\n## ", 1)[0].splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    col = header.index("code")
    paths: set[str] = set()
    for row in rows[2:]:
        folder = None
        for name in re.findall(r"`([^`]+)`", row.strip("|").split("|")[col]):
            if "/" in name:
                folder = name.rsplit("/", 1)[0]
                paths.add(name)
            elif folder is not None:
                paths.add(f"{folder}/{name}")
    return paths


def test_readme_table_is_parsed():
    paths = readme_method_files()
    assert "roiprompt/methods/med_persam/warping.py" in paths  # the bare `warping.py` next to method.py
    assert all((REPO / p).is_file() for p in paths), sorted(p for p in paths if not (REPO / p).is_file())


def test_no_file_over_400_lines_unless_one_algorithm_named_in_readme():
    allowed = readme_method_files()
    long = {str(p.relative_to(REPO)): len(p.read_text().splitlines())
            for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    bad = {p: n for p, n in long.items() if n > MAX_LINES and p not in allowed}
    assert not bad, f"files over {MAX_LINES} lines not named in README's 'Where each method lives': {bad}"


def _method_name_literals(tree: ast.AST, names: list[str]) -> list[tuple[int, str]]:
    """(line, literal) of every string constant in a comparison (==, !=, in, match case) or in a
    startswith/endswith call that is a method name or the prefix of one."""

    def is_method(value: object) -> bool:  # 3+ characters: `mode == "r"` is no routing on "registration"
        return isinstance(value, str) and len(value) >= 3 and any(n.startswith(value) for n in names)

    def constants(node: ast.AST) -> list[ast.Constant]:
        return [c for c in ast.walk(node) if isinstance(c, ast.Constant) and is_method(c.value)]

    hits: list[ast.Constant] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            hits += constants(node)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("startswith", "endswith"):
            hits += constants(node)
        elif isinstance(node, ast.match_case):
            hits += constants(node.pattern)
    return sorted({(c.lineno, c.value) for c in hits})


def test_method_name_check_catches_routing():
    src = ("if args.method == 'med_persam': pass\nif name in ('segprompt', 'vpt'): pass\n"
           "if m.startswith('concept'): pass\nparser.add_argument('--m', default='box_prompt')\n")
    assert [v for _, v in _method_name_literals(ast.parse(src), roiprompt.list_methods())] == \
        ["med_persam", "segprompt", "vpt", "concept"]  # the default is not routing


def test_cli_routes_without_method_names():
    names = roiprompt.list_methods()
    bad = [f"{path.relative_to(REPO)}:{line}: {value!r}"
           for path in sorted((PACKAGE / "cli").rglob("*.py"))
           for line, value in _method_name_literals(ast.parse(path.read_text()), names)]
    assert not bad, "the CLI compares method names (route by the registry's task/family instead):\n" + "\n".join(bad)


def test_methods_command_lists_every_method_with_its_task(capsys):
    from roiprompt.cli import main
    from roiprompt.methods import method_info

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        cells = [c for c in re.split(r"[\s│┃|]+", line) if c]
        if cells:
            rows.setdefault(cells[0], set()).update(cells[1:])
    missing = {n: method_info(n).task for n in roiprompt.list_methods() if method_info(n).task not in rows.get(n, ())}
    assert not missing, f"`roiprompt methods` does not list these methods with their task: {missing}\n{out}"
