"""hac_tf/losses/__init__.py: one re-export convention. Every loss module lists its public names in
``__all__`` (names it defines itself), and the package exports exactly their union, the same objects."""

import ast
import os
import pkgutil

import hac_tf.losses as losses

LOSSES_DIR = os.path.dirname(losses.__file__)


def _defined_names(module_name: str) -> set:
    with open(os.path.join(LOSSES_DIR, f"{module_name}.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_the_package_exports_exactly_what_its_modules_list():
    public = sorted(info.name for info in pkgutil.iter_modules(losses.__path__) if not info.name.startswith("_"))
    assert {"barlow", "cosine", "mochi", "ntxent", "vicreg"} <= set(public)
    union = []
    for name in public:
        module = getattr(losses, name)  # imported as a submodule by the package
        assert module.__all__, f"hac_tf/losses/{name}.py lists no public name"
        assert set(module.__all__) <= _defined_names(name), f"{name}.__all__ names something it does not define"
        for export in module.__all__:
            assert getattr(losses, export) is getattr(module, export), export
        union += list(module.__all__)
    assert sorted(losses.__all__) == sorted(union) and len(set(union)) == len(union)


def test_vicreg_is_exported_like_every_other_loss():
    from hac_tf.losses.vicreg import VICRegTerms, vicreg_loss, vicreg_terms

    assert (losses.vicreg_loss, losses.vicreg_terms, losses.VICRegTerms) == (vicreg_loss, vicreg_terms, VICRegTerms)
    assert {"nt_xent", "barlow_twins", "MochiConfig", "vicreg_loss"} <= set(losses.__all__)
