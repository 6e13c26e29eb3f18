"""The package's shape: module-level imports between medlake's modules form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in SCRIPTS.joinpath("medlake").rglob("*.py"):
        name = ".".join(path.relative_to(SCRIPTS).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.parse(path.read_text()).body:  # module level: function-level imports are deliberate
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medlake"):
                for alias in node.names:
                    candidate = f"{node.module}.{alias.name}"
                    deps.add(candidate if candidate in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name.startswith("medlake"))
        graph[name] = {dep for dep in deps if dep in modules and dep != name}
    return graph


def test_no_import_cycles():
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
