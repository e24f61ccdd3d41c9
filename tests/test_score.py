"""xentc.score against the float64 reference (tests/reference.py): values on
hand-made cases, random inputs of every kind, memory-mapped streaming in
batches, special values, and errors."""
import math
import tracemalloc

import numpy as np
import pytest
from numpy.exceptions import AxisError

import reference as ref
import xentc
from xentc import _score

FIELDS = ("rows", "mean_loss", "perplexity", "accuracy", "expected_calibration_error", "loss_sum")


def assert_score(got, want, rtol):
    """A ScoreResult against reference.score's dict: counts exact, sums within rtol."""
    assert isinstance(got, xentc.ScoreResult)
    assert got.rows == want["rows"]
    for name in ("mean_loss", "perplexity", "loss_sum", "expected_calibration_error"):
        np.testing.assert_allclose(getattr(got, name), want[name], rtol=rtol, atol=1e-12,
                                   equal_nan=True, err_msg=name)
    # accuracies are ratios of integer counts: exactly the reference's
    np.testing.assert_equal(got.accuracy, want["accuracy"])
    assert got.top_k_accuracy.keys() == want["top_k_accuracy"].keys()
    for k, v in want["top_k_accuracy"].items():
        np.testing.assert_equal(got.top_k_accuracy[k], v, err_msg=f"top-{k}")


def rtol_of(dtype):
    return 1e-12 if np.dtype(dtype) == np.float64 else 2e-5


# --------------------------------------------------------------------------
# hand-made cases
# --------------------------------------------------------------------------

def test_hand_made_values():
    # row 0: label 0 is the max (a hit); row 1: label 0 is second of three
    # (top-1 miss, top-2 hit); row 2: label 1 is last (a miss for k < 3)
    logits = np.array([[3.0, 1.0, 0.0], [0.5, 2.2, 0.0], [4.0, -1.0, 0.0]])
    labels = np.array([0, 0, 1])
    lse = [math.log(sum(math.exp(v) for v in row)) for row in logits.tolist()]
    losses = [lse[0] - 3.0, lse[1] - 0.5, lse[2] + 1.0]
    conf = [math.exp(max(row) - l) for row, l in zip(logits.tolist(), lse)]
    r = xentc.score(logits, labels, top_k=(1, 2, 3, 10))
    assert r.rows == 3
    assert r.accuracy == 1 / 3
    assert r.top_k_accuracy == {1: 1 / 3, 2: 2 / 3, 3: 1.0, 10: 1.0}
    assert r.loss_sum == pytest.approx(sum(losses), rel=1e-14)
    assert r.mean_loss == pytest.approx(sum(losses) / 3, rel=1e-14)
    assert r.perplexity == pytest.approx(math.exp(sum(losses) / 3), rel=1e-14)
    # confidences 0.844, 0.773, 0.976 in bins 12 (0.8, 0.867], 11 (0.733, 0.8]
    # and 14 (0.933, 1]; only row 0 is right
    assert 0.8 < conf[0] <= 13 / 15 and 11 / 15 < conf[1] <= 0.8 and conf[2] > 14 / 15
    ece = (abs(1 - conf[0]) + abs(0 - conf[1]) + abs(0 - conf[2])) / 3
    assert r.expected_calibration_error == pytest.approx(ece, rel=1e-14)
    assert_score(r, ref.score(logits, labels, top_k=(1, 2, 3, 10)), 1e-13)


def test_perfectly_calibrated_bins_give_zero_ece():
    # two classes, logits (log 3, 0): confidence exactly 3/4 in every row;
    # three of four rows right: accuracy 3/4 in that bin, ECE 0
    logits = np.tile([math.log(3.0), 0.0], (4, 1))
    r = xentc.score(logits, [0, 0, 0, 1], top_k=1)
    assert r.accuracy == 0.75
    assert r.expected_calibration_error == pytest.approx(0.0, abs=1e-15)


def test_ties_are_broken_by_class_index():
    # row 0: label 1 ties the max with class 0, which comes first: rank 1, a
    # top-2 hit only; row 1: label 2 ties class 3 behind the max: rank 1
    logits = np.array([[5.0, 5.0, 1.0, 1.0], [9.0, 0.0, 3.0, 3.0]])
    r = xentc.score(logits, [1, 2], top_k=(1, 2))
    assert r.accuracy == 0.0
    assert r.top_k_accuracy == {1: 0.0, 2: 1.0}
    assert_score(r, ref.score(logits, [1, 2], top_k=(1, 2)), 1e-13)
    # the other order: the label comes first among the ties
    r = xentc.score(logits, [0, 3], top_k=(1, 2))
    assert r.top_k_accuracy == {1: 0.5, 2: 0.5}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [10, 1000])
