"""Colour measures with no ceiling, on frozen features of clean test images (issue 17).

A linear classifier of a coarse colour label saturates for every encoder (random init included)
when the label is readable from a few numbers; these measures keep separating encoders:

  hue_regression         linear ridge probe from standardised features to (cos h, sin h);
                         circular mean absolute error in degrees (0 perfect, ~90 chance)
  knn_measures           cosine kNN on unstandardised features: accuracy of int labels (majority
                         vote of k neighbours) and the circular MAE of the neighbours' circular
                         mean hue
  few_shot_accuracy      logistic regression on ``shots`` labelled examples per class (mean over
                         draws)
  shift_sensitivity      regress an applied hue shift d from an image's features and its
                         hue-shifted copy's: ridge from the squared feature differences to cos d
                         (for features that embed hue on a circle, |f(x') - f(x)|^2 = a - b cos d);
                         R^2 on held-out pairs (1: the shift is read exactly, 0: blind to it) and
                         the MAE of the recovered |d| in degrees
  invariance_gap         mean cosine(f(x), f(jitter(x))) - mean cosine(f(x), f(y)), y another
                         image: 0 = the jitter moves features as far as a change of image, large =
                         invariant
  colour_report          all of them per feature (stage1..4, projector) for an encoder, plus
                         garment accuracy as hac_tf.evaluation measures it (the L-BFGS linear
                         probe and the temperature-weighted kNN monitor, k = 200, T = 0.1)

Hues are degrees (any real; taken mod 360). Features are float ``[N, D]``. Everything is
deterministic for fixed inputs and seeds (scikit-learn's ridge and lbfgs logistic regression,
exact brute-force neighbours).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "RIDGE_ALPHAS",
    "EvalSet",
    "HueRegression",
    "circular_error_degrees",
    "circular_mean_degrees",
    "colour_report",
    "few_shot_accuracy",
    "hue_regression",
    "hue_to_unit",
    "invariance_gap",
    "knn_measures",
    "shift_sensitivity",
    "unit_to_hue",
]

#: ridge penalties tried by leave-one-out cross-validation (RidgeCV), on standardised features
RIDGE_ALPHAS: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


def hue_to_unit(degrees: np.ndarray) -> np.ndarray:
    """float64 ``[N, 2]`` = (cos h, sin h) of hues in degrees."""
    r = np.radians(np.asarray(degrees, np.float64))
    return np.stack([np.cos(r), np.sin(r)], axis=-1)


def unit_to_hue(xy: np.ndarray) -> np.ndarray:
    """Degrees in [0, 360) of 2-vectors ``[N, 2]`` (their direction; length ignored)."""
    xy = np.asarray(xy, np.float64)
    h = np.mod(np.degrees(np.arctan2(xy[..., 1], xy[..., 0])), 360.0)
    return np.where(h >= 360.0, h - 360.0, h)  # mod of a tiny negative angle rounds to 360


def circular_error_degrees(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Absolute angular difference in [0, 180] degrees, elementwise."""
    d = np.mod(np.asarray(predicted, np.float64) - np.asarray(true, np.float64), 360.0)
    return np.minimum(d, 360.0 - d)


def circular_mean_degrees(degrees: np.ndarray, axis: int = -1) -> np.ndarray:
    """Direction of the mean unit vector of hues along ``axis`` (of ``degrees``), in [0, 360)."""
    degrees = np.asarray(degrees, np.float64)
    axis = axis % degrees.ndim  # the unit vectors get a trailing (cos, sin) axis
    return unit_to_hue(hue_to_unit(degrees).mean(axis=axis))


def _check_rows(name: str, x: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"{name}: expected [{n}, D] features, got shape {x.shape}")
    return x


class HueRegression(NamedTuple):
    """Result of `hue_regression`: held-out circular MAE (degrees), R^2 of (cos, sin), chosen alpha."""

    mae_degrees: float
    r2: float
    alpha: float


