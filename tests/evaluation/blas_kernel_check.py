"""Fits the linear probe on two fixed problems and prints the outcome as JSON (last stdout line).

Run twice by tests/evaluation/test_eval_linear_probe.py, with ``OPENBLAS_CORETYPE`` unset and set
to ``Haswell``: the answers must agree. Problem ``correlated`` (12 features, one an almost exact
multiple of another) made the former float32 objective stop with "ABNORMAL" (a failed line
search, not converged) under the Haswell kernel only; ``near_separable`` (10 classes, ReLU random
features, small weight decay) takes many slow iterations near the optimum, where rounding
differences between kernels add up.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from hac_tf.evaluation.linear import linear_probe  # noqa: E402


def correlated(rng):
    """Blobs in 12 anisotropic features, one almost a multiple of another: 600 train, 200 test."""
    centres = rng.normal(size=(3, 12)) * 0.5
    parts = []
    for n in (600, 200):
        y = rng.integers(0, 3, n)
        x = (centres[y] + rng.normal(size=(n, 12))) * np.geomspace(0.01, 100.0, 12) + 50.0
        x = x.astype(np.float32)
        x[:, 1] = x[:, 0] * 0.3 + 0.01 * x[:, 1]
        parts.append((x, y))
    (xtr, ytr), (xte, yte) = parts
    return np.concatenate([xtr, xte]), np.concatenate([ytr, yte]), 600, 3, 1e-3


def near_separable(rng):
    centres = rng.normal(size=(10, 32)) * 0.8
    y = rng.integers(0, 10, 4000)
    hidden = centres[y] + rng.normal(size=(4000, 32))
    x = np.maximum(hidden @ (rng.normal(size=(32, 64)) / np.sqrt(32)), 0.0) + 5.0
    return x.astype(np.float32), y, 3000, 10, 1e-4


def main():
    from threadpoolctl import threadpool_info

    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"][:1] or [{}]
    out = {"blas_internal_api": blas[0].get("internal_api"),
           "blas_architecture": blas[0].get("architecture")}
    for name, make in (("correlated", correlated), ("near_separable", near_separable)):
        x, y, n, classes, wd = make(np.random.default_rng(1234))
        for precondition in (True, False):
            res = linear_probe(x[:n], y[:n], x[n:], y[n:], classes, weight_decay=wd,
                               precondition=precondition, return_model=True)
            out[f"{name}/precondition={precondition}"] = dict(
                converged=res["converged"], iterations=res["iterations"], loss=res["loss"],
                test_acc=res["test_acc"], predictions=res["model"].predict(x[n:]).tolist())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