def test_constant_logits_are_a_hit_for_label_0_only(dtype, c):
    # a model that outputs one value for every class must not score 100%:
    # top-1 agrees with np.argmax (the first class), top-k with the first k
    logits = np.zeros((c, c), dtype)
    labels = np.arange(c)
    r = xentc.score(logits, labels, top_k=(1, 5))
    assert r.accuracy == 1 / c
    assert r.top_k_accuracy[5] == 5 / c
    assert_score(r, ref.score(logits, labels, top_k=(1, 5)), 1e-6)


def test_undefined_rows_are_misses_even_when_k_exceeds_c():
    logits = np.array([[np.nan, 0.0], [0.0, 1.0], [-np.inf, -np.inf]])
    r = xentc.score(logits, [0, 1, 1], top_k=(1, 5))
    assert r.accuracy == 1 / 3
    assert r.top_k_accuracy[5] == 1 / 3
    assert_score(r, ref.score(logits, [0, 1, 1], top_k=(1, 5)), 1e-13)


def test_float32_confidence_on_a_bin_edge_is_binned_in_double():
    # 1/5 = 3/15 is a bin edge; float32(1/5) rounds up and would fall in the
    # bin above.  Row 0 (confidence 1/5, a hit) and row 1 (a miss).
    logits = np.array([[0, 0, 0, 0, 0], [0.2, 0, 0, 0, 0]], np.float32)
    r = xentc.score(logits, [0, 1], top_k=(1,))
    expected = ref.score(logits, [0, 1], top_k=(1,))
    assert r.expected_calibration_error == pytest.approx(expected["expected_calibration_error"], rel=1e-6)


def test_dense_labels_use_their_argmax_and_the_dense_loss():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    labels = np.array([[0.7, 0.2, 0.1], [0.5, 0.25, 0.25]])  # classes 0 and 0
    r = xentc.score(logits, labels, top_k=(1,))
    assert r.accuracy == 0.5
    dense_loss = ref.dense_xent(labels, logits)[0]
    assert r.loss_sum == pytest.approx(dense_loss.sum(), rel=1e-13)
    assert_score(r, ref.score(logits, labels, top_k=(1,)), 1e-13)


def test_one_hot_dense_labels_score_as_class_indices():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(200, 40))
    labels = rng.integers(0, 40, size=200)
    sparse = xentc.score(logits, labels)
    dense = xentc.score(logits, np.eye(40)[labels])
    assert sparse.top_k_accuracy == dense.top_k_accuracy
    assert sparse.expected_calibration_error == pytest.approx(dense.expected_calibration_error,
                                                              rel=1e-12)
    assert sparse.loss_sum == pytest.approx(dense.loss_sum, rel=1e-12)


# --------------------------------------------------------------------------
# random inputs against the reference
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32])
@pytest.mark.parametrize("n_classes", [1, 3, 33, 257, 4100])
@pytest.mark.parametrize("batch_rows", [None, 1, 37])
def test_random_against_reference(dtype, n_classes, batch_rows):
    rng = np.random.default_rng(n_classes)
    n = 150
    logits = (rng.normal(size=(n, n_classes)) * 3).astype(dtype)
    logits[:3, :] = logits[:3, :1]                      # rows of ties
    if n_classes > 1:
        logits[5, 1] = np.finfo(np.float16).max if dtype != np.int32 else 100  # a confident row
    labels = rng.integers(0, n_classes, size=n).astype(np.int16)
    top_k = (1, 2, 5, n_classes + 3)
    got = xentc.score(logits, labels, top_k=top_k, batch_rows=batch_rows)
    assert_score(got, ref.score(logits, labels, top_k=top_k), rtol_of(np.result_type(dtype, np.float32)))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_class_axis_and_leading_dimensions(axis):
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(6, 7, 40)).astype(np.float32)
    logits = np.moveaxis(logits, -1, axis)            # classes along `axis`, a strided view
    shape = list(logits.shape)
    del shape[axis % 3]
    labels = rng.integers(0, 40, size=shape)
    got = xentc.score(logits, labels, axis=axis, batch_rows=5)
    assert_score(got, ref.score(logits, labels, axis=axis), 2e-5)
    dense = np.moveaxis(np.eye(40, dtype=np.float32)[labels], -1, axis % 3)
    got = xentc.score(logits, dense, axis=axis, batch_rows=4)
    assert_score(got, ref.score(logits, dense, axis=axis), 2e-5)