def hue_regression(train_x: np.ndarray, train_hue: np.ndarray, test_x: np.ndarray, test_hue: np.ndarray,
                   alphas: Sequence[float] = RIDGE_ALPHAS) -> HueRegression:
    """Linear ridge probe from standardised features to (cos h, sin h); error of atan2 of the output.

    Args:
      train_x, test_x: float ``[N, D]``, ``[M, D]``.
      train_hue, test_hue: degrees ``[N]``, ``[M]``.
      alphas: penalties, chosen by efficient leave-one-out CV on the training rows.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_hue, test_hue = np.asarray(train_hue, np.float64), np.asarray(test_hue, np.float64)
    train_x = _check_rows("hue_regression train_x", train_x, len(train_hue)).astype(np.float64)
    test_x = _check_rows("hue_regression test_x", test_x, len(test_hue)).astype(np.float64)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=tuple(alphas)))
    model.fit(train_x, hue_to_unit(train_hue))
    pred = model.predict(test_x)
    r2 = float(model.score(test_x, hue_to_unit(test_hue)))
    mae = float(circular_error_degrees(unit_to_hue(pred), test_hue).mean())
    return HueRegression(mae, r2, float(model[-1].alpha_))


def _neighbours(train_x: np.ndarray, test_x: np.ndarray, k: int) -> np.ndarray:
    """int ``[M, k]`` indices of the k cosine-nearest training rows of every test row (nearest first)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(int(k), len(train_x))
    index = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(train_x.astype(np.float32))
    return index.kneighbors(test_x.astype(np.float32), return_distance=False)


def knn_measures(train_x: np.ndarray, test_x: np.ndarray, train_labels: Mapping[str, np.ndarray],
                 test_labels: Mapping[str, np.ndarray], train_hues: Mapping[str, np.ndarray] | None = None,
                 test_hues: Mapping[str, np.ndarray] | None = None, k: int = 20) -> dict[str, float]:
    """Cosine kNN on unstandardised features (one neighbour search for every label).

    Returns ``{"<key>_knn_acc": accuracy}`` for every int label (majority vote of the ``k``
    neighbours; ties go to the smallest label) and ``{"<key>_knn_mae": degrees}`` for every hue
    (circular mean of the neighbours' hues against the true hue).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    train_x = np.asarray(train_x)
    test_x = np.asarray(test_x)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"knn_measures: feature shapes {train_x.shape} and {test_x.shape} do not match")
    idx = _neighbours(train_x, test_x, k)
    out: dict[str, float] = {}
    for key, y in train_labels.items():
        y = np.asarray(y, np.int64)
        if len(y) != len(train_x) or len(test_labels[key]) != len(test_x):
            raise ValueError(f"knn_measures: label {key!r} does not match the feature rows")
        votes = y[idx]  # [M, k]
        num_classes = int(max(y.max(), np.max(test_labels[key]))) + 1
        counts = np.stack([(votes == c).sum(axis=1) for c in range(num_classes)], axis=1)
        out[f"{key}_knn_acc"] = float(np.mean(counts.argmax(axis=1) == np.asarray(test_labels[key])))
    for key, hue in (train_hues or {}).items():
        hue = np.asarray(hue, np.float64)
        predicted = circular_mean_degrees(hue[idx], axis=1)
        out[f"{key}_knn_mae"] = float(circular_error_degrees(predicted, np.asarray(test_hues[key])).mean())
    return out


def few_shot_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                      shots: int = 10, draws: int = 5, seed: int = 0) -> float:
    """Mean test accuracy of logistic regressions fitted on ``shots`` examples per class.

    Each of ``draws`` draws picks ``shots`` training rows of every class (numpy Generator seeded
    with ``seed``; classes with fewer rows use all of them), standardises on them and fits an
    L2 logistic regression (C=1, lbfgs).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_y = np.asarray(train_y, np.int64)
    train_x = _check_rows("few_shot train_x", train_x, len(train_y))
    test_x = _check_rows("few_shot test_x", test_x, len(test_y))
    if shots < 1 or draws < 1:
        raise ValueError(f"shots and draws must be >= 1, got {shots}, {draws}")
    classes = np.unique(train_y)
    if len(classes) < 2:
        raise ValueError("few_shot_accuracy needs at least two classes in the training labels")
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(draws):
        rows = np.concatenate([rng.permutation(np.flatnonzero(train_y == c))[:shots] for c in classes])
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        model.fit(train_x[rows].astype(np.float64), train_y[rows])
        scores.append(model.score(np.asarray(test_x, np.float64), np.asarray(test_y)))
    return float(np.mean(scores))


