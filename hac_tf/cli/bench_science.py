"""The colour benchmark of issue 17: does the hierarchy keep what strong augmentation destroys?

  hac-bench-science --list_rows
  hac-bench-science --rows=random_init,no_jitter,baseline --seeds=0,1 --budget=flops:3.1e13   # the gate
  hac-bench-science --seeds=0,1,2 --budget=flops:3.1e13                                     # compute-matched
  hac-bench-science --seeds=0,1,2 --budget=images:71000                                     # data-matched
  hac-bench-science --rows=baseline,hai --row_budget=hai=steps:300 --budget=steps:600
  hac-bench-science --summary_only --out_dir=runs/bench_science

Every (row, seed) trains the row (config overrides over --base_config, hac_tf/science/rows.py)
for its budget -- steps:N, images:N (data-matched), flops:N (compute-matched, FLOPs per step from
TF's profiler) or seconds:N (wall-clock, the step timed first) -- then measures clean test
images (hac_tf/evaluation/colour_measures.py) per stage and at the projector, and writes
<out_dir>/<row>__<budget>__seed<k>.json (the checkpoints go to --work_dir). Existing JSONs are
skipped: re-running the same command continues where it stopped (an interrupted row resumes from
its last checkpoint). Seeds run in the outer loop, so every finished seed is paired across
all rows. At the end it writes <out_dir>/summary.md (mean +- std over seeds) and summary.png
(garment accuracy against colour error, one point per row). The decision rules are in
docs/RESULTS.md.

Exit codes: 0 done; 2 bad flags, an unknown row or a bad config (nothing trained).
"""

from __future__ import annotations

import os
import sys
from typing import List