def test_soft_dense_labels_against_reference():
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(300, 64))
    labels = rng.dirichlet(np.full(64, 0.3), size=300)
    got = xentc.score(logits, labels, batch_rows=17, top_k=(1, 3))
    assert_score(got, ref.score(logits, labels, top_k=(1, 3)), 1e-12)


def test_bit_identical_for_every_thread_count_and_batch_size():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(3000, 300)).astype(np.float32)
    labels = rng.integers(0, 300, size=3000)
    base = xentc.score(logits, labels, num_threads=1, batch_rows=3000)
    for threads in (2, 3):
        assert xentc.score(logits, labels, num_threads=threads, batch_rows=3000) == base
    # other batches only change the order of the float64 sums
    other = xentc.score(logits, labels, batch_rows=333)
    assert other.top_k_accuracy == base.top_k_accuracy
    assert other.loss_sum == pytest.approx(base.loss_sum, rel=1e-13)
    assert other.expected_calibration_error == pytest.approx(base.expected_calibration_error,
                                                             rel=1e-12)


def test_special_values_make_their_row_a_miss_and_the_means_nan():
    logits = np.array([[1.0, 2.0, 0.0], [np.nan, 1.0, 0.0], [-np.inf, -np.inf, -np.inf],
                       [np.inf, 0.0, 1.0]])
    r = xentc.score(logits, [1, 1, 0, 0], top_k=(1, 3))
    assert r.rows == 4
    assert math.isnan(r.mean_loss) and math.isnan(r.perplexity)
    assert math.isnan(r.expected_calibration_error)
    assert r.accuracy == 0.5                 # rows 0 and 3; the NaN and -inf rows miss
    assert r.top_k_accuracy == {1: 0.5, 3: 0.5}
    assert_score(r, ref.score(logits, [1, 1, 0, 0], top_k=(1, 3)), 1e-13)
    # a +inf logit takes all the probability: confidence 1, loss 0 at it
    r = xentc.score(logits[3:], [0])
    assert (r.loss_sum, r.accuracy, r.expected_calibration_error) == (0.0, 1.0, 0.0)


def test_no_rows_gives_nan_means():
    r = xentc.score(np.zeros((0, 5), np.float32), np.zeros(0, np.int64))
    assert r.rows == 0 and r.loss_sum == 0.0
    assert all(math.isnan(v) for v in (r.mean_loss, r.accuracy, r.expected_calibration_error))
    assert math.isnan(r.top_k_accuracy[5])


def test_to_dict_and_frozen():
    r = xentc.score([[1.0, 0.0]], [0], top_k=(1, 2))
    d = r.to_dict()
    assert set(d) == set(FIELDS) | {"top_k_accuracy"}
    assert d["top_k_accuracy"] == {1: 1.0, 2: 1.0}
    with pytest.raises(AttributeError):
        r.rows = 3


def test_top_k_is_normalised():
    r = xentc.score([[1.0, 0.0, 2.0]], [0], top_k=[5, 2, 2])
    assert list(r.top_k_accuracy) == [2, 5]
    assert list(xentc.score([[1.0, 0.0]], [0], top_k=3).top_k_accuracy) == [3]
    assert xentc.score([[1.0, 0.0]], [0], top_k=()).top_k_accuracy == {}


# --------------------------------------------------------------------------
# streaming: memory maps in batches, memory bounded by the batch
# --------------------------------------------------------------------------

def _npy(tmp_path, name, a):
    path = tmp_path / name
    np.save(path, a)
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("dtype", [np.float32, ">f8", np.float16])
def test_memmap_streams_in_batches_like_in_memory(tmp_path, dtype):
    rng = np.random.default_rng(2)
    n, c = 4000, 200
    logits = rng.normal(size=(n, c)).astype(dtype)
    labels = rng.integers(0, c, size=n)
    mm_x, mm_y = _npy(tmp_path, "x.npy", logits), _npy(tmp_path, "y.npy", labels)
    assert isinstance(mm_x, np.memmap)
    in_memory = xentc.score(np.array(logits), labels)
    tracemalloc.start()
    try:
        streamed = xentc.score(mm_x, mm_y, batch_rows=256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # at most a batch or two (converted copies of 256 rows) at a time, far
    # below the N x C of a full copy (6.4 MB in float64)
    batch_bytes = 256 * c * 8
    assert peak < 3 * batch_bytes < n * c * 8 / 2, peak
    assert streamed.rows == n and streamed.top_k_accuracy == in_memory.top_k_accuracy
    assert streamed.loss_sum == pytest.approx(in_memory.loss_sum, rel=1e-12)
    assert streamed.expected_calibration_error == pytest.approx(
        in_memory.expected_calibration_error, rel=1e-12)
    assert_score(streamed, ref.score(logits, labels), rtol_of(np.result_type(dtype, np.float32)))


def test_memmap_with_the_class_axis_first_is_gathered_per_batch(tmp_path):
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(50, 3000)).astype(np.float32)   # (C, N): classes on axis 0
    labels = rng.integers(0, 50, size=3000)
    mm = _npy(tmp_path, "xt.npy", logits)
    tracemalloc.start()
    try:
        got = xentc.score(mm, labels, axis=0, batch_rows=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < logits.nbytes / 4, peak
    assert_score(got, ref.score(logits, labels, axis=0), 2e-5)


def test_auto_batch_rows_follows_the_memory_budget():
    assert _score.auto_batch_rows(32000, 4) == (256 << 20) // (32000 * 4 + 32)
    assert _score.auto_batch_rows(32000, 4, dense=True) == (256 << 20) // (32000 * 8 + 32)
    assert _score.auto_batch_rows(10 ** 9, 8) == 1


def test_progress_bar_counts_every_row(capsys):
    pytest.importorskip("tqdm")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(100, 10))
    r = xentc.score(logits, rng.integers(0, 10, 100), batch_rows=10, progress=True)
    assert r.rows == 100
    err = capsys.readouterr().err
    assert "100" in err and "xentc score" in err


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

