"""hac_tf.evaluation: frozen-feature evaluation of encoders.

  extract_features      run an encoder once over a labelled source -> numpy features + labels
  knn_classify / knn_accuracy / KNNMonitor
                        temperature-weighted cosine kNN (InstDisc/SimCLR monitor), chunked in TF
  linear_probe          L2-regularised softmax regression on standardised frozen features
                        (full-batch L-BFGS-B to the optimum in float64: same answer under any BLAS)
  check_labels / LabelError
                        every probe refuses unlabelled (-1) and out-of-range labels, naming the
                        split and the label key
  sklearn_linear_probe / sklearn_knn_classify
                        the same probes by scikit-learn, to cross-check
  multi_task_probe      linear probe (+ kNN) for every (feature, label) pair
  format_table / save_report / load_report
                        text table, results.json and grouped bar chart

An encoder function maps float32 images [B, H, W, 3] in [0, 1] to {name: [B, D]}; a labelled
source is a tf.data.Dataset of (uint8 image [H, W, 3], {label_key: int32 scalar}).
"""

from hac_tf.evaluation.features import (
    dataset_to_arrays,
    extract_features,
    extract_features_from_arrays,
    images_to_float,
)
from hac_tf.evaluation.knn import KNNMonitor, knn_accuracy, knn_classify
from hac_tf.evaluation.labels import UNLABELLED, LabelError, check_labels
from hac_tf.evaluation.linear import (
    LinearClassifier,
    fit_linear_classifier,
    linear_probe,
    standardisation_stats,
)
from hac_tf.evaluation.multitask import KNN_SUFFIX, multi_task_probe
from hac_tf.evaluation.reference import sklearn_knn_classify, sklearn_linear_probe
from hac_tf.evaluation.report import (
    ReportPaths,
    format_table,
    load_report,
    plot_results,
    save_report,
)

__all__ = [
    "KNNMonitor",
    "KNN_SUFFIX",
    "LabelError",
    "LinearClassifier",
    "ReportPaths",
    "UNLABELLED",
    "check_labels",
    "dataset_to_arrays",
    "extract_features",
    "extract_features_from_arrays",
    "fit_linear_classifier",
    "format_table",
    "images_to_float",
    "knn_accuracy",
    "knn_classify",
    "linear_probe",
    "load_report",
    "multi_task_probe",
    "plot_results",
    "save_report",
    "sklearn_knn_classify",
    "sklearn_linear_probe",
    "standardisation_stats",
]
