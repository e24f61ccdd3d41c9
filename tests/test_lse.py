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
