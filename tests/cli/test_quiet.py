"""hac_tf.cli.quiet: native (C++) log lines are dropped from fd 2 in quiet mode and kept with
verbose; our own warnings and everything else pass (a real PredictCost line from grappler)."""

import os
import subprocess
import sys
import textwrap

from hac_tf.cli.quiet import NATIVE_LOG_LINE

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import os, sys
    from hac_tf.cli.quiet import configure_output
    configure_output(verbose=sys.argv[1] == "verbose")
    from absl import logging
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None], tf.int32)])
    def crop(boxes, index):  # grappler's cost model logs 'Error in PredictCost()' for this op
        return tf.image.crop_and_resize(tf.zeros([2, 10, 10, 3]), boxes, index, [8, 8])

    print(crop(tf.zeros([2, 4]), tf.zeros([2], tf.int32)).shape)
    os.write(2, b"E0000 00:00:1796517418.511676   14815 fake_kernel.cc:12] native error line\\n")
    logging.warning("our own warning: skipped bad file x.png")
    print("plain stderr line", file=sys.stderr)
    sys.stderr.write("a partial line at exit")
""")


def _run(mode, tmp_path):
    path = tmp_path / "quiet_check.py"
    path.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, str(path), mode], capture_output=True, text=True, timeout=300, env=env)


def test_native_log_line_pattern():
    assert NATIVE_LOG_LINE.match(b"W0000 00:00:1796517329.868576   13566 op_level_cost_estimator.cc:699] Error")
    assert NATIVE_LOG_LINE.match(b"I1206 00:31:06.506681 139 device_compiler.h:196] Compiled cluster using XLA!")
    assert NATIVE_LOG_LINE.match(b"2026-12-06 00:31:06.506681: E external/local_xla/xla/cuda_platform.cc:51] x")
    assert NATIVE_LOG_LINE.match(b"WARNING: All log messages before absl::InitializeLog() is called are written "
                                 b"to STDERR")
    assert not NATIVE_LOG_LINE.match(b"W1206 00:31:06.506681 139 image_folder.py:88] /d/x.png: bad file")
    assert not NATIVE_LOG_LINE.match(b"step 1/3 [====>   ] 33% | loss 2.93")


def test_quiet_drops_native_lines_and_keeps_ours(tmp_path):
    r = _run("quiet", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(2, 8, 8, 3)" in r.stdout
    assert "PredictCost" not in r.stderr and "native error line" not in r.stderr and "absl::" not in r.stderr
    assert "our own warning: skipped bad file x.png" in r.stderr
    assert "plain stderr line" in r.stderr and r.stderr.rstrip().endswith("a partial line at exit")


def test_verbose_keeps_native_lines(tmp_path):
    r = _run("verbose", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "native error line" in r.stderr and "Error in PredictCost()" in r.stderr
    assert "our own warning" in r.stderr
