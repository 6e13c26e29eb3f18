"""The package's shape: imports between medlake's modules form no cycle, and each concern has its room."""

from __future__ import annotations

import ast
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

# Edges (importer, imported) a cycle may use, each with its reason. Only function-level imports of an
# optional extra belong here; today there are none.
ALLOWED_EDGES: dict[tuple[str, str], str] = {}


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def _runtime_imports(tree: ast.AST):
    """Every import statement that runs, at module level or inside a function (not under TYPE_CHECKING)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking_block(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in SCRIPTS.joinpath("medlake").rglob("*.py"):
        name = ".".join(path.relative_to(SCRIPTS).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medlake"):
                for alias in node.names:
                    candidate = f"{node.module}.{alias.name}"
                    deps.add(candidate if candidate in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name.startswith("medlake"))
        graph[name] = {dep for dep in deps if dep in modules and dep != name and (name, dep) not in ALLOWED_EDGES}
    return graph


def test_no_import_cycles_counting_function_level_imports():
    graph = import_graph()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join((*path[path.index(module) :], module)))
        if module in done:
            return
        for dep in sorted(graph[module]):
            visit(dep, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
    assert "medlake.lake.landing" not in graph["medlake.lake.dicom_headers"]  # the leaf stays a leaf


def test_the_cycle_finder_sees_function_level_imports(tmp_path):
    """The guard itself: a circle made only by a function-level import is found."""
    tree = ast.parse("def f():\n    from medlake.a import b\n\nif TYPE_CHECKING:\n    from medlake.c import d\n")
    found = [node.module for node in _runtime_imports(tree)]
    assert found == ["medlake.a"]


def test_pacs_has_one_room_per_concern():
    """Orthanc, the SR, the model, the gate and the loop are named by their folders; nothing else is loose."""
    pacs = SCRIPTS / "medlake" / "pacs"
    rooms = {path.name for path in pacs.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    loose = {path.name for path in pacs.glob("*.py")} - {"__init__.py", "gate.py"}
    assert rooms == {"orthanc", "sr", "model", "loop"} and not loose, (rooms, loose)
    graph = import_graph()
    # pacs run and pacs watch are siblings: neither imports the other, both open runs through the session.
    run, watch = "medlake.pacs.loop.run", "medlake.pacs.loop.watch"
    assert watch not in graph[run] and run not in graph[watch]
    assert "medlake.pacs.loop.session" in graph[run] & graph[watch]
