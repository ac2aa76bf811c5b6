"""hac_tf/benchmarks/peer_figures.py and hac-bench-train (tools/bench_train.py) --peer_json: a peer ratio only
from a file given for this run, checked entry by entry; no peer column without it."""

import datetime
import json
import os
import subprocess
import sys

import pytest

from hac_tf.benchmarks.peer_figures import load_peer_figures, peer_columns, peer_memory_columns

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POINTS = [{"batch": 64, "px": 32, "precision": "float32", "variant": "hierarchical", "img_per_s": 50.0},
          {"batch": 64, "px": 32, "precision": "float32", "variant": "baseline", "img_per_s": 200},
          {"batch": 64, "px": 32, "precision": "mixed_bfloat16", "variant": "hierarchical", "img_per_s": 80.0,
           "note": "extra keys are ignored"}]


def _write(tmp_path, data, name="peer.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_load_match_and_columns(tmp_path):
    figures = load_peer_figures(_write(tmp_path, POINTS))
    assert len(figures.points) == 3
    assert figures.match(64, 32, "hierarchical", "float32").img_per_s == 50.0
    assert figures.match(64, 32, "hierarchical", "mixed_bfloat16").img_per_s == 80.0
    # no bf16 point for the baseline: compared with the peer's float32 point, shown as such
    assert peer_columns(figures, True, 64, 32, "baseline", "mixed_bfloat16", 300.0) == ["200.0", "fp32", "1.50"]
    assert peer_columns(figures, True, 64, 32, "hierarchical", "float32", 75.0) == ["50.0", "fp32", "1.50"]
    assert peer_columns(figures, True, 128, 32, "hierarchical", "float32", 75.0) == ["", "", ""]
    assert peer_columns(figures, False, 64, 32, "hierarchical", "float32", 75.0) == ["", "", ""]  # other model
    assert peer_columns(None, True, 64, 32, "hierarchical", "float32", 75.0) == []  # no file: no column


def test_describe_names_the_file_and_flags_old_files(tmp_path):
    path = _write(tmp_path, POINTS)
    figures = load_peer_figures(path)
    line = figures.describe(now=figures.written + datetime.timedelta(hours=2))
    assert line.startswith(f"peer figures: {path} (3 points, written ") and "2.0 h before this run" in line
    assert "WARNING" not in line
    assert "WARNING: older than a day" in figures.describe(now=figures.written + datetime.timedelta(days=3))


@pytest.mark.parametrize("data, message", [
    ("{not json", "are not valid JSON"),
    ({"batch": 64}, "must be a non-empty JSON list"),
    ([], "must be a non-empty JSON list"),
    ([POINTS[0], 3], "entry 1 must be an object"),
    ([{k: v for k, v in POINTS[0].items() if k != "px"}], "entry 0 has no 'px'"),
    ([dict(POINTS[0], batch=0)], "entry 0: batch=0 must be a positive integer"),
    ([dict(POINTS[0], px=32.0)], "entry 0: px=32.0 must be a positive integer"),
    ([dict(POINTS[0], precision="fp16")], "entry 0: precision='fp16' is not one of"),
    ([dict(POINTS[0], variant="one_level")], "entry 0: variant='one_level' is not one of"),
    ([dict(POINTS[0], img_per_s=-1)], "entry 0: img_per_s=-1 must be a positive number"),
    ([POINTS[0], POINTS[1], POINTS[0]], "entry 2 repeats batch=64 px=32 precision=float32 variant=hierarchical"),
])
def test_bad_files_are_named_with_the_entry(tmp_path, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=message) as info:
        load_peer_figures(path)
    assert path in str(info.value)


def test_step_memory_is_optional_and_checked(tmp_path):
    """A peer memory figure adds the memory cells; without any, there are no memory columns."""
    with_memory = [dict(POINTS[0], step_peak_gb=2.0), POINTS[1]]
    figures = load_peer_figures(_write(tmp_path, with_memory))
    assert figures.match(64, 32, "hierarchical", "float32").step_peak_gb == 2.0
    assert peer_memory_columns(figures, True, 64, 32, "hierarchical", "float32", 1.5) == ["2.00", "0.75"]
    assert peer_memory_columns(figures, True, 64, 32, "baseline", "float32", 1.5) == ["", ""]  # none for this point
    assert peer_memory_columns(figures, False, 64, 32, "hierarchical", "float32", 1.5) == ["", ""]  # other model
    assert peer_memory_columns(load_peer_figures(_write(tmp_path, POINTS, "nomem.json")), True, 64, 32,
                               "hierarchical", "float32", 1.5) == []
    assert peer_memory_columns(None, True, 64, 32, "hierarchical", "float32", 1.5) == []
    for field in ("step_peak_gb", "call_peak_gb"):
        for bad in (0, -1.0, "2", True, float("nan")):
            with pytest.raises(ValueError, match=rf"entry 0: {field}=.* must be a positive number"):
                load_peer_figures(_write(tmp_path, [dict(POINTS[0], **{field: bad})], "bad.json"))


def test_one_call_memory_is_its_own_comparison(tmp_path):
    """call_peak_gb compares with our one-call figure, independently of step_peak_gb."""
    only_call = load_peer_figures(_write(tmp_path, [dict(POINTS[0], call_peak_gb=0.8), POINTS[1]]))
    assert only_call.match(64, 32, "hierarchical", "float32").call_peak_gb == 0.8
    assert peer_memory_columns(only_call, True, 64, 32, "hierarchical", "float32", 0.4, "call_peak_gb") == ["0.80", "0.50"]
    assert peer_memory_columns(only_call, True, 64, 32, "hierarchical", "float32", 0.4) == []  # no step figure
    with pytest.raises(ValueError, match="unknown memory field"):
        peer_memory_columns(only_call, True, 64, 32, "hierarchical", "float32", 0.4, "rss_gb")


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"cannot read peer figures .*nope.json"):
        load_peer_figures(str(tmp_path / "nope.json"))


