"""hac-bench-science (tools/bench_science.py): a run writes, a re-run keeps, bad input exits 2 early."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FM_FIXTURE = os.path.join(REPO, "tests", "fixtures", "fashion_mnist")
TINY = [f"data.data_dir={FM_FIXTURE}", "data.batch_size=8", "data.shuffle_buffer=64", "model.width_multiplier=0.125",
        "model.embed_dim=16", "model.projector_hidden_dim=32", "model.projector_out_dim=16"]


def test_cli_runs_a_cell_then_keeps_it_and_writes_the_summary(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    args = [sys.executable, os.path.join(REPO, "tools", "bench_science.py"), "--rows=random_init", "--seeds=4",
            f"--out_dir={tmp_path}", "--eval_train=64", "--eval_test=32", "--plot_colour=stage4:body_hue_knn_mae"]
    args += [f"--params_override={o}" for o in TINY]
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "ran " in first.stdout and (tmp_path / "random_init__init__seed4.json").is_file()
    assert (tmp_path / "summary.png").is_file() and "| random_init | init | 1 | 0 |" in first.stdout
    second = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0 and "kept " in second.stdout, second.stderr[-3000:]


def test_cli_rejects_bad_rows_and_budgets_before_training(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    tool = os.path.join(REPO, "tools", "bench_science.py")
    for args, message in ((["--rows=baseline,hia"], "unknown benchmark row 'hia'"),
                          (["--budget=minutes:3"], "kind one of"),
                          (["--row_budget=baseline"], "must be <row>=<kind>:<amount>"),
                          (["--export=baseline"], "must be <row>=<path>"),
                          (["--export=random_init=saved_models/x"], "does not train"),
                          (["--params_override=model.method=simclrr"], "ConfigError")):
        proc = subprocess.run([sys.executable, tool, f"--out_dir={tmp_path}"] + args, capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr[-2000:])
    assert not any(p.suffix == ".json" for p in tmp_path.iterdir())
    listed = subprocess.run([sys.executable, tool, "--list_rows"], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0 and "hai_colour_late" in listed.stdout
