"""Structure guards of issue 18: the model and the config name no method or plug-in (they loop over
the registries), and the modules of hac_tf.methods import each other without a circle."""

from __future__ import annotations

import ast
import os
from typing import Dict, Iterator, Set

from hac_tf.methods import METHOD_NAMES
from hac_tf.plugins import PLUGIN_MODULES

PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tree(path: str) -> ast.Module:
    with open(os.path.join(PACKAGE, path), encoding="utf-8") as f:
        return ast.parse(f.read())


def _code_strings(tree: ast.Module) -> Iterator[str]:
    """Names, attributes and string constants of the code (docstrings left out)."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, ast.Attribute):
            yield node.attr
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.value


def test_the_model_names_no_plugin_and_the_config_no_method():
    plugin_words = set(PLUGIN_MODULES) | {"EquiModModule", "AugSelfModule", "ViewmakerModule"}
    model_words = set(_code_strings(_tree("hac_tf/methods/model.py")))
    assert not model_words & plugin_words, sorted(model_words & plugin_words)
    for path in ("hac_tf/training/config.py", "hac_tf/training/builders.py", "hac_tf/methods/spec.py"):
        words = set(_code_strings(_tree(path))) - {"simsiam"}  # the spec's default method
        assert not words & set(METHOD_NAMES), (path, sorted(words & set(METHOD_NAMES)))


def test_the_training_package_names_no_plugin():
    """The trainer, the builders and the config loop over the plug-ins and use their hooks
    (own_objective, SOURCE_KEYS, check_config; hac_tf/plugins/base.py): no name, attribute or
    string of their code contains a plug-in's name (comments and docstrings may)."""
    training = os.path.join(PACKAGE, "hac_tf", "training")
    named = {}
    for filename in sorted(f for f in os.listdir(training) if f.endswith(".py")):
        words = set(_code_strings(_tree(os.path.join("hac_tf", "training", filename))))
        hits = sorted(w for w in words if any(p in w.lower() for p in PLUGIN_MODULES))
        if hits:
            named[filename] = hits
    assert named == {}


def _runtime_imports(module: str) -> Set[str]:
    """hac_tf.methods modules imported by ``module`` outside ``if TYPE_CHECKING:`` blocks."""
    tree = _tree(os.path.join("hac_tf", "methods", f"{module}.py"))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and getattr(node.test, "id", "") ==
            "TYPE_CHECKING" for b in node.body for n in ast.walk(b)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.module.startswith("hac_tf.methods."):
            out.add(node.module.split(".")[2])
    return out


def test_hac_tf_methods_has_no_import_circle():
    modules = [f[:-3] for f in os.listdir(os.path.join(PACKAGE, "hac_tf", "methods"))
               if f.endswith(".py") and f != "__init__.py"]
    graph: Dict[str, Set[str]] = {m: _runtime_imports(m) for m in modules}
    assert "model" not in graph["registry"] and "spec" not in graph["registry"]

    def reaches(start: str, goal: str, seen: Set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [m for m in modules if reaches(m, m, set())] == []
