"""The package's import graph, read from the source with ``ast`` (imports inside functions included):
no cycles, the library never imports the runner or the benchmarks, and no private name crosses modules.

Layers (docs/architecture.md): ``langdml_core.runner`` and ``langdml_core.bench`` sit on top of the library
(every other module of ``langdml_core``); bench imports the library only.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "langdml_core"
RUNNER = ("langdml_core.runner",)
BENCH = ("langdml_core.bench",)


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module below ``root/package`` (a package's name is its __init__)."""
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import of a module of the package.

    ``from a.b import c`` imports module a.b.c when that is a module, else the name c of a.b; relative
    imports resolve against the importing module's package."""
    found = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _longest_module(alias.name, modules)
                if target:
                    found.append((target, "", node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    found.append((f"{source}.{alias.name}", "", node.lineno))
                elif source in modules:
                    found.append((source, alias.name, node.lineno))
    return found


def _longest_module(dotted: str, modules: dict[str, Path]) -> str | None:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def graph(root: Path = ROOT, package: str = PACKAGE) -> tuple[dict[str, set[str]], list[str]]:
    """(module -> modules it imports, private-name imports across modules as readable lines)."""
    modules = module_names(root, package)
    edges: dict[str, set[str]] = {name: set() for name in modules}
    private = []
    for name, path in modules.items():
        for target, imported, line in imports(name, path, modules):
            if target != name:
                edges[name].add(target)
            if imported.startswith("_") and not imported.startswith("__") and target != name:
                private.append(f"{path.relative_to(root)}:{line} imports {imported} from {target}")
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _in(name: str, layer: tuple[str, ...]) -> bool:
    return any(name == top or name.startswith(top + ".") for top in layer)


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    """Library -> runner or bench, and bench -> runner."""
    bad = []
    for name, targets in sorted(edges.items()):
        for target in sorted(targets):
            library = not _in(name, RUNNER + BENCH)
            if (library and _in(target, RUNNER + BENCH)) or (_in(name, BENCH) and _in(target, RUNNER)):
                bad.append(f"{name} imports {target}")
    return bad


EDGES, PRIVATE = graph()


def test_the_graph_is_read():
    assert (
        "langdml_core.runner.cli" in EDGES and "langdml_core.runner.tune" in EDGES["langdml_core.runner.cli"]
    )
    assert "langdml_core.config" in EDGES["langdml_core.train"]


def test_no_import_cycles():
    assert cycles(EDGES) == []


def test_the_library_never_imports_the_runner():
    assert layer_violations(EDGES) == []


def test_no_private_name_is_imported_from_another_module():
    assert PRIVATE == []


@pytest.fixture
def bad_package(tmp_path):
    """A package with a cycle through a function-level and a relative import, a library module importing the
    runner, and a private import."""
    files = {
        "langdml_core/__init__.py": "",
        "langdml_core/a.py": "def f():\n    from langdml_core.b import g\n",
        "langdml_core/b.py": "from . import a\nfrom .a import _hidden\n",
        "langdml_core/runner/__init__.py": "",
        "langdml_core/runner/cli.py": "import langdml_core.a\n",
        "langdml_core/c.py": "from langdml_core.runner import cli\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_checks_catch_what_they_should(bad_package):
    edges, private = graph(bad_package)
    assert cycles(edges) == [["langdml_core.a", "langdml_core.b"]]
    assert layer_violations(edges) == ["langdml_core.c imports langdml_core.runner.cli"]
    assert private == ["langdml_core/b.py:2 imports _hidden from langdml_core.a"]
