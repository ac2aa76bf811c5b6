"""The decision rules of docs/RESULTS.md, as code: the gate and the verdicts on the paper's claims.

Everything here reads result records (the cell JSONs of hac_tf/science/runner.py) and applies the
rules fixed in docs/RESULTS.md before any result existed; nothing here is tuned to an outcome.

* Seed noise of a comparison of rows A and B on a measure: ``sigma = sqrt((s_A^2 + s_B^2) / 2)``,
  ``s`` the sample standard deviation over seeds (ddof 1); the difference is the mean of the
  differences paired by seed (the same ``train.seed`` in both rows; unpaired seeds are ignored).
* Colour errors are in degrees (lower keeps more colour); garment accuracy is reported in points
  (percent).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["CLAIMS", "COLOUR_MEASURES", "CONTROL_MEASURE", "GARMENT_MEASURE", "PER_VIEW_BN_COLOUR_MEASURE",
           "PER_VIEW_BN_ROWS", "ArmDecision", "Comparison", "GateResult", "Verdict", "arm_decision", "compare",
           "decision_text", "gate", "verdict"]

#: the primary colour measure is the first of these (all at stage 4) that passes the gate
COLOUR_MEASURES: Tuple[str, ...] = ("band_hue_ridge_mae", "band_hue_knn_mae", "body_hue_knn_mae", "body_hue_ridge_mae")
#: the control: with and without colour jitter should tie on it
CONTROL_MEASURE = "hue_difference_ridge_mae"
#: the garment measure (fraction in the JSONs, points here)
GARMENT_MEASURE = "garment_linear"
FEATURE = "stage4"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One row minus another on one measure, paired by seed (see `compare`)."""

    measure: str
    difference: float  # mean paired difference (first row - second row), in the measure's unit
    sigma: float       # pooled seed noise
    seeds: Tuple[int, ...]

    @property
    def in_sigmas(self) -> float:
        """``difference / sigma`` (inf when sigma is 0 and the difference is not)."""
        if self.sigma > 0:
            return self.difference / self.sigma
        return 0.0 if self.difference == 0 else math.copysign(math.inf, self.difference)

    def text(self, unit: str = "deg") -> str:
        return (f"{self.difference:+.2f} {unit} ({self.in_sigmas:+.1f} sigma, sigma {self.sigma:.2f}, "
                f"seeds {list(self.seeds)})")


def _values(records: Sequence[dict], row: str, measure: str, feature: str = FEATURE,
            budget: Optional[str] = None) -> Dict[int, float]:
    out = {}
    for r in records:
        if r.get("row") != row or (budget is not None and r.get("budget") not in (budget, None)):
            continue
        value = r.get("results", {}).get(feature, {}).get(measure)
        if value is not None:
            out[int(r["seed"])] = float(value) * (100.0 if measure == GARMENT_MEASURE else 1.0)
    return out


def compare(records: Sequence[dict], first: str, second: str, measure: str, feature: str = FEATURE) -> Comparison:
    """``first`` minus ``second`` on ``measure`` (garment in points), paired by seed.

    ValueError when fewer than 2 seeds are shared by both rows (no noise estimate).
    """
    a, b = _values(records, first, measure, feature), _values(records, second, measure, feature)
    seeds = tuple(sorted(set(a) & set(b)))
    if len(seeds) < 2:
        raise ValueError(f"comparing {first!r} with {second!r} on {measure}: need >= 2 shared seeds, have "
                         f"{list(seeds)} ({first}: {sorted(a)}, {second}: {sorted(b)})")
    va = np.array([a[s] for s in seeds])
    vb = np.array([b[s] for s in seeds])
    sigma = math.sqrt((va.std(ddof=1) ** 2 + vb.std(ddof=1) ** 2) / 2.0)
    return Comparison(measure, float(np.mean(va - vb)), sigma, seeds)


