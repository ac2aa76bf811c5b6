"""Export from a model built under MirroredStrategy (as run.py does after distributed training):
still one stored copy per variable and the same outputs. Runs in a subprocess because the two
logical CPU devices must be configured before TensorFlow initialises."""

import json
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from hac_tf.export import export_backbone, variables_size_bytes
    from hac_tf.models import build_resnet
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        bb = build_resnet(18, "cifar", width_multiplier=0.125, sync_bn=True)
    kind = type(bb.weights[0].value).__name__
    path = export_backbone(bb, None, sys.argv[1], warmup=False)
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    loaded = tf.saved_model.load(path)
    out = loaded.signatures["serving_default"](images=tf.constant(x))["embedding"].numpy()
    ref = tf.reduce_mean(bb(x.astype(np.float32) / 255.0, training=False)["stage4"], [1, 2]).numpy()
    print(json.dumps({"kind": kind, "size": variables_size_bytes(path), "params": bb.count_params(),
                      "num_weights": len(bb.weights), "num_loaded": len(loaded.variables),
                      "max_diff": float(np.abs(out - ref).max())}))
""")


def test_export_under_mirrored_strategy(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "m")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["kind"] == "MirroredVariable"
    assert result["num_loaded"] == result["num_weights"]
    assert 4 * result["params"] <= result["size"] < 1.3 * 4 * result["params"]
    assert result["max_diff"] < 1e-5
