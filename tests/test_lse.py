"""return_lse=True: the per-row log-sum-exp from the loss's own pass."""
import numpy as np
import pytest
from conftest import assert_close

import reference
import xentc


@pytest.mark.parametrize("c", [1, 7, 32, 33, 300, 5000])   # lane path, per-row path, several blocks
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("with_grad", [False, True])
def test_lse_equals_logsumexp_reference_with_special_rows(c, dtype, with_grad):
    rng = np.random.default_rng(c)
    x = (rng.normal(size=(6, c)) * 4).astype(dtype)
    x[1, 0] = np.nan
    x[2] = -np.inf
    x[3, -1] = np.inf
    labels = rng.integers(0, c, 6)
    y = np.eye(c, dtype=dtype)[labels]
    want = reference.logsumexp(x.astype(np.float64))
    sparse = xentc.sparse_softmax_cross_entropy_with_logits(labels, x, return_grad=with_grad, return_lse=True)
    dense = xentc.softmax_cross_entropy_with_logits(y, x, return_grad=with_grad, return_lse=True)
    for results in (sparse, dense):
        assert len(results) == (3 if with_grad else 2)
        lse = results[-1]
        assert lse.dtype == x.dtype and lse.shape == (6,)
        assert_close(lse, want, x.dtype)
        plain = (xentc.sparse_softmax_cross_entropy_with_logits(labels, x) if results is sparse
                 else xentc.softmax_cross_entropy_with_logits(y, x))
        assert np.array_equal(results[0], plain, equal_nan=True)


def test_lse_for_a_single_row_is_a_scalar_and_follows_axis():
    loss, lse = xentc.sparse_softmax_cross_entropy_with_logits(2, [1.0, 2.0, 3.0], return_lse=True)
    assert np.ndim(lse) == 0
    np.testing.assert_allclose(lse, np.log(np.exp([1.0, 2.0, 3.0]).sum()), rtol=1e-15)
    x = np.random.default_rng(1).normal(size=(4, 3, 5))
    y = xentc.softmax(x, axis=1)
    loss, lse = xentc.softmax_cross_entropy_with_logits(y, x, axis=1, return_lse=True)
    assert lse.shape == (4, 5)
    np.testing.assert_allclose(lse, xentc.logsumexp(x, axis=1), rtol=1e-15)


def test_return_lse_must_be_a_flag():
    with pytest.raises(TypeError, match="return_lse must be True or False"):
        xentc.sparse_softmax_cross_entropy_with_logits([0], [[1.0, 2.0]], return_lse="yes")


@pytest.mark.parametrize("c", [4, 8, 10, 13, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_grad", [False, True])
def test_few_class_plain_call_equals_the_call_with_lse(c, dtype, with_grad):
    """The plain few-class losses (and sparse loss+grad) run a copy of the kernel compiled with
    the log-sum-exp output, weights and smoothing as constants; the call with return_lse runs
    the general one.  Both must give the same bits, over full groups of rows and a partial one."""
    rng = np.random.default_rng(100 + c)
    x = (rng.normal(size=(37, c)) * 4).astype(dtype)
    x[5, 1] = np.nan
    x[6] = -np.inf
    x[7, 2] = np.inf
    x[8, :2] = x[8].max()          # a tie of the max
    labels = rng.integers(0, c, 37)
    y = np.eye(c, dtype=dtype)[labels]
    for fn, lab in ((xentc.sparse_softmax_cross_entropy_with_logits, labels),
                    (xentc.softmax_cross_entropy_with_logits, y)):
        plain = fn(lab, x, return_grad=with_grad)
        with_lse = fn(lab, x, return_grad=with_grad, return_lse=True)
        plain = plain if with_grad else (plain,)
        for got, want in zip(plain, with_lse[:-1]):
            assert np.array_equal(got, want, equal_nan=True)
        want = reference.logsumexp(x.astype(np.float64))
        assert_close(with_lse[-1], want, x.dtype)