TABLE_SCRIPT = r'''
import contextlib, io, json, sys
from absl import flags
from hac_tf.benchmarks import train_step
from hac_tf.cli import bench_train as bench
bench.define_flags(flags.FLAGS)
measured = []
# the measurements are replaced by fixed numbers (this checks the table and the flag, not the machine)
train_step.matmul_peak = lambda dtype, **kw: measured.append(dtype) or 100.0
train_step.measure_in_fresh_process = lambda name, batch, precision, steps, input_seconds, allocator: (
    measured.append(name) or {
    "allocator": allocator, "img_s": 75.0, "step_s": batch / 75.0, "gflop_step": 10.0, "gflop_s": 750.0 / batch,
    "input_img_s": 900.0,
    "rss_gb": 1.0, "rss_step_gb": 0.9, "params_m": 62.3, "data_gb": 0.25, "step_peak_gb": 0.5,
    "call_peak_gb": 0.4})
results = []
for argv in json.loads(sys.argv[1]):
    measured.clear()
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["bench_train"] + argv)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = bench.main([])
    results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "measured": len(measured)})
print(json.dumps(results))
'''


def test_bench_train_peer_column_only_with_a_peer_file(tmp_path):
    """hac-bench-train's real main() and table, with the measurements replaced by fixed
    numbers: no peer column by default; with --peer_json the file is named and the peer's model
    rows get the ratio; a bad file stops the run (exit 2, file and entry named) before measuring."""
    rows = ["--rows=paper_r18_imagenet_stem_32,cpu_default", "--batch_sizes=64"]
    bad = _write(tmp_path, [dict(POINTS[0], variant="x")], "bad.json")
    with_memory = _write(tmp_path, [dict(POINTS[0], step_peak_gb=1.0, call_peak_gb=0.8)] + POINTS[1:],
                         "memory.json")
    cases = [rows, rows + [f"--peer_json={_write(tmp_path, POINTS)}"], rows + [f"--peer_json={bad}"],
             rows + [f"--peer_json={with_memory}", f"--jsonl={tmp_path / 'measured.jsonl'}"],
             [f"--from_jsonl={tmp_path / 'measured.jsonl'}", f"--peer_json={with_memory}"],
             [f"--from_jsonl={with_memory}"], rows + ["--allocator=system"]]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", TABLE_SCRIPT, json.dumps(cases)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain, with_peer, refused, with_memory, replayed, not_logged, system = json.loads(
        proc.stdout.strip().splitlines()[-1])

    def table(result):
        lines = result["stdout"].splitlines()
        header = next(line for line in lines if line.startswith("row "))
        return lines, header, {line.split()[0]: line.split() for line in lines
                               if line.startswith(("paper_r18", "cpu_default"))}

    assert plain["code"] == 0 and plain["measured"] == 4  # 2 matmul peaks + 2 rows
    lines, header, cells = table(plain)
    assert "peer" not in plain["stdout"]
    # the allocator: TensorFlow's default unless asked, said in the header and the footnote
    assert "allocator=onednn" in plain["stdout"] and "'step GB' is a lower bound" in plain["stdout"]
    assert system["code"] == 0 and "allocator=system" in system["stdout"]
    assert "allocator: system: 'step GB' is the steps' own peak" in system["stdout"]
    assert "lower bound" not in system["stdout"]
    assert "img/s" in header and "s/step" in header and "GFLOP/s" in header  # the rest of the table is kept
    assert cells["paper_r18_imagenet_stem_32"][7] == "0.85"  # s/step right after the spread
    # memory: the data's, the steps' own and one call's
    assert header.split()[-6:] == ["data", "GB", "step", "GB", "call", "GB"]
    assert cells["paper_r18_imagenet_stem_32"][-3:] == ["0.25", "0.50", "0.40"]

    assert with_peer["code"] == 0
    lines, header, cells = table(with_peer)
    assert lines[0].startswith("peer figures: ") and "3 points" in lines[0]
    assert "peer img/s" in header and "peer prec" in header and "x peer" in header
    # paper_r18_imagenet_stem_32 fp32 64 32 62.3 75.0 - | 50.0 fp32 1.50 | 0.85 ...
    assert cells["paper_r18_imagenet_stem_32"][7:11] == ["50.0", "fp32", "1.50", "0.85"]
    assert cells["cpu_default"][7] == "0.85"  # not the peer's model: empty peer cells

    assert "peer step GB" not in with_peer["stdout"]  # the peer gave no memory figure

    lines, header, cells = table(with_memory)
    assert header.endswith("peer step GB x peer step peer call GB x peer call")
    # ours 0.5 / peer 1.0 over the steps, ours 0.4 / peer 0.8 in one call
    assert cells["paper_r18_imagenet_stem_32"][-7:] == ["0.25", "0.50", "0.40", "1.00", "0.50", "0.80", "0.50"]
    assert cells["cpu_default"][-3:] == ["0.25", "0.50", "0.40"]  # not the peer's model: empty memory cells
    assert "training step's own peak" not in with_memory["stdout"]  # one batch size: no slope
    logged = [json.loads(line) for line in (tmp_path / "measured.jsonl").read_text().splitlines()]
    assert [(r["row"], r["batch"], r["px"], r["precision"], r["repeat"], r["step_peak_gb"]) for r in logged] == [
        ("paper_r18_imagenet_stem_32", 64, 32, "float32", 0, 0.5), ("cpu_default", 64, 32, "float32", 0, 0.5)]
    # --from_jsonl: the same table from the logged measurements, nothing measured
    assert replayed["code"] == 0 and replayed["measured"] == 0
    assert table(replayed)[2] == cells and "2 logged" in replayed["stdout"]
    assert not_logged["code"] == 2 and not_logged["measured"] == 0
    assert "is not a logged measurement (missing row" in not_logged["stderr"]

    assert refused["code"] == 2 and refused["measured"] == 0
    assert f"error: {bad} entry 0: variant='x'" in refused["stderr"]
