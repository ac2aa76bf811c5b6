"""scikit-learn versions of the probes, to cross-check `linear_probe` and `knn_classify`.

* `sklearn_linear_probe`: ``StandardScaler`` + ``LogisticRegression`` (lbfgs, multinomial) with
  ``C`` chosen so that its objective is exactly `linear_probe`'s: scikit-learn minimises
  ``mean CE + 1 / (2 C n) * ||W||^2`` (intercept not penalised), so ``C = 1 / (n * wd)`` for
  ``mean CE + wd / 2 * ||W||^2``. With two classes scikit-learn fits one weight vector
  ``w = W[:, 1] - W[:, 0]`` whose penalty is ``wd / 4 * ||w||^2`` at the symmetric optimum, so
  ``C = 2 / (n * wd)``. Both fit the same strictly convex problem, so their test accuracies
  agree up to the optimisers' tolerances.
* `sklearn_knn_classify`: ``KNeighborsClassifier`` (brute-force cosine distance ``1 - s``) with
  vote weights ``exp(-(1 - s) / tau)``, proportional to `knn_classify`'s ``exp(s / tau)``.

scikit-learn has no preconditioning, so `sklearn_linear_probe` needs many more iterations than
`linear_probe` on correlated features (e.g. random-init ResNet stage features) and is many times
slower at scikit-learn's default ``tol = 1e-4``, for the same accuracies; use it on subsets to
check, not in the training job.
"""

from __future__ import annotations

import warnings

import numpy as np

from hac_tf.evaluation.labels import check_labels

__all__ = ["sklearn_knn_classify", "sklearn_linear_probe"]


def sklearn_linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray | None,
    test_y: np.ndarray | None,
    weight_decay: float = 1e-4,
    max_iter: int = 10000,
    tol: float = 1e-6,
) -> dict:
    """`linear_probe`'s protocol fitted by scikit-learn (float64).

    Args:
      train_x, train_y: float ``[N, D]`` features, int ``[N]`` labels (>= 0).
      test_x, test_y: held-out features / labels, or None.
      weight_decay: ``wd`` of ``mean CE + wd / 2 * ||W||^2`` (must be > 0).
      max_iter, tol: ``LogisticRegression``'s lbfgs iteration cap and gradient tolerance.

    Returns:
      dict with ``train_acc``, ``test_acc`` (None without test data), ``iterations``,
      ``converged`` (no ``ConvergenceWarning``) and ``model`` (the fitted ``Pipeline``).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if weight_decay <= 0:
        raise ValueError("weight_decay must be > 0 (C = 1 / (n * weight_decay))")
    x = np.asarray(train_x, dtype=np.float64)
    y = check_labels(train_y, split="train")
    n, classes = x.shape[0], np.unique(y).size
    c = (2.0 if classes == 2 else 1.0) / (n * float(weight_decay))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=int(max_iter), tol=tol))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    test_acc = None
    if test_x is not None and test_y is not None:
        test_acc = float(model.score(np.asarray(test_x, np.float64),
                                     check_labels(test_y, split="test")))
    return dict(train_acc=float(model.score(x, y)), test_acc=test_acc,
                iterations=int(np.max(model[-1].n_iter_)), converged=converged, model=model)


def sklearn_knn_classify(train_x, train_y, test_x, k: int = 200,
                         temperature: float = 0.1) -> np.ndarray:
    """int64 ``[M]`` predictions of the temperature-weighted cosine kNN, by scikit-learn."""
    from sklearn.neighbors import KNeighborsClassifier

    y = check_labels(train_y, split="train")
    knn = KNeighborsClassifier(n_neighbors=min(int(k), len(y)), metric="cosine",
                               algorithm="brute",
                               weights=lambda d: np.exp(-np.asarray(d) / temperature))
    knn.fit(np.asarray(train_x, np.float64), y)
    return knn.predict(np.asarray(test_x, np.float64)).astype(np.int64)
