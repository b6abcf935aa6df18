"""Import hygiene: what each side loads, no cycles, no reaching into another package's privates.

The cloud must not load the agent's runtime (printer drivers, python-escpos, pycups, pyserial,
pyusb): the API's workers would carry them for nothing, and a broken printer library would stop
the API. The import graph is read with :mod:`ast` from the source tree, so the checks cover every
module, not only those a test happens to import.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The project's own packages: every top-level folder with an ``__init__.py`` (the wheel's
#: packages and ``ops``), so a new package is checked from its first commit.
FIRST_PARTY = tuple(
    sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests")
)

#: Top-level modules the cloud side must never load: the agent's runtime and the printer stack.
AGENT_ONLY = ("branch_agent", "escpos", "cups", "serial", "usb", "PIL", "qrcode", "barcode")


def _loaded_by(*modules: str) -> list[str]:
    """Modules (of :data:`AGENT_ONLY`) in ``sys.modules`` after importing ``modules`` in a fresh
    interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = {AGENT_ONLY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in bad)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


@pytest.mark.parametrize(
    "modules",
    [
        ("cloud_api",),
        ("cloud_api._server", "cloud_api._app"),
        ("cloud_api.provisioning", "cloud_api.printers"),
        ("agent_config",),
    ],
    ids=lambda m: "+".join(m),
)
def test_cloud_does_not_load_the_agent_runtime(modules: tuple[str, ...]) -> None:
    assert _loaded_by(*modules) == []


def test_printermaster_api_does_not_load_the_agent_runtime(tmp_path: Path) -> None:
    """``printermaster api`` (each of its workers too) up to reading its settings."""
    code = (
        "import json, sys\n"
        "from printermaster import main\n"
        f"assert main(['api', '--config', {str(tmp_path / 'missing.toml')!r}]) == 2\n"
        "assert 'cloud_api' in sys.modules\n"
        f"bad = {AGENT_ONLY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in bad)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


# --- the import graph ------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module name imported (a module or package, resolved)
    line: int
    when: When


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _source_files() -> dict[str, Path]:
    files = {}
    for package in FIRST_PARTY:
        for path in sorted((ROOT / package).rglob("*.py")):
            files[_module_name(path)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_main_guard(test: ast.expr) -> bool:
    """``if __name__ == "__main__":``: its imports run only when the module is the program,
    loaded as ``__main__`` and not under its own name, so they close no cycle."""
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


#: When an import runs: as its module is imported, when a function is called, only when the
#: module runs as the program, or never (only for the type checker).
When = Literal["import", "call", "program", "typing"]


def _walk(node: ast.AST, when: When) -> list[tuple[ast.Import | ast.ImportFrom, When]]:
    """Every import under ``node``, with when it runs."""
    found: list[tuple[ast.Import | ast.ImportFrom, When]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            found.append((child, when))
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            found += _walk(child, "typing" if when == "typing" else "call")
        elif isinstance(child, ast.If) and _is_main_guard(child.test) and when == "import":
            found += _walk(ast.Module(body=child.body, type_ignores=[]), "program")
            found += _walk(ast.Module(body=child.orelse, type_ignores=[]), when)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                found += _walk(ast.Module(body=[stmt], type_ignores=[]), "typing")
            for stmt in child.orelse:
                found += _walk(ast.Module(body=[stmt], type_ignores=[]), when)
        else:
            found += _walk(child, when)
    return found


def _imports(modules: dict[str, Path]) -> list[Import]:
    """Imports of first-party modules, each resolved to the module it loads.

    ``from pkg import name`` names the submodule ``pkg.name`` when there is one, else ``pkg``.
    """
    found: list[Import] = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        for node, when in _walk(tree, "import"):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".")
                    if not is_package:
                        base.pop()
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join([*base, node.module] if node.module else base)
                else:
                    prefix = node.module or ""
                targets = [
                    f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in modules else prefix
                    for alias in node.names
                ]
            for target in targets:
                if target.split(".")[0] in FIRST_PARTY:
                    found.append(Import(name, target, node.lineno, when))
    return found


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _graph(modules: dict[str, Path], *, deferred: bool) -> dict[str, set[str]]:
    """Module -> modules its imports execute (the target's packages included, except those the
    importer is inside of, which are already being imported). ``deferred``: count the imports
    in functions too."""
    counted = {"import", "call"} if deferred else {"import"}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for imp in _imports(modules):
        if imp.when not in counted:
            continue
        own = {*_ancestors(imp.importer), imp.importer}
        for target in [*_ancestors(imp.target), imp.target]:
            if target in modules and target not in own:
                graph[imp.importer].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each with one cycle
    through it spelled out."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(component)) for component in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first)."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError("a strongly connected component without a cycle")


def test_the_graph_reader_sees_imports() -> None:
    """The checks below only mean something if the reader finds imports and cycles."""
    assert {"agent_config", "branch_agent", "cloud_api", "ops", "protocol"} <= set(FIRST_PARTY)
    modules = _source_files()
    graph = _graph(modules, deferred=False)
    assert {"protocol", "cloud_api._settings"} <= graph["cloud_api._app"]
    # in a function: only in the deferred graph; under TYPE_CHECKING: in neither
    deferred = _graph(modules, deferred=True)
    assert "cloud_api" not in graph["printermaster._cli"]
    assert "cloud_api" in deferred["printermaster._cli"]
    assert "cloud_api._metrics" not in deferred["cloud_api._observe"]
    # under ``if __name__ == "__main__":``: in neither
    assert "ops._fake_printer_cli" not in deferred["ops.fake_printer"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _report(cycles: list[list[str]]) -> str:
    return "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_import_cycle() -> None:
    """Imports that run when the module is imported: a cycle here breaks on import order."""
    cycles = _cycles(_graph(_source_files(), deferred=False))
    assert not cycles, _report(cycles)


def test_no_deferred_import_cycle() -> None:
    """An import moved into a function to dodge a cycle is still a cycle of the design: count
    the imports in functions too (not those only for the type checker)."""
    cycles = _cycles(_graph(_source_files(), deferred=True))
    assert not cycles, _report(cycles)


def _private_reach(imp: Import) -> bool:
    """Whether ``imp`` names a private module (``_x``) of a package other than its own."""
    importer_top = imp.importer.split(".")[0]
    parts = imp.target.split(".")
    if parts[0] == importer_top:
        return False
    return any(part.startswith("_") and not part.startswith("__") for part in parts[1:])


def test_no_private_module_of_another_package() -> None:
    """Packages talk through the names their ``__init__`` exports, never their ``_modules``."""
    reaches = sorted(
        {
            f"{imp.importer}:{imp.line} imports {imp.target}"
            for imp in _imports(_source_files())
            if _private_reach(imp)
        }
    )
    assert not reaches, f"{len(reaches)} private imports:\n" + "\n".join(reaches)
