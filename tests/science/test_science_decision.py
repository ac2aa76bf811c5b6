"""The decision rules of docs/RESULTS.md (hac_tf/science/decision.py) on hand-made records."""

from __future__ import annotations

import math

import pytest

from hac_tf.science.decision import COLOUR_MEASURES, compare, gate, verdict


def _record(row, seed, garment=0.8, **errors):
    stage4 = {"garment_linear": garment, **{m: 70.0 for m in COLOUR_MEASURES}, "hue_difference_ridge_mae": 80.0}
    stage4.update(errors)
    return {"row": row, "seed": seed, "budget": "flops:1", "results": {"stage4": stage4}}


def test_compare_pairs_seeds_and_pools_the_noise():
    records = [_record("a", 0, band_hue_ridge_mae=10.0), _record("a", 1, band_hue_ridge_mae=12.0),
               _record("a", 7, band_hue_ridge_mae=99.0),  # no partner: ignored
               _record("b", 0, band_hue_ridge_mae=4.0), _record("b", 1, band_hue_ridge_mae=8.0)]
    c = compare(records, "a", "b", "band_hue_ridge_mae")
    assert c.seeds == (0, 1) and c.difference == pytest.approx(5.0)
    assert c.sigma == pytest.approx(math.sqrt((2.0 + 8.0) / 2))  # sample variances 2 and 8
    garment = compare(records, "a", "b", "garment_linear")
    assert garment.difference == 0.0 and garment.in_sigmas == 0.0
    with pytest.raises(ValueError, match=">= 2 shared seeds"):
        compare(records[:3] + records[3:4], "a", "b", "band_hue_ridge_mae")


def test_gate_takes_the_first_passing_measure_in_the_fixed_order_and_checks_the_control():
    records = []
    for seed, jitter in ((0, 0.0), (1, 0.5), (2, -0.5)):
        # the band hue is lost by nobody (equal errors); the body hue kNN error grows by ~6 deg
        records.append(_record("no_jitter", seed, body_hue_knn_mae=6.0 + jitter, body_hue_ridge_mae=9.0 + jitter))
        records.append(_record("baseline", seed, body_hue_knn_mae=12.0 - jitter, body_hue_ridge_mae=20.0 + jitter))
    result = gate(records)
    assert result.passed and result.measure == "body_hue_knn_mae"  # before body_hue_ridge_mae in the order
    assert result.control_ok is True and "PASSED with body_hue_knn_mae" in result.text()
    flat = [_record(r, s) for r in ("no_jitter", "baseline") for s in (0, 1)]
    assert not gate(flat).passed and gate(flat).measure is None


def test_gate_needs_two_degrees_not_only_three_sigma():
    records = [_record("no_jitter", s, band_hue_ridge_mae=50.0 + 0.01 * s) for s in (0, 1)]
    records += [_record("baseline", s, band_hue_ridge_mae=51.0 + 0.01 * s) for s in (0, 1)]
    assert not gate(records).passed  # 1 deg with no noise: > 3 sigma but < 2 deg


def _pair(row, ref, gains, costs, measure="band_hue_ridge_mae"):
    out = []
    for seed, (g, c) in enumerate(zip(gains, costs)):
        out.append(_record(ref, seed, garment=0.80, **{measure: 60.0}))
        out.append(_record(row, seed, garment=0.80 - c / 100.0, **{measure: 60.0 - g}))
    return out


def test_verdicts_follow_the_rules():
    m = "band_hue_ridge_mae"
    main = _pair("hier", "base", [5.0, 5.5, 4.5], [0.2, 0.0, -0.2])
    confirmed = verdict(main, "hier", "base", m, _pair("hier", "base", [3.0, 3.5, 2.5], [0, 0, 0]))
    assert confirmed.verdict == "confirmed", confirmed
    assert verdict(main, "hier", "base", m).verdict == "inconclusive"  # 2x budget not run yet
    # rows not (yet) at the 2x budget, or with one seed there: decided on the main budget alone
    partial_2x = _pair("other", "base", [3.0, 3.5], [0, 0]) + _pair("hier", "base", [3.0], [0])
    partial = verdict(main, "hier", "base", m, partial_2x)
    assert partial.verdict == "inconclusive" and partial.gain_2x is None
    assert "not run at twice the compute" in partial.reason
    costly_main = _pair("hier", "base", [5.0, 5.5, 4.5], [5.0, 5.2, 4.8])
    assert verdict(costly_main, "hier", "base", m, partial_2x[:4]).verdict == "refuted at this scale"
    flipped = verdict(main, "hier", "base", m, _pair("hier", "base", [-1.0, -0.5, -1.5], [0, 0, 0]))
    assert flipped.verdict == "inconclusive"
    none = _pair("hier", "base", [0.1, -0.2, 0.0], [0, 0, 0])
    assert verdict(none, "hier", "base", m, none).verdict == "refuted at this scale"
    costly = _pair("hier", "base", [5.0, 5.5, 4.5], [5.0, 5.2, 4.8])
    v = verdict(costly, "hier", "base", m)
    assert v.verdict == "refuted at this scale" and "garment" in v.reason


