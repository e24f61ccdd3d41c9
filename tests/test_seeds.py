"""The numbers quoted in the seed questions (/work/shared/seeds), as regressions.

seed 000: "Should softmax cross entropy with logits always be zero if logits and
          labels are identical?" (one-hot passed as both: 1.4611; logits passed as
          labels give a meaningless, negative loss; 10 vs -10 gives 1.855e-08)
seed 001: softmax([.1, .3, .5, .9]) and loss shapes
seed 002: logits [1, -3, 10], labels [.1, .02, .88] -> 1.16012561
seed 003: labels of 0 contribute nothing to the loss, yet every logit gets a gradient

Expected values come from mpmath (40 digits), rounded here; see each comment.
"""
import re

import numpy as np
import pytest

import xentc
from conftest import assert_close, F32, F64
import reference

# mpmath: log(9 + e) - 1
SEED000_ONE_HOT_LOSS = 1.4611501717344748
# mpmath: log1p(9 exp(-20)) and -9 exp(-20) / (1 + 9 exp(-20))
CONFIDENT_LOSS = 1.8550382429888675e-08
CONFIDENT_TRUE_GRAD = -1.8550382257830332e-08
# mpmath: logsumexp([1, -3, 10]) - (0.1 * 1 + 0.02 * -3 + 0.88 * 10)
SEED002_LOSS = 1.1601256622376639
# mpmath: softmax([0.1, 0.3, 0.5, 0.9])
SEED001_SOFTMAX = [0.16838508176959243, 0.20566600330640593, 0.25120102369822281, 0.37474789122577883]


def one_hot(n_classes, k, dtype=np.float64):
    y = np.zeros(n_classes, dtype=dtype)
    y[k] = 1
    return y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seed000_one_hot_logits_give_log_9_plus_e_minus_1(dtype):
    # The question: labels and logits both one-hot (1 at the true class).  The
    # loss is log(9 + e) - 1 = 1.4611 (the answer's number), not 0.
    y = one_hot(10, 4, dtype)
    loss = xentc.softmax_cross_entropy_with_logits(y, y.copy())
    assert np.asarray(loss).shape == ()
    np.testing.assert_allclose(float(loss), SEED000_ONE_HOT_LOSS, rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert 1.4611 <= float(loss) < 1.4612  # the answer's four digits (truncated)
    # the sparse form of the same question agrees
    sparse = xentc.sparse_softmax_cross_entropy_with_logits(4, y)
    np.testing.assert_allclose(float(sparse), SEED000_ONE_HOT_LOSS, rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_seed000_same_array_as_labels_and_logits():
    # Passing the very same array object as labels and logits is legal (both are inputs).
    y = np.tile(one_hot(10, 2), (3, 1))
    loss, grad = xentc.softmax_cross_entropy_with_logits(y, y, return_grad=True)
    np.testing.assert_allclose(loss, [SEED000_ONE_HOT_LOSS] * 3, rtol=1e-14)
    assert np.array_equal(y, np.tile(one_hot(10, 2), (3, 1)))  # inputs untouched
    ref_loss, ref_grad = reference.dense_xent(y, y)
    assert_close(grad, ref_grad, F64)


def test_seed000_logits_passed_as_labels():
    # The asker's bug: network outputs (logits, possibly negative, not summing
    # to 1) passed as labels.  Every framework silently returns a meaningless,
    # often negative loss (-2.14442e+07 in the question); xentc says why.
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 10)) * 5
    with pytest.raises(ValueError) as exc:
        xentc.softmax_cross_entropy_with_logits(logits, logits)
    msg = str(exc.value)
    assert "logits" in msg and "labels[" in msg
    assert "validate_labels=False" in msg


def test_seed000_logits_passed_as_labels_positive_rows_name_the_row_and_its_sum():
    # Non-negative "labels" that do not sum to 1 (e.g. scores of a ReLU layer):
    # the message names the first bad row and its sum.
    labels = np.array([[0.2, 0.8], [3.0, 1.5], [0.5, 0.5]])
    logits = np.zeros((3, 2))
    with pytest.raises(ValueError) as exc:
        xentc.softmax_cross_entropy_with_logits(labels, logits)
    msg = str(exc.value)
    # the row, as labels[1] or labels[1, :] (":" at the class axis)
    assert re.search(r"labels\[1(, :)?\]", msg), msg
    assert "4.5" in msg and "logits" in msg
    assert "validate_labels=False" in msg


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seed000_logits_passed_as_labels_raw_formula_when_not_validated(dtype):
    # With validate_labels=False the raw formula is computed, negative or not,
    # and its gradient is the true derivative of the sum of the row losses.
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(6, 10)) * 5).astype(dtype)
    loss, grad = xentc.softmax_cross_entropy_with_logits(
        logits, logits, validate_labels=False, return_grad=True)
    ref_loss, ref_grad = reference.dense_xent(logits, logits)
    rd = np.dtype(dtype)
    assert_close(loss, ref_loss, rd, reference.error_scale_dense_loss(logits, logits), "loss")
    assert_close(grad, ref_grad, rd, reference.error_scale_dense_grad(logits, logits), "grad")
    assert (ref_loss < 0).any()  # the example really exercises negative losses


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seed000_confident_logits_give_1_855e_08(dtype):
    # "logit 10 for the true class and -10 for the nine others: 1.855e-08".
    # float32 keeps it (TF and PyTorch round it to 0): loss = log1p(9 exp(-20)).
    logits = np.where(one_hot(10, 7) == 1, 10, -10).astype(dtype)
    labels = one_hot(10, 7, dtype)
    rtol = 1e-3 if dtype == np.float32 else 1e-12
    dense, grad = xentc.softmax_cross_entropy_with_logits(labels, logits, return_grad=True)
    sparse, sgrad = xentc.sparse_softmax_cross_entropy_with_logits(7, logits, return_grad=True)
    np.testing.assert_allclose(float(dense), CONFIDENT_LOSS, rtol=rtol)
    np.testing.assert_allclose(float(sparse), CONFIDENT_LOSS, rtol=rtol)
    np.testing.assert_allclose(float(grad[7]), CONFIDENT_TRUE_GRAD, rtol=rtol)
    np.testing.assert_allclose(float(sgrad[7]), CONFIDENT_TRUE_GRAD, rtol=rtol)
    assert f"{float(dense):.4g}" == "1.855e-08"


