"""The package version: the single source read by setuptools (pyproject.toml, dynamic version)
and re-exported as ``hac_tf.__version__``."""

__version__ = "0.2.0"
