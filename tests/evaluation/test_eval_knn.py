"""kNN classifier vs an independent brute-force NumPy implementation, plus the KNN monitor."""

import numpy as np
import pytest
import tensorflow as tf

from hac_tf.evaluation import KNNMonitor, LabelError, knn_accuracy, knn_classify, sklearn_knn_classify


def brute_force_knn(train_x, train_y, test_x, num_classes, k, temperature):
    """Reference: float64 cosine similarities, stable sort, exp(sim / tau) votes."""
    a = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    q = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ a.astype(np.float64).T
    k = min(k, len(train_x))
    preds = []
    for row in sims:
        nn = np.argsort(-row, kind="stable")[:k]
        votes = np.zeros(num_classes)
        np.add.at(votes, train_y[nn], np.exp(row[nn] / temperature))
        preds.append(int(np.argmax(votes)))
    return np.array(preds)


@pytest.mark.parametrize("k,temperature,batch,train_batch", [
    (20, 0.1, 1024, 65536),   # one chunk
    (20, 0.1, 37, 128),       # many query and training chunks: running top-k merge
    (7, 0.5, 50, 33),         # train chunks smaller than... k-sized chunks, odd sizes
    (200, 0.07, 64, 100),
])
def test_matches_brute_force(rng, k, temperature, batch, train_batch):
    c = 6
    train_x = rng.normal(size=(500, 16)).astype(np.float32)
    train_y = rng.integers(0, c, 500)
    test_x = rng.normal(size=(123, 16)).astype(np.float32)
    got = knn_classify(train_x, train_y, test_x, c, k=k, temperature=temperature,
                       batch_size=batch, train_batch_size=train_batch)
    want = brute_force_knn(train_x, train_y, test_x, c, k, temperature)
    assert got.shape == (123,) and got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


def test_small_train_chunk_below_k(rng):
    # train chunks of 5 rows with k = 12: each chunk contributes < k candidates
    train_x = rng.normal(size=(60, 8)).astype(np.float32)
    train_y = rng.integers(0, 3, 60)
    test_x = rng.normal(size=(40, 8)).astype(np.float32)
    got = knn_classify(train_x, train_y, test_x, 3, k=12, train_batch_size=5, batch_size=7)
    np.testing.assert_array_equal(got, brute_force_knn(train_x, train_y, test_x, 3, 12, 0.1))


def test_k_is_clamped_to_train_size(rng):
    train_x = rng.normal(size=(50, 8)).astype(np.float32)
    train_y = rng.integers(0, 4, 50)
    test_x = rng.normal(size=(30, 8)).astype(np.float32)
    big = knn_classify(train_x, train_y, test_x, 4, k=10_000)
    exact = knn_classify(train_x, train_y, test_x, 4, k=50)
    np.testing.assert_array_equal(big, exact)
    np.testing.assert_array_equal(big, brute_force_knn(train_x, train_y, test_x, 4, 50, 0.1))


def test_k1_and_tiny_temperature_equal_nearest_neighbour(rng):
    train_x = rng.normal(size=(300, 10)).astype(np.float32)
    train_y = rng.integers(0, 5, 300)
    test_x = rng.normal(size=(100, 10)).astype(np.float32)
    a = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    q = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    nearest = train_y[np.argmax(q @ a.T, axis=1)]
    np.testing.assert_array_equal(knn_classify(train_x, train_y, test_x, 5, k=1), nearest)
    # tau -> 0: the nearest neighbour's weight dominates all others (no overflow either)
    np.testing.assert_array_equal(
        knn_classify(train_x, train_y, test_x, 5, k=50, temperature=1e-4), nearest)


def test_temperature_changes_the_vote():
    # one class-0 point very close to the query, three class-1 points a little further
    train_x = np.array([[1.0, 0.05], [1.0, 0.4], [1.0, -0.4], [1.0, 0.42]], np.float32)
    train_y = np.array([0, 1, 1, 1])
    query = np.array([[1.0, 0.0]], np.float32)
    assert knn_classify(train_x, train_y, query, 2, k=4, temperature=0.01)[0] == 0
    assert knn_classify(train_x, train_y, query, 2, k=4, temperature=10.0)[0] == 1


def test_scores_and_cosine_scale_invariance(rng):
    train_x = rng.normal(size=(80, 6)).astype(np.float32)
    train_y = rng.integers(0, 3, 80)
    test_x = rng.normal(size=(20, 6)).astype(np.float32)
    preds, scores = knn_classify(train_x, train_y, test_x, 3, k=10, return_scores=True)
    assert scores.shape == (20, 3)
    np.testing.assert_array_equal(preds, np.argmax(scores, axis=1))
    # the nearest neighbour has weight 1 after the per-query shift; k weights sum <= k
    assert np.all(scores.max(axis=1) >= 1.0 - 1e-6) and np.all(scores.sum(axis=1) <= 10 + 1e-4)
    scaled = train_x * rng.uniform(0.1, 10.0, size=(80, 1)).astype(np.float32)
    np.testing.assert_array_equal(knn_classify(scaled, train_y, test_x * 3.0, 3, k=10), preds)


def test_accuracy_on_clusters_and_errors(rng):
    centres = rng.normal(size=(4, 12)) * 5
    ytr, yte = rng.integers(0, 4, 400), rng.integers(0, 4, 100)
    xtr = (centres[ytr] + rng.normal(size=(400, 12))).astype(np.float32)
    xte = (centres[yte] + rng.normal(size=(100, 12))).astype(np.float32)
    assert knn_accuracy(xtr, ytr, xte, yte, k=20) == 1.0
    with pytest.raises(ValueError):
        knn_classify(xtr, ytr[:10], xte, 4)
    with pytest.raises(ValueError):
        knn_classify(xtr, ytr, xte[:, :5], 4)