@dataclasses.dataclass(frozen=True)
class GateResult:
    """Whether the testbed can test the claims, and with which colour measure."""

    passed: bool
    measure: Optional[str]            # the primary colour measure (first passing one), None if none
    loss: List[Comparison]            # baseline - no_jitter colour error, every measure of the list
    control: Optional[Comparison]     # baseline - no_jitter on the control measure
    control_ok: Optional[bool]        # |control| < 3 sigma

    def text(self) -> str:
        lines = [f"gate: {'PASSED with ' + self.measure if self.passed else 'NOT passed'} "
                 "(baseline colour error - no_jitter's > 3 sigma and >= 2 deg)"]
        lines += [f"  {c.measure}: {c.text()}" for c in self.loss]
        if self.control is not None:
            lines.append(f"  control {self.control.measure}: {self.control.text()} -> "
                         f"{'tie (ok)' if self.control_ok else 'NOT a tie: a flaw of the testbed'}")
        return "\n".join(lines)


def gate(records: Sequence[dict]) -> GateResult:
    """The gate of docs/RESULTS.md on the records of rows ``no_jitter`` and ``baseline``."""
    loss = [compare(records, "baseline", "no_jitter", m) for m in COLOUR_MEASURES]
    measure = next((c.measure for c in loss if c.in_sigmas > 3 and c.difference >= 2.0), None)
    try:
        control = compare(records, "baseline", "no_jitter", CONTROL_MEASURE)
        control_ok = abs(control.in_sigmas) < 3
    except ValueError:
        control, control_ok = None, None
    return GateResult(measure is not None, measure, loss, control, control_ok)


@dataclasses.dataclass(frozen=True)
class Verdict:
    claim: str             # e.g. "hierarchy_paper vs baseline"
    verdict: str           # "confirmed" | "refuted at this scale" | "inconclusive"
    reason: str
    gain: Comparison       # colour gain (error of the reference - error of the row), main budget
    cost: Comparison       # garment cost (accuracy of the reference - accuracy of the row), points
    gain_2x: Optional[Comparison]


def verdict(records: Sequence[dict], row: str, reference: str, colour_measure: str,
            records_2x: Optional[Sequence[dict]] = None) -> Verdict:
    """The verdict on ``row`` against ``reference`` (docs/RESULTS.md "Verdicts").

    ``records``: the main (compute-matched) budget; ``records_2x``: the robustness budget (twice
    the compute) or None when it has not been run. When the two rows do not share 2 seeds at the
    robustness budget (not run yet, or not among its rows), the verdict is that of the main budget
    alone: "confirmed" and the first "refuted" rule cannot be reached, as they need both budgets.
    ValueError when the rows do not share 2 seeds at the main budget.
    """
    gain = compare(records, reference, row, colour_measure)
    cost = compare(records, reference, row, GARMENT_MEASURE)
    gain_2x = None
    if records_2x:
        try:
            gain_2x = compare(records_2x, reference, row, colour_measure)
        except ValueError:  # fewer than 2 shared seeds at twice the compute
            pass
    strong = gain.in_sigmas > 3 and gain.difference >= 2.0
    cheap = cost.difference < max(1.0, 2 * cost.sigma)
    costly = cost.in_sigmas > 3 and cost.difference > 1.0
    if strong and costly:
        v, why = "refuted at this scale", "the colour gain costs garment accuracy (> 3 sigma and > 1 point)"
    elif strong and cheap and gain_2x is not None and gain_2x.difference > 0 and gain_2x.in_sigmas > 1:
        v, why = "confirmed", "gain > 3 sigma and >= 2 deg, no garment cost, kept at twice the compute"
    elif gain.in_sigmas < 1 and gain_2x is not None and gain_2x.in_sigmas < 1:
        v, why = "refuted at this scale", "colour gain < 1 sigma at both budgets"
    else:
        missing = " (not run at twice the compute with 2 shared seeds)" if gain_2x is None else ""
        v, why = "inconclusive", "none of the rules for confirmed / refuted holds" + missing
    return Verdict(f"{row} vs {reference}", v, why, gain, cost, gain_2x)


#: the comparisons that decide (row, reference) and the secondary readings, docs/RESULTS.md
CLAIMS: Tuple[Tuple[str, str, str], ...] = (
    ("claim 1 (add-one views)", "hierarchy_paper", "baseline"),
    ("claim 2 (embeddings, in the hierarchy)", "hai", "hierarchy_paper"),
    ("claim 2 (embeddings alone)", "baseline_embed", "baseline"),
    ("claim 2 (information, not capacity)", "baseline_embed", "baseline_shuffled_embed"),
    ("secondary: four depths or the order", "hierarchy_paper", "uniform"),
    ("secondary: colour deepest", "hierarchy_colour_late", "hierarchy_paper"),
    ("secondary: light auxiliaries", "hai_light_aux", "hai"),
)