def shift_sensitivity(features: np.ndarray, shifted_features: np.ndarray, shifts_degrees: np.ndarray,
                      train_fraction: float = 0.5, alphas: Sequence[float] = RIDGE_ALPHAS) -> dict[str, float]:
    """How well the applied hue shift d is read from an image's and its shifted copy's features.

    Inputs of a ridge regression are the squared differences ``(f(x') - f(x))^2`` (standardised),
    the target is ``cos d``; the first ``train_fraction`` of the rows fit, the rest test.

    Returns ``{"shift_r2": R^2 of cos d on the held-out rows, "shift_mae": MAE of arccos(pred)
    against |d| in degrees}`` (a model blind to hue: R^2 ~ 0 and the MAE of predicting the mean).
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    shifts = np.asarray(shifts_degrees, np.float64)
    f0 = _check_rows("shift_sensitivity features", features, len(shifts)).astype(np.float64)
    f1 = _check_rows("shift_sensitivity shifted_features", shifted_features, len(shifts)).astype(np.float64)
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    n_fit = int(round(train_fraction * len(shifts)))
    if n_fit < 2 or len(shifts) - n_fit < 2:
        raise ValueError(f"shift_sensitivity needs at least 2 fitting and 2 held-out pairs, got {len(shifts)}")
    x = (f1 - f0) ** 2
    y = np.cos(np.radians(shifts))
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=tuple(alphas)))
    model.fit(x[:n_fit], y[:n_fit])
    pred = model.predict(x[n_fit:])
    r2 = float(model.score(x[n_fit:], y[n_fit:]))
    recovered = np.degrees(np.arccos(np.clip(pred, -1.0, 1.0)))
    mae = float(np.abs(recovered - circular_error_degrees(shifts[n_fit:], 0.0)).mean())
    return {"shift_r2": r2, "shift_mae": mae}


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-12)


def invariance_gap(features: np.ndarray, jittered_features: np.ndarray) -> float:
    """mean cos(f(x), f(jitter(x))) - mean cos(f(x), f(y)); y = the next row (another image)."""
    features = np.asarray(features)
    jittered_features = _check_rows("invariance_gap jittered_features", jittered_features, len(features))
    if len(features) < 2:
        raise ValueError("invariance_gap needs at least two images")
    same = _cosine_rows(features, jittered_features).mean()
    other = _cosine_rows(features, np.roll(features, 1, axis=0)).mean()
    return float(same - other)


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """Images of one split with their labels and continuous hues.

    Attributes:
      images: uint8 ``[N, S, S, 3]``.
      labels: ``{key: int [N]}`` (e.g. garment and binned hues).
      hues: ``{key: float [N]}`` degrees (e.g. body_hue, band_hue, hue_difference).
    """

    images: np.ndarray
    labels: Mapping[str, np.ndarray]
    hues: Mapping[str, np.ndarray]

    def take(self, n: int) -> "EvalSet":
        """The first ``n`` examples."""
        return EvalSet(self.images[:n], {k: v[:n] for k, v in self.labels.items()},
                       {k: v[:n] for k, v in self.hues.items()})


EncoderFn = Callable[..., Mapping[str, object]]


def _hue_shifted(images: np.ndarray, shifts_degrees: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    from hac_tf.augment.colour import adjust_hue

    x = tf.convert_to_tensor(images, tf.float32) / 255.0
    return adjust_hue(x, tf.constant(np.asarray(shifts_degrees) / 360.0, tf.float32)).numpy()


def _colour_jittered(images: np.ndarray, seed: int) -> np.ndarray:
    """Every image through the standard colour jitter (0.4, 0.4, 0.4, 0.1), always applied."""
    from hac_tf.augment.policies import AugmentationSettings, LevelSpec, ViewPolicy

    settings = AugmentationSettings(image_size=int(images.shape[1]), jitter_probability=1.0)
    views = ViewPolicy([LevelSpec(("jitter",))], settings)(images, seed=[seed, 0])
    return views["level_1"]["view_a"].numpy()


def colour_report(encoder_fn: EncoderFn, train: EvalSet, test: EvalSet, *,
                  feature_names: Sequence[str] = ("stage1", "stage2", "stage3", "stage4", "projector"),
                  garment_key: str = "garment", knn_k: int = 20, shots: int = 10, few_shot_draws: int = 5,
                  shift_examples: int = 1000, batch_size: int = 256, seed: int = 0) -> dict[str, dict[str, float]]:
    """Every measure of this module for every feature of an encoder.

    Args:
      encoder_fn: float32 images ``[B, S, S, 3]`` in [0, 1] -> ``{name: [B, D]}`` (e.g.
        ``model.encode``; features it does not return are skipped).
      train, test: the probes fit on ``train`` and are scored on ``test``.
      feature_names: which encoder outputs to measure.
      garment_key: the label measured with the linear probe of hac_tf.evaluation (and kNN,
        few-shot); other int labels get kNN and few-shot accuracy.
      knn_k, shots, few_shot_draws: see `knn_measures`, `few_shot_accuracy`.
      shift_examples: test images used for the shift sensitivity and the invariance gap.
      seed: the shifts, the jitter and the few-shot draws.

    Returns:
      ``{feature: {measure: value}}`` with, per feature: ``<hue>_ridge_mae`` / ``<hue>_ridge_r2``
      for every hue, ``<key>_knn_acc`` / ``<hue>_knn_mae``, ``<key>_few_shot`` for every label,
      ``<garment_key>_linear`` and ``<garment_key>_knn_weighted`` (hac_tf.evaluation's linear probe
      and kNN), ``shift_r2`` / ``shift_mae`` and ``invariance_gap``.
    """
    from hac_tf.evaluation.features import extract_features_from_arrays
    from hac_tf.evaluation.knn import knn_accuracy
    from hac_tf.evaluation.linear import linear_probe

    train_f = extract_features_from_arrays(encoder_fn, train.images, batch_size=batch_size)
    test_f = extract_features_from_arrays(encoder_fn, test.images, batch_size=batch_size)
    names = [n for n in feature_names if n in train_f]
    if not names:
        raise ValueError(f"the encoder returns none of {list(feature_names)} (it returns {sorted(train_f)})")
    m = min(int(shift_examples), len(test.images))
    rng = np.random.default_rng(seed)
    shifts = rng.uniform(-180.0, 180.0, m)
    shifted_f = extract_features_from_arrays(encoder_fn, _hue_shifted(test.images[:m], shifts), batch_size=batch_size)
    jittered_f = extract_features_from_arrays(encoder_fn, _colour_jittered(test.images[:m], seed), batch_size=batch_size)

    report: dict[str, dict[str, float]] = {}
    for name in names:
        tr, te = train_f[name], test_f[name]
        row: dict[str, float] = {}
        for key in train.hues:
            fit = hue_regression(tr, train.hues[key], te, test.hues[key])
            row[f"{key}_ridge_mae"], row[f"{key}_ridge_r2"] = fit.mae_degrees, fit.r2
        row.update(knn_measures(tr, te, train.labels, test.labels, train.hues, test.hues, k=knn_k))
        for key in train.labels:
            row[f"{key}_few_shot"] = few_shot_accuracy(tr, train.labels[key], te, test.labels[key], shots=shots,
                                                       draws=few_shot_draws, seed=seed)
        if garment_key in train.labels:
            probe = linear_probe(tr, train.labels[garment_key], te, test.labels[garment_key],
                                 label_key=garment_key)
            row[f"{garment_key}_linear"] = float(probe["test_acc"])
            row[f"{garment_key}_knn_weighted"] = knn_accuracy(
                tr, train.labels[garment_key], te, test.labels[garment_key],
                k=min(200, len(tr)), temperature=0.1, label_key=garment_key)
        row.update(shift_sensitivity(test_f[name][:m], shifted_f[name], shifts))
        row["invariance_gap"] = invariance_gap(test_f[name][:m], jittered_f[name])
        report[name] = row
    return report