def test_seed001_softmax_values():
    got = xentc.softmax(np.array([[0.1, 0.3, 0.5, 0.9]]))
    assert got.shape == (1, 4) and got.dtype == F64
    np.testing.assert_allclose(got[0], SEED001_SOFTMAX, rtol=1e-14)
    # the printed values of the seed (8 digits)
    np.testing.assert_allclose(got[0], [0.16838508, 0.205666, 0.25120102, 0.37474789], atol=5e-9)
    got32 = xentc.softmax(np.array([0.1, 0.3, 0.5, 0.9], dtype=np.float32))
    assert got32.dtype == F32
    np.testing.assert_allclose(got32, SEED001_SOFTMAX, rtol=2e-7)
    # a Python list works and gives float64
    np.testing.assert_allclose(xentc.softmax([0.1, 0.3, 0.5, 0.9]), SEED001_SOFTMAX, rtol=1e-14)


def test_seed001_loss_of_a_2x5_batch_has_one_value_per_row():
    # "The output ... on a shape [2,5] tensor is of shape [2,1]": in xentc (as in
    # TF today) the class axis is removed: shape (2,).
    labels = np.full((2, 5), 0.2)
    logits = np.arange(10.0).reshape(2, 5)
    loss = xentc.softmax_cross_entropy_with_logits(labels, logits)
    assert loss.shape == (2,)
    sparse = xentc.sparse_softmax_cross_entropy_with_logits([0, 4], logits)
    assert sparse.shape == (2,)
    loss0 = xentc.softmax_cross_entropy_with_logits(labels.T, logits.T, axis=0)
    assert loss0.shape == (2,)
    np.testing.assert_allclose(loss0, loss, rtol=1e-14)


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-7), (np.float64, 1e-14)])
def test_seed002_soft_labels_give_1_16012561(dtype, rtol):
    logits = np.array([[1.0, -3.0, 10.0]], dtype=dtype)
    labels = np.array([[0.1, 0.02, 0.88]], dtype=dtype)
    loss = xentc.softmax_cross_entropy_with_logits(labels, logits)
    assert loss.shape == (1,) and loss.dtype == np.dtype(dtype)
    if dtype == np.float32:
        # float32 labels are not exactly 0.1, 0.02, 0.88: compare with TF's float32 output
        np.testing.assert_allclose(loss, [1.16012561], rtol=rtol)
        expected = reference.dense_xent(labels, logits)[0]
        np.testing.assert_allclose(loss, expected, rtol=rtol)
    else:
        np.testing.assert_allclose(loss, [SEED002_LOSS], rtol=rtol)


def test_seed002_softmax_then_cross_entropy_agrees_with_fused():
    # The answer's two-step computation: softmax, then -sum(target * log(softmax)).
    logits = np.array([1.0, -3.0, 10.0])
    target = np.array([0.1, 0.02, 0.88])
    sm = xentc.softmax(logits)
    np.testing.assert_allclose(sm, [1.23394297e-04, 2.26004539e-06, 9.99874346e-01], rtol=1e-8)
    np.testing.assert_allclose(-np.sum(target * np.log(sm)), SEED002_LOSS, rtol=1e-14)
    np.testing.assert_allclose(-np.sum(target * xentc.log_softmax(logits)), SEED002_LOSS, rtol=1e-14)
    np.testing.assert_allclose(float(xentc.softmax_cross_entropy_with_logits(target, logits)),
                               SEED002_LOSS, rtol=1e-14)


def test_seed003_zero_labels_contribute_no_loss_but_get_gradient():
    # y' = [1, 0, 0, 0]: the loss depends only on the true class's log-probability ...
    a = np.array([np.log(0.7), np.log(0.1), np.log(0.1), np.log(0.1)])
    b = np.array([np.log(0.7), np.log(0.2), np.log(0.05), np.log(0.05)])
    y = np.array([1.0, 0.0, 0.0, 0.0])
    la, ga = xentc.softmax_cross_entropy_with_logits(y, a, return_grad=True)
    lb, gb = xentc.softmax_cross_entropy_with_logits(y, b, return_grad=True)
    np.testing.assert_allclose(float(la), -np.log(0.7), rtol=1e-14)
    np.testing.assert_allclose(float(lb), -np.log(0.7), rtol=1e-14)
    # ... yet every wrong class gets a gradient, its softmax probability
    np.testing.assert_allclose(ga, [-0.3, 0.1, 0.1, 0.1], rtol=1e-13)
    np.testing.assert_allclose(gb, [-0.3, 0.2, 0.05, 0.05], rtol=1e-13)
