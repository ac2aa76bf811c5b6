"""The package: one version everywhere, dependency ranges the pinned requirements satisfy, the
supported Pythons, the shipped configs declared as package data, the package docstring naming every
subpackage."""

import importlib.metadata
import os
import re
import tomllib

from packaging.requirements import Requirement

import hac_tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _pins():
    pins = {}
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, version = line.split("==")
                pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_version_has_one_source():
    project = _pyproject()
    assert hac_tf.__version__ == "0.2.0"
    assert "version" in project["project"]["dynamic"] and "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "hac_tf._version.__version__"}
    assert importlib.metadata.version("hac_tf") == hac_tf.__version__  # the installed metadata agrees


def test_pins_satisfy_the_declared_ranges():
    pins = _pins()
    project = _pyproject()["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for r in project["optional-dependencies"]["dev"]]
    for req in requirements:
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in pins:
            assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} not in {req}"
    declared = {re.sub(r"[-_.]+", "-", r.name).lower() for r in requirements}
    assert set(pins) - {"pytest"} <= declared, set(pins) - declared  # every pinned package is declared
    cuda = Requirement(project["optional-dependencies"]["and-cuda"][0])
    assert cuda.name == "tensorflow" and "and-cuda" in cuda.extras and cuda.specifier.contains(pins["tensorflow"])


def test_supported_pythons_and_package_data():
    project = _pyproject()
    assert project["project"]["requires-python"] == ">=3.11,<3.14"
    assert project["tool"]["setuptools"]["package-data"]["hac_tf"] == ["configs/*.yaml"]
    assert os.path.isfile(os.path.join(REPO, "LICENSE")) and os.path.isfile(os.path.join(REPO, "CITATION.cff"))
    with open(os.path.join(REPO, "CITATION.cff"), encoding="utf-8") as f:
        assert f"version: {hac_tf.__version__}" in f.read()


def test_package_docstring_names_every_subpackage():
    package_dir = os.path.dirname(hac_tf.__file__)
    subpackages = sorted(d for d in os.listdir(package_dir)
                         if os.path.isfile(os.path.join(package_dir, d, "__init__.py")))
    assert {"cli", "downstream", "export", "plugins", "science"} <= set(subpackages)
    listed = set(re.findall(r"^  (\w+) ", hac_tf.__doc__, re.M))
    assert listed == set(subpackages), f"hac_tf/__init__.py lists {sorted(listed)}, the package has {subpackages}"