from absl import flags

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, define_verbose_flag, verbose_requested


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-bench-science (same as tools/bench_science.py)."""
    fv = flag_values
    flags.DEFINE_list("rows", [], "Rows to run (default: all; see --list_rows).", flag_values=fv)
    flags.DEFINE_list("seeds", ["0", "1"], "Seeds (train.seed), paired across rows.", flag_values=fv)
    flags.DEFINE_string("budget", "flops:3.1e13", "Training budget of every row (default: the main budget of "
                        "docs/RESULTS.md): steps:N, images:N, flops:N or seconds:N.", flag_values=fv)
    flags.DEFINE_multi_string("row_budget", [], "Budget of one row, '<row>=<kind>:<amount>'; repeatable.",
                              flag_values=fv)
    flags.DEFINE_string("base_config", "banded_simclr_baseline", "Config the rows override (path or shipped "
                        "config name).", flag_values=fv)
    flags.DEFINE_string("out_dir", "runs/bench_science", "Where the JSONs and the summary go.", flag_values=fv)
    flags.DEFINE_string("work_dir", "runs/bench_science_work", "Where the training runs (checkpoints) go.",
                        flag_values=fv)
    flags.DEFINE_multi_string("params_override", [], "Overrides applied to every row (after the row's own).",
                              flag_values=fv)
    flags.DEFINE_integer("eval_train", 5000, "Clean training-split images fitting the probes.", flag_values=fv)
    flags.DEFINE_integer("eval_test", 2000, "Clean test-split images scoring them.", flag_values=fv)
    flags.DEFINE_multi_string("export", [], "'<row>=<path>': export that row's trained backbone to <path> in "
                              "the TF Serving layout (<path>/<version>; <path>_seed<k> with several seeds), e.g. "
                              "hai=saved_models/quickstart; repeatable. Default: no export.", flag_values=fv)
    flags.DEFINE_bool("decide", False, "Only print the decision of docs/RESULTS.md: the gate (rows no_jitter and "
                      "baseline in --gate_dir) and, if it passed, the verdicts on the rows in --out_dir (with "
                      "--robustness_dir: the twice-the-compute budget).", flag_values=fv)
    flags.DEFINE_string("gate_dir", "", "Where the gate's JSONs are (default: --out_dir).", flag_values=fv)
    flags.DEFINE_string("robustness_dir", "", "Where the twice-the-compute JSONs are (for --decide).", flag_values=fv)
    flags.DEFINE_list("decide_arms", [], "Only print the per-view BatchNorm rule of docs/RESULTS.md on two arms "
                      "of the rows baseline and hai: '<current_dir>,<candidate_dir>', e.g. "
                      "docs/results/per_view_bn/shared,docs/results/per_view_bn/per_view.", flag_values=fv)
    flags.DEFINE_bool("list_rows", False, "List the rows and exit.", flag_values=fv)
    flags.DEFINE_bool("summary_only", False, "Only (re)write the summary of the JSONs in --out_dir.", flag_values=fv)
    flags.DEFINE_string("plot_colour", "", "The plot's colour axis as <feature>:<measure>, e.g. "
                        "stage4:body_hue_knn_mae (the measure the gate chose; default: stage4:band_hue_ridge_mae, "
                        "else stage4:colour_ridge_mae).", flag_values=fv)
    define_verbose_flag(fv)


def main(argv: List[str]) -> int:
    """Runs the benchmark of the parsed flags; returns the exit code."""
    del argv
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    from hac_tf.science.budget import parse_budget
    from hac_tf.science.rows import ROWS, row_by_name

    if f.list_rows:
        for row in ROWS.values():
            print(f"{row.name:<24} {row.what}\n{'':<24} {' '.join(row.overrides) or '(the base config)'}")
        return 0
    from hac_tf.science.summary import write_summary

    colour = tuple(f.plot_colour.split(":", 1)) if f.plot_colour else None
    if colour is not None and len(colour) != 2:
        print(f"error: --plot_colour={f.plot_colour!r} must be <feature>:<measure>", file=sys.stderr)
        return 2
    if f.decide:
        from hac_tf.science.decision import decision_text
        from hac_tf.science.summary import load_records

        gate_records = load_records(f.gate_dir or f.out_dir)
        records = load_records(f.out_dir) if f.gate_dir else []
        print(decision_text(gate_records, records, load_records(f.robustness_dir) if f.robustness_dir else None))
        return 0
    if f.decide_arms:
        from hac_tf.science.decision import arm_decision
        from hac_tf.science.summary import load_records

        if len(f.decide_arms) != 2:
            print(f"error: --decide_arms needs two directories '<current>,<candidate>', got {f.decide_arms}",
                  file=sys.stderr)
            return 2
        missing = [d for d in f.decide_arms if not os.path.isdir(d)]
        if missing:
            print(f"error: --decide_arms: no such directory: {', '.join(missing)}", file=sys.stderr)
            return 2
        try:
            result = arm_decision(load_records(f.decide_arms[0]), load_records(f.decide_arms[1]))
        except ValueError as e:
            print(f"not decidable yet: {e}", file=sys.stderr)
            return 1
        print(result.text())
        return 0
    if f.summary_only:
        md, png, table = write_summary(f.out_dir, tuple(ROWS), colour=colour)
        print(table)
        print(f"wrote {md}" + (f" and {png}" if png else ""))
        return 0
    try:
        rows = [row_by_name(name) for name in (f.rows or list(ROWS))]
        seeds = [int(s) for s in f.seeds]
        budget = parse_budget(f.budget)
        per_row = {}
        for item in f.row_budget:
            name, sep, text = item.partition("=")
            if not sep:
                raise ValueError(f"--row_budget={item!r} must be <row>=<kind>:<amount>")
            per_row[row_by_name(name).name] = parse_budget(text)
        exports = {}
        for item in f.export:
            name, sep, path = item.partition("=")
            if not sep or not path:
                raise ValueError(f"--export={item!r} must be <row>=<path>")
            if not row_by_name(name).train:
                raise ValueError(f"--export={item!r}: row {name!r} does not train (nothing to export)")
            exports[name] = path
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from hac_tf.training.config import ConfigError, load_config

    try:  # every row's config is checked before anything trains
        for row in rows:
            load_config(f.base_config, list(row.overrides) + list(f.params_override))
    except ConfigError as e:
        print(f"ConfigError: {e}", file=sys.stderr)
        return 2
    from hac_tf.science.runner import run_cell
    from hac_tf.science.summary import PRIMARY_COLOUR

    for seed in seeds:
        for row in rows:
            export_path = exports.get(row.name)
            if export_path and len(seeds) > 1:
                export_path = f"{export_path}_seed{seed}"
            path, record, ran = run_cell(row, seed, per_row.get(row.name, budget), f.out_dir, f.base_config,
                                         f.params_override, f.eval_train, f.eval_test, work_dir=f.work_dir,
                                         export_path=export_path)
            s4 = record["results"].get("stage4", {})
            measure = next((m for feature, m in PRIMARY_COLOUR if feature == "stage4" and m in s4), None)
            colour_text = f", {measure} {s4[measure]:.1f} deg" if measure else ""
            garment = 100 * s4.get("garment_linear", float("nan"))
            print(f"{'ran ' if ran else 'kept'} {path}: {record['steps']} steps, stage 4: garment {garment:.1f}%"
                  f"{colour_text}", flush=True)
    md, png, table = write_summary(f.out_dir, tuple(ROWS), colour=colour)
    print(table)
    print(f"wrote {md}" + (f" and {png}" if png else ""))
    return 0


def run() -> None:
    """Console script ``hac-bench-science``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