def test_decision_text_and_the_cli_decide(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from hac_tf.science.decision import decision_text

    gate_dir, main_dir = tmp_path / "gate", tmp_path / "main"
    gate_dir.mkdir()
    main_dir.mkdir()
    for seed, noise in ((0, 0.3), (1, -0.3)):
        for row, err in (("no_jitter", 40.0), ("baseline", 60.0)):
            r = _record(row, seed, band_hue_ridge_mae=err + noise)
            (gate_dir / f"{row}__flops1__seed{seed}.json").write_text(json.dumps(r))
        for row, err in (("baseline", 60.0), ("hierarchy_paper", 50.0)):
            r = _record(row, seed, band_hue_ridge_mae=err - noise)
            (main_dir / f"{row}__flops1__seed{seed}.json").write_text(json.dumps(r))
    from hac_tf.science.summary import load_records

    text = decision_text(load_records(str(gate_dir)), load_records(str(main_dir)))
    assert "PASSED with band_hue_ridge_mae" in text
    assert "claim 1 (add-one views): hierarchy_paper vs baseline: INCONCLUSIVE" in text
    assert "hai vs hierarchy_paper: not decidable yet" in text
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, os.path.join(repo, "tools", "bench_science.py"), "--decide",
                           f"--gate_dir={gate_dir}", f"--out_dir={main_dir}"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="2"), timeout=300)
    assert proc.returncode == 0 and text in proc.stdout, proc.stderr[-2000:]


def _arm(row, seed, garment, knn):
    return _record(row, seed, garment=garment, body_hue_knn_mae=knn)


def test_arm_decision_adopts_only_when_neither_row_loses_garment_or_colour():
    from hac_tf.science.decision import arm_decision

    noise = (0.0, 0.004, -0.004)  # garment +-0.4 points, colour +-0.4 deg across seeds
    shared = [_arm(row, s, 0.80 + n, 12.0 + 100 * n) for row in ("baseline", "hai") for s, n in enumerate(noise)]
    same = [_arm(row, s, 0.795 + n, 12.5 + 100 * n) for row in ("baseline", "hai") for s, n in enumerate(noise)]
    ok = arm_decision(shared, same)
    assert ok.adopt and ok.reasons == ()
    assert ok.garment_loss["hai"].difference == pytest.approx(0.5)
    assert ok.colour_loss["baseline"].difference == pytest.approx(0.5)
    assert "ADOPT" in ok.text()
    # hai loses 3 points of garment accuracy (> max(1, 2 sigma)): kept shared, and the reason names it
    worse = [_arm(row, s, (0.77 if row == "hai" else 0.80) + n, 12.0 + 100 * n)
             for row in ("baseline", "hai") for s, n in enumerate(noise)]
    kept = arm_decision(shared, worse)
    assert not kept.adopt and len(kept.reasons) == 1 and kept.reasons[0].startswith("hai: garment")
    # baseline's body-hue kNN error 2 deg higher: kept shared
    bluer = [_arm(row, s, 0.80 + n, (14.0 if row == "baseline" else 12.0) + 100 * n)
             for row in ("baseline", "hai") for s, n in enumerate(noise)]
    assert [r.split(":")[0] for r in arm_decision(shared, bluer).reasons] == ["baseline"]
    # a better candidate is never refused
    better = [_arm(row, s, 0.85 + n, 8.0 + 100 * n) for row in ("baseline", "hai") for s, n in enumerate(noise)]
    assert arm_decision(shared, better).adopt
    # noise wider than the difference: 2 sigma, not 1 point, is the bar
    loud = [_arm(row, s, 0.80 + 5 * n, 12.0) for row in ("baseline", "hai") for s, n in enumerate(noise)]
    assert arm_decision(loud, [_arm(r["row"], r["seed"], r["results"]["stage4"]["garment_linear"] - 0.015, 12.0)
                               for r in loud]).adopt
    with pytest.raises(ValueError, match=">= 2 shared seeds"):
        arm_decision(shared, [r for r in same if r["seed"] == 0])


def test_cli_decide_arms(tmp_path):
    import json
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    dirs = {"shared": 0.80, "per_view": 0.75}
    for arm, garment in dirs.items():
        (tmp_path / arm).mkdir()
        for row in ("baseline", "hai"):
            for seed, n in enumerate((0.0, 0.003, -0.003)):
                (tmp_path / arm / f"{row}__flops1__seed{seed}.json").write_text(
                    json.dumps(_arm(row, seed, garment + n, 12.0)))

    def cli(*args):
        return subprocess.run([sys.executable, os.path.join(repo, "tools", "bench_science.py"), *args],
                              capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="2"))

    proc = cli(f"--decide_arms={tmp_path / 'shared'},{tmp_path / 'per_view'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "KEEP shared" in proc.stdout and "baseline: garment accuracy lower by 5.00 points" in proc.stdout
    missing = cli(f"--decide_arms={tmp_path / 'shared'},{tmp_path / 'nowhere'}")
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    assert cli(f"--decide_arms={tmp_path / 'shared'}").returncode == 2