def _source(images, garment, colour):
    return tf.data.Dataset.from_tensor_slices(
        (images, {"garment": garment.astype(np.int32), "colour": colour.astype(np.int32)}))


def test_knn_monitor(rng):
    # the garment label decides which channel is bright; colour is noise in the images
    def make(n):
        garment = rng.integers(0, 3, n)
        colour = rng.integers(0, 5, n)
        images = rng.integers(0, 40, size=(n, 8, 8, 3)).astype(np.uint8)
        images[np.arange(n), :, :, garment] += 200
        return images, garment, colour

    tr, te = make(300), make(90)
    calls = []

    @tf.function
    def encoder(images):
        calls.append(1)  # trace counter
        pooled = tf.reduce_mean(images, axis=[1, 2])
        return {"embedding": pooled - 0.5, "flat": tf.reshape(images, [tf.shape(images)[0], -1])}

    monitor = KNNMonitor(_source(*tr), _source(*te), label_key="garment", k=20, max_train=200,
                         max_test=50, batch_size=64)
    assert monitor.num_train == 200 and monitor.num_test == 50
    out = monitor.evaluate(encoder)
    assert set(out) == {"knn_acc"} and out["knn_acc"] == 1.0
    out2 = monitor.evaluate(encoder)  # cached images, features recomputed
    assert out2 == out

    multi = KNNMonitor(_source(*tr), _source(*te), label_key=("garment", "colour"),
                       feature_name=["embedding", "flat"], k=20, max_train=None, max_test=None)
    res = multi.evaluate(encoder)
    assert res["knn_acc"] == res["knn_acc/embedding/garment"] == 1.0
    assert set(res) == {"knn_acc", "knn_acc/embedding/garment", "knn_acc/embedding/colour",
                        "knn_acc/flat/garment", "knn_acc/flat/colour"}
    assert res["knn_acc/embedding/colour"] < 0.5  # 5 random colours: near chance


@pytest.mark.parametrize("k,temperature", [(1, 0.1), (20, 0.1), (50, 0.5)])
def test_matches_scikit_learn(rng, k, temperature):
    centres = rng.normal(size=(5, 16)) * 0.6
    ytr, yte = rng.integers(0, 5, 600), rng.integers(0, 5, 300)
    xtr = (centres[ytr] + rng.normal(size=(600, 16))).astype(np.float32)
    xte = (centres[yte] + rng.normal(size=(300, 16))).astype(np.float32)
    ours = knn_classify(xtr, ytr, xte, 5, k=k, temperature=temperature, batch_size=64,
                        train_batch_size=256)
    ref = sklearn_knn_classify(xtr, ytr, xte, k=k, temperature=temperature)
    assert np.mean(ours == ref) >= 0.99  # float32 vs float64 similarities: near-ties may differ
    acc = np.mean(ours == yte)
    assert 0.4 < acc < 0.99 and abs(acc - np.mean(ref == yte)) <= 0.005


def test_unlabelled_and_out_of_range_labels_are_refused_naming_split_and_key(rng):
    x = rng.normal(size=(30, 4)).astype(np.float32)
    y = np.arange(30) % 3
    unlabelled = np.where(np.arange(30) < 7, -1, y)
    with pytest.raises(LabelError, match=r"split 'train\+unlabelled' has 7 examples with label -1 "
                                         r"for key 'label' \(unlabelled\)"):
        knn_accuracy(x, unlabelled, x, y, k=5, split_names=("train+unlabelled", "test"))
    with pytest.raises(LabelError, match=r"split 'test' has 7 examples with label -1 for key 'colour'"):
        knn_accuracy(x, y, x, unlabelled, 3, k=5, label_key="colour")
    with pytest.raises(LabelError, match=r"split 'test' has 10 examples with labels >= num_classes=3"):
        knn_accuracy(x, y, x, y + 1, 3, k=5)
    with pytest.raises(LabelError, match=r"split 'train' has 10 examples with labels >= num_classes=2"):
        knn_classify(x, y, x, 2)
    with pytest.raises(LabelError, match=r"split 'memory' has 7 examples with label -1"):
        knn_classify(x, unlabelled, x, split="memory")


def test_knn_monitor_refuses_unlabelled_data_when_preparing(rng):
    images = rng.integers(0, 255, size=(40, 8, 8, 3)).astype(np.uint8)
    labels = rng.integers(0, 3, 40)
    unlabelled = np.where(np.arange(40) % 2 == 0, -1, labels)
    monitor = KNNMonitor(_source(images, unlabelled, labels), _source(images, labels, labels),
                         label_key="garment", k=5, split_names=("train+unlabelled", "test"))
    with pytest.raises(LabelError, match=r"split 'train\+unlabelled' has 20 examples with label -1 "
                                         r"for key 'garment'"):
        monitor.prepare()
    too_high = KNNMonitor(_source(images, labels, labels), _source(images, labels, labels),
                          label_key="colour", k=5, num_classes={"colour": 2})
    with pytest.raises(LabelError, match=r"split 'train' has \d+ examples with labels >= "
                                         r"num_classes=2 for key 'colour'"):
        too_high.prepare()
