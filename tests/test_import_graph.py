"""The import graph between the parts of hac_tf (its subpackages and top-level modules) has no
cycle: imports between parts run one way (issue 18).

The graph is read from the source, not from ``sys.modules``: every ``import`` / ``from ... import``
of every module of hac_tf, at module level, inside functions and under ``if TYPE_CHECKING:``,
relative imports resolved, plus ``importlib.import_module("hac_tf.<part>...")`` calls with a
constant (or f-string) prefix. Print it with ``python tests/test_import_graph.py``.
"""

from __future__ import annotations

import ast
import os
import sys
from typing import Dict, List, Optional, Set

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "hac_tf"

#: part -> imported part -> import sites ("path:line")
Graph = Dict[str, Dict[str, List[str]]]


def _module_name(package_dir: str, path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(package_dir))[: -len(".py")].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def _part(module: str, package_dir: str) -> Optional[str]:
    """The part of ``hac_tf`` that ``module`` (dotted) belongs to; the root package is ``hac_tf``;
    None outside the package."""
    names = module.split(".")
    if names[0] != os.path.basename(package_dir):
        return None
    if len(names) == 1:
        return names[0]
    child = os.path.join(package_dir, names[1])
    return names[1] if os.path.isdir(child) or os.path.isfile(child + ".py") else names[0]


def _imported_modules(node: ast.AST, module: str, is_package: bool) -> List[str]:
    """Dotted names an import node (or an importlib.import_module call) brings in."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        # ``from pkg import name``: name may be a submodule (a part, when pkg is the root)
        return [prefix] + [f"{prefix}.{a.name}" for a in node.names if a.name != "*"]
    if isinstance(node, ast.Call) and node.args and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            or (isinstance(node.func, ast.Name) and node.func.id == "import_module")):
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return [arg.value]
        if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
            return [str(arg.values[0].value).rstrip(".")]
    return []


def import_graph(package_dir: str = os.path.join(REPO, PACKAGE)) -> Graph:
    """The import graph between the parts of the package at ``package_dir`` (self-edges left out)."""
    graph: Graph = {}
    root = os.path.dirname(package_dir)
    for dirpath, dirnames, filenames in os.walk(package_dir):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for filename in sorted(f for f in filenames if f.endswith(".py")):
            path = os.path.join(dirpath, filename)
            module = _module_name(package_dir, path)
            source = _part(module, package_dir)
            edges = graph.setdefault(source, {})
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                for name in _imported_modules(node, module, filename == "__init__.py"):
                    target = _part(name, package_dir)
                    if target is None or target == source:
                        continue
                    # ``from hac_tf import x`` names the root and x: the root only if x is no part
                    if target == os.path.basename(package_dir) and isinstance(node, ast.ImportFrom) and all(
                            _part(f"{name}.{a.name}", package_dir) != target for a in node.names):
                        continue
                    site = f"{os.path.relpath(path, root)}:{node.lineno}"
                    if site not in edges.setdefault(target, []):
                        edges[target].append(site)
    return graph


def find_cycle(graph: Graph) -> Optional[List[str]]:
    """A cycle ``[a, b, ..., a]`` of the graph, or None."""
    done: Set[str] = set()

    def visit(node: str, path: List[str]) -> Optional[List[str]]:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, {})):
            found = visit(nxt, path + [node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def layers(graph: Graph) -> List[List[str]]:
    """Parts grouped bottom-up: each imports only parts of earlier layers (the graph is acyclic)."""
    nodes = set(graph) | {t for edges in graph.values() for t in edges}
    placed: Dict[str, int] = {}
    while len(placed) < len(nodes):
        for node in sorted(nodes - set(placed)):
            deps = graph.get(node, {})
            if all(d in placed for d in deps):
                placed[node] = 1 + max((placed[d] for d in deps), default=-1)
    out: List[List[str]] = [[] for _ in range(max(placed.values()) + 1)]
    for node, level in sorted(placed.items()):
        out[level].append(node)
    return out


def render(graph: Graph) -> str:
    lines = [f"{source} -> {', '.join(sorted(edges)) or '(nothing)'}" for source, edges in sorted(graph.items())]
    if find_cycle(graph) is None:
        lines += ["layers, bottom-up:"] + [f"  {i}: {' '.join(layer)}" for i, layer in enumerate(layers(graph))]
    return "\n".join(lines)


def _write(root, files: Dict[str, str]) -> str:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root / "pkg")


# ----------------------------------------------------------------------------- tests
def test_hac_tf_parts_import_each_other_without_a_cycle():
    graph = import_graph()
    print(render(graph))
    cycle = find_cycle(graph)
    sites = [] if cycle is None else [f"{a} -> {b}: {graph[a][b]}" for a, b in zip(cycle, cycle[1:])]
    assert cycle is None, "import cycle " + " -> ".join(cycle) + "\n" + "\n".join(sites)
    assert {"training", "export", "methods", "plugins"} <= set(graph)
    assert "training" not in graph["export"]  # exporting a run is the training side's (run_export.py)


def test_the_graph_sees_function_level_relative_and_dynamic_imports(tmp_path):
    package = _write(tmp_path, {
        "pkg/__init__.py": "from pkg._version import v\n",
        "pkg/_version.py": "v = 1\n",
        "pkg/low/__init__.py": "",
        "pkg/low/a.py": "import os\n\ndef f():\n    from pkg import high\n",
        "pkg/high/__init__.py": "from . import b\n",
        "pkg/high/b.py": "from ..low import a\nimport importlib\nimportlib.import_module(f'pkg.mid.{a}')\n",
        "pkg/mid/__init__.py": "from pkg import v\n",
    })
    graph = import_graph(package)
    assert {s: sorted(t) for s, t in graph.items()} == {
        "pkg": ["_version"], "_version": [], "low": ["high"], "high": ["low", "mid"], "mid": ["pkg"]}
    assert graph["low"]["high"] == ["pkg/low/a.py:4"]
    assert find_cycle(graph) == ["high", "low", "high"]
    del graph["low"]["high"]
    assert find_cycle(graph) is None
    assert layers(graph) == [["_version", "low"], ["pkg"], ["mid"], ["high"]]


if __name__ == "__main__":
    print(render(import_graph()))
    sys.exit(0 if find_cycle(import_graph()) is None else 1)