def decision_text(gate_records: Sequence[dict], records: Sequence[dict] = (),
                  records_2x: Optional[Sequence[dict]] = None) -> str:
    """The gate and, once it passed, every verdict whose rows have >= 2 shared seeds, as text."""
    try:
        g = gate(gate_records)
    except ValueError as e:
        return f"gate: not decidable yet ({e})"
    lines = [g.text()]
    if not g.passed or not records:
        return "\n".join(lines)
    for title, row, reference in CLAIMS:
        try:
            v = verdict(records, row, reference, g.measure, records_2x or None)
        except ValueError as e:
            lines.append(f"{title}: {row} vs {reference}: not decidable yet ({e})")
            continue
        lines.append(f"{title}: {v.claim}: {v.verdict.upper()} -- {v.reason}; colour gain {v.gain.text()}, "
                     f"garment cost {v.cost.text('points')}"
                     + (f", gain at 2x compute {v.gain_2x.text()}" if v.gain_2x else ""))
    return "\n".join(lines)


#: the rows and the colour measure of the per-view batch-normalisation rule (docs/RESULTS.md)
PER_VIEW_BN_ROWS: Tuple[str, ...] = ("baseline", "hai")
PER_VIEW_BN_COLOUR_MEASURE = "body_hue_knn_mae"


@dataclasses.dataclass(frozen=True)
class ArmDecision:
    """Whether a candidate arm (e.g. per-view BatchNorm statistics) may replace the current default.

    ``garment_loss[row]``: current arm's garment accuracy - the candidate's (points; > 0: the
    candidate is worse); ``colour_loss[row]``: the candidate's colour error - the current arm's
    (degrees; > 0: the candidate is worse); both paired by seed, pooled sigma.
    """

    adopt: bool
    garment_loss: Dict[str, Comparison]
    colour_loss: Dict[str, Comparison]
    reasons: Tuple[str, ...]  # one per failed condition (empty when adopted)

    def text(self, candidate: str = "per_view", current: str = "shared") -> str:
        lines = [f"{candidate} instead of {current}: {'ADOPT (becomes the default)' if self.adopt else 'KEEP ' + current}"]
        for row in self.garment_loss:
            lines.append(f"  {row}: garment loss {self.garment_loss[row].text('points')}; "
                         f"{self.colour_loss[row].measure} loss {self.colour_loss[row].text()}")
        lines += [f"  not adopted: {r}" for r in self.reasons]
        return "\n".join(lines)


def _tagged(records: Sequence[dict], tag: str) -> List[dict]:
    return [dict(r, row=f"{r.get('row')}@{tag}") for r in records]


def arm_decision(current: Sequence[dict], candidate: Sequence[dict], rows: Sequence[str] = PER_VIEW_BN_ROWS,
                 colour_measure: str = PER_VIEW_BN_COLOUR_MEASURE) -> ArmDecision:
    """The per-view BatchNorm rule of docs/RESULTS.md, on the records of two arms of the same rows.

    The candidate is adopted if, in every row of ``rows``, paired by seed, its stage-4 garment
    accuracy is not lower than the current arm's by more than max(1 point, 2 sigma) and its
    ``colour_measure`` error is not higher by more than max(1 degree, 2 sigma). ValueError when a
    row does not have 2 seeds in both arms.
    """
    records = _tagged(current, "current") + _tagged(candidate, "candidate")
    garment, colour, reasons = {}, {}, []
    for row in rows:
        g = compare(records, f"{row}@current", f"{row}@candidate", GARMENT_MEASURE)
        c = compare(records, f"{row}@candidate", f"{row}@current", colour_measure)
        garment[row], colour[row] = g, c
        if g.difference > max(1.0, 2 * g.sigma):
            reasons.append(f"{row}: garment accuracy lower by {g.difference:.2f} points > max(1, 2 sigma = "
                           f"{2 * g.sigma:.2f})")
        if c.difference > max(1.0, 2 * c.sigma):
            reasons.append(f"{row}: {colour_measure} higher by {c.difference:.2f} deg > max(1, 2 sigma = "
                           f"{2 * c.sigma:.2f})")
    return ArmDecision(not reasons, garment, colour, tuple(reasons))
