"""where= masks with optax's semantics: excluded classes drop out of the
softmax (and, for dense labels, out of the loss); a row with no class included
has loss 0 and gradient 0, softmax 0, log_softmax and logsumexp -inf."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xentc
from reference import masked_dense as ref_dense
from reference import masked_softmax_parts as ref_masked
from reference import masked_sparse as ref_sparse


@given(n=st.integers(1, 12), c=st.integers(1, 80), dtype=st.sampled_from([np.float32, np.float64]),
       shape_kind=st.sampled_from(["full", "classes", "rows"]), seed=st.integers(0, 2**16))
def test_masked_functions_match_the_reference(n, c, dtype, shape_kind, seed):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, c)) * 3).astype(dtype)
    wshape = {"full": (n, c), "classes": (c,), "rows": (n, 1)}[shape_kind]
    w = rng.random(wshape) < 0.7
    if shape_kind == "full":
        w[0] = False          # a row with no class included
        x[-1, -1] = np.nan    # a NaN under the mask is ignored, in the open it poisons its row
        w[-1, -1] = n == 1 or bool(rng.integers(2))
    tol = dict(rtol=3e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    logp, p, lse = ref_masked(x, w)
    np.testing.assert_allclose(xentc.softmax(x, where=w), p, **tol)
    np.testing.assert_allclose(xentc.log_softmax(x, where=w), logp, **tol)
    np.testing.assert_allclose(xentc.logsumexp(x, where=w), lse, **tol)
    labels = rng.integers(0, c, n)
    y = xentc.softmax(rng.normal(size=(n, c)))
    loss, grad = xentc.softmax_cross_entropy_with_logits(y, x.astype(np.float64), where=w,
                                                         return_grad=True)
    want_loss, want_grad = ref_dense(y, x, w)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-12)
    loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(labels, x, where=w, return_grad=True)
    want_loss, want_grad = ref_sparse(labels, x, w)
    np.testing.assert_allclose(loss, want_loss, **tol)
    np.testing.assert_allclose(grad, want_grad, **tol)


def test_fully_masked_row_gives_zero_loss_and_gradient():
    x = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], np.float32)
    w = np.array([[True, True, True], [False, False, False]])
    loss, grad = xentc.sparse_softmax_cross_entropy_with_logits([0, 0], x, where=w, return_grad=True)
    assert loss[1] == 0 and np.all(grad[1] == 0) and loss[0] > 0
    loss, grad = xentc.softmax_cross_entropy_with_logits(np.eye(3, dtype=np.float32)[:2], x, where=w,
                                                         return_grad=True)
    assert loss[1] == 0 and np.all(grad[1] == 0)
    assert np.all(xentc.softmax(x, where=w)[1] == 0)
    assert np.all(xentc.log_softmax(x, where=w)[1] == -np.inf)
    assert xentc.logsumexp(x, where=w)[1] == -np.inf


def test_where_along_another_axis_and_in_place():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 6, 3))
    w = rng.random((4, 6, 3)) < 0.6
    got = xentc.softmax(x, axis=1, where=w)
    want = np.moveaxis(ref_masked(np.moveaxis(x, 1, -1), np.moveaxis(w, 1, -1))[1], -1, 1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    x2 = np.ascontiguousarray(x.reshape(12, 6))
    w2 = w.reshape(12, 6)
    want2 = xentc.log_softmax(x2, where=w2)
    assert xentc.log_softmax(x2, out=x2, where=w2) is x2
    np.testing.assert_array_equal(x2, want2)


@pytest.mark.parametrize("where, error, message", [
    (np.ones((2, 3), np.int8), TypeError, r"where must be a boolean array, got where.dtype=int8"),
    (np.ones((3, 4), bool), ValueError, r"where must be broadcastable to logits.shape=\(2, 4\), got where.shape=\(3, 4\)"),
])
def test_where_errors(where, error, message):
    with pytest.raises(error, match=message):
        xentc.softmax(np.zeros((2, 4)), where=where)


@pytest.mark.parametrize("n_classes", [3, 40])
@pytest.mark.parametrize("with_inf", [False, True])
def test_excluded_classes_have_zero_gradient_when_a_label_is_nan(n_classes, with_inf):
    # validate_labels=False lets a NaN label through: sum(y) is NaN and the
    # row's included gradient is NaN, but an excluded class drops out (its
    # gradient is 0), as in a row whose NaN is a logit.  The kernel computed
    # exp(-inf) * sum(y) = 0 * NaN there.  with_inf: the row max is +inf (a
    # scalar path of the kernel).
    x = np.linspace(-1.0, 1.0, 2 * n_classes).reshape(2, n_classes)
    if with_inf:
        x[:, 1] = np.inf
    y = np.full((2, n_classes), 1.0 / n_classes)
    y[0, 1] = np.nan
    w = np.ones((2, n_classes), bool)
    w[:, 0] = w[:, -1] = False
    for dtype in (np.float32, np.float64):
        _, grad = xentc.softmax_cross_entropy_with_logits(
            y.astype(dtype), x.astype(dtype), where=w, validate_labels=False, return_grad=True)
        assert np.all(grad[:, 0] == 0) and np.all(grad[:, -1] == 0), grad
        assert np.isnan(grad[0, 1:-1]).all() and not np.isnan(grad[1]).any(), grad
