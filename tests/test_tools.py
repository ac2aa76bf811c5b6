"""tools/*.py are thin entry points over the package: a docstring, imports from hac_tf only and a
``__main__`` guard that calls ``run()`` — no function, class or other statement; each one runs
as a subprocess (``--help`` through absl) and lists its CLI's flags."""

import ast
import importlib
import os
import re
import subprocess
import sys

import pytest
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS_DIR = os.path.join(REPO, "tools")
TOOLS = sorted(f[:-3] for f in os.listdir(TOOLS_DIR) if f.endswith(".py"))


def _why_not_thin(source: str) -> str:
    """'' if ``source`` is a thin wrapper, else what is in it besides one."""
    tree = ast.parse(source)
    body = list(tree.body)
    if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        return "no docstring"
    for node in body[1:]:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hac_tf"):
            continue
        if (isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
                and [ast.unparse(n) for n in node.body] == ["run()"] and not node.orelse):
            continue
        return f"line {node.lineno}: {ast.unparse(node).splitlines()[0]}"
    return ""


def test_the_thinness_check_fails_on_logic():
    assert _why_not_thin('"""doc"""\nfrom hac_tf.cli.train import run\nif __name__ == "__main__":\n    run()\n') == ""
    assert "def main" in _why_not_thin('"""doc"""\ndef main():\n    pass\n')
    assert "import numpy" in _why_not_thin('"""doc"""\nimport numpy\n')
    assert "from tests" in _why_not_thin('"""doc"""\nfrom tests.x import y\n')
    assert _why_not_thin("from hac_tf.cli.train import run\n") == "no docstring"


@pytest.mark.parametrize("tool", TOOLS)
def test_tool_is_thin_and_runs(tool):
    path = os.path.join(TOOLS_DIR, f"{tool}.py")
    with open(path, encoding="utf-8") as f:
        why = _why_not_thin(f.read())
    assert not why, f"tools/{tool}.py is not a thin wrapper: {why}"
    module = importlib.import_module(f"hac_tf.cli.{tool}")
    expected = flags.FlagValues()
    module.define_flags(expected)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, path, "--help"], capture_output=True, text=True, timeout=120, env=env,
                          cwd=REPO)
    assert proc.returncode == 1, proc.stderr[-2000:]  # absl's --help exits with status 1
    assert "Traceback" not in proc.stderr
    for name in expected:
        assert re.search(rf"--(\[no\])?{name}\b", proc.stdout), f"--{name} missing from tools/{tool}.py --help"
