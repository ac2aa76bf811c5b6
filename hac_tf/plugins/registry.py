"""The one registry of plug-ins: name -> plug-in module, in the order the model builds their layers
and runs their hooks.

A plug-in is a module ``hac_tf/plugins/<name>.py`` that defines ``CONFIG_CLASS`` and implements the
plug-in interface (hac_tf/plugins/base.py); its module name is its name (``ModelSpec(<name>=...)``,
the config section ``plugins.<name>``) and its ``ORDER`` places it among the others.
:func:`load_plugin_modules` imports every module of the ``hac_tf.plugins`` package and registers
those that are plug-ins, so a new ``hac_tf/plugins/<name>.py`` is found without being listed
anywhere (``import hac_tf.plugins`` calls it), as base methods are (hac_tf/methods/registry.py).
Every list of plug-in names (``hac_tf.plugins.PLUGIN_MODULES``, the ModelSpec's plug-in keys, the
config's ``plugins`` sections) is derived from here.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Dict, Tuple

#: what a plug-in module must define (hac_tf/plugins/base.py); SOURCE_KEYS and check_config are optional
REQUIRED = ("ORDER", "CONFIG_CLASS", "SECTION_FIELDS", "APPLIES_TO", "applies_to", "resolve", "from_section",
            "build_layer")

_PLUGINS: Dict[str, ModuleType] = {}


def register(module: ModuleType) -> ModuleType:
    """Adds a plug-in module under its module name (checked: the interface is complete, the name
    is a lower-case identifier, no other plug-in has its ``ORDER``)."""
    name = module.__name__.rsplit(".", 1)[-1]
    if not name.isidentifier() or name != name.lower():
        raise ValueError(f"plug-in module name must be a lower-case identifier, got {name!r}")
    missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
    if missing:
        raise ValueError(f"plug-in module {module.__name__} lacks {', '.join(missing)} (see hac_tf/plugins/base.py)")
    if not isinstance(module.ORDER, int) or isinstance(module.ORDER, bool):
        raise ValueError(f"{module.__name__}.ORDER must be an int, got {module.ORDER!r}")
    clash = [n for n, m in _PLUGINS.items() if n != name and m.ORDER == module.ORDER]
    if clash:
        raise ValueError(f"plug-ins {clash[0]!r} and {name!r} have the same ORDER {module.ORDER}")
    _PLUGINS[name] = module
    return module


def load_plugin_modules() -> None:
    """Imports every module of the hac_tf.plugins package and registers the plug-ins among them
    (the modules that define CONFIG_CLASS)."""
    package = importlib.import_module("hac_tf.plugins")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"hac_tf.plugins.{info.name}")
        if hasattr(module, "CONFIG_CLASS"):
            register(module)


def plugin_modules() -> Dict[str, ModuleType]:
    """The registered plug-ins, name -> module, by ``ORDER`` (the build and hook order)."""
    return dict(sorted(_PLUGINS.items(), key=lambda item: (item[1].ORDER, item[0])))


def plugin_names() -> Tuple[str, ...]:
    """Names of the registered plug-ins, by ``ORDER``."""
    return tuple(plugin_modules())