def test_out_of_range_label_is_named_before_any_batch():
    logits = np.zeros((4, 5))
    with pytest.raises(ValueError, match=r"labels\[2\] = 9 is outside the valid range \[0, 5\)"):
        xentc.score(logits, [0, 1, 9, 2])
    with pytest.raises(ValueError, match=r"labels\[1\] = -1 is outside the valid range \[0, 5\)"):
        xentc.score(logits, [0, -1, 9, 2])


def test_invalid_dense_row_is_named_by_its_index_in_the_whole_array():
    labels = np.full((100, 4), 0.25)
    labels[77] = [0.5, 0.5, 0.5, 0.0]
    with pytest.raises(ValueError, match=r"labels\[77, :\] sums to 1.5, not 1"):
        xentc.score(np.zeros((100, 4)), labels, batch_rows=10)
    labels[77] = [0.5, -0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match=r"labels\[77, 1\] = -0.5 is negative"):
        xentc.score(np.zeros((100, 4)), labels, batch_rows=10)


@pytest.mark.parametrize("labels, exc, match", [
    (np.zeros(3, np.int64), ValueError,
     r"labels must have the shape of logits without its class axis \(axis 1\), got "
     r"labels.shape=\(3,\) and logits.shape=\(4, 5\)"),
    (np.zeros((4, 4)), ValueError,
     r"labels and logits must have the same shape .*labels.shape=\(4, 4\) and logits.shape=\(4, 5\)"),
    (np.zeros(4, bool), TypeError, r"labels must hold integer class indices or real class "
                                   r"probabilities, got labels.dtype=bool"),
    (np.array(["a"] * 4), TypeError, r"got labels.dtype=<U1"),
])
def test_label_errors(labels, exc, match):
    with pytest.raises(exc, match=match):
        xentc.score(np.zeros((4, 5)), labels)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"top_k": 0}, ValueError, r"top_k must hold positive integers, got top_k=\(0,\)"),
    ({"top_k": (1, 2.5)}, ValueError, r"top_k must hold positive integers, got top_k=\(1, 2.5\)"),
    ({"top_k": "1,5"}, ValueError, r"top_k must hold positive integers"),
    ({"top_k": None}, TypeError, r"top_k must be a positive integer or a sequence of them, got None"),
    ({"batch_rows": 0}, ValueError, r"batch_rows must be a positive integer or None, got batch_rows=0"),
    ({"batch_rows": 2.0}, TypeError, r"batch_rows must be a positive integer or None, got 2.0"),
    ({"num_threads": 0}, ValueError, r"num_threads must be a positive integer"),
    ({"progress": "yes"}, TypeError, r"progress must be True or False, got 'yes'"),
    ({"axis": 2}, AxisError, r"axis 2 is out of bounds"),
])
def test_argument_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        xentc.score(np.zeros((4, 5)), np.zeros(4, np.int64), **kwargs)


def test_logit_errors():
    with pytest.raises(ValueError, match=r"logits has 0 classes along axis 1"):
        xentc.score(np.zeros((4, 0)), np.zeros(4, np.int64))
    with pytest.raises(TypeError, match=r"logits must be an array of real floating-point"):
        xentc.score(np.zeros((4, 2), complex), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"logits must have at least one dimension"):
        xentc.score(3.0, 0)


def test_docstring_examples():
    import doctest

    result = doctest.testmod(_score, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 6 and result.failed == 0
