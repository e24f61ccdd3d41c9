"""Gradients: central finite differences in float64, grad_out / out identity, in place."""
import numpy as np
import pytest

import reference
import xentc
from conftest import F16, F32, F64, assert_close

H = 1e-5  # central differences: truncation ~ H**2, rounding ~ 1e-16 / H


def central_differences(f, x):
    """d f(x) / d x for a scalar function f of a float64 array x, one element at a time."""
    g = np.empty_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += H
        xm[idx] -= H
        g[idx] = (f(xp) - f(xm)) / (2 * H)
    return g


def rng_logits(shape, seed=0, scale=2.0):
    return np.random.default_rng(seed).normal(size=shape) * scale


@pytest.mark.parametrize("shape,axis", [((4, 6), -1), ((3, 5), 0), ((2, 3, 4), 1), ((5,), 0)])
@pytest.mark.parametrize("labels_kind", ["probabilities", "unnormalised", "negative"])
def test_dense_grad_is_the_derivative_of_the_summed_loss(shape, axis, labels_kind):
    x = rng_logits(shape, 1)
    rng = np.random.default_rng(2)
    y = rng.random(shape)
    if labels_kind == "probabilities":
        y /= y.sum(axis=axis, keepdims=True)
    elif labels_kind == "unnormalised":
        y *= 3  # rows sum to ~4.5: the gradient is softmax * sum(y) - y, not softmax - y
    else:
        y -= 0.5
    validate = labels_kind == "probabilities"

    def total(xx):
        return float(np.sum(xentc.softmax_cross_entropy_with_logits(
            y, xx, axis, validate_labels=validate)))

    loss, grad = xentc.softmax_cross_entropy_with_logits(
        y, x, axis, return_grad=True, validate_labels=validate)
    np.testing.assert_allclose(grad, central_differences(total, x), rtol=1e-6, atol=1e-8)
    if labels_kind == "unnormalised":
        # TensorFlow's softmax - labels is not the derivative when rows do not sum to 1
        tf_grad = reference.softmax(x, axis) - y
        assert not np.allclose(grad, tf_grad, atol=1e-3)


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 5), (7,)])
def test_sparse_grad_is_the_derivative_of_the_summed_loss(shape):
    x = rng_logits(shape, 3)
    labels = np.random.default_rng(4).integers(0, shape[-1], size=shape[:-1])

    def total(xx):
        return float(np.sum(xentc.sparse_softmax_cross_entropy_with_logits(labels, xx)))

    loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(labels, x, return_grad=True)
    np.testing.assert_allclose(grad, central_differences(total, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("axis", [-1, 0])
def test_logsumexp_derivative_is_softmax(axis):
    x = rng_logits((3, 4), 5)
    fd = central_differences(lambda xx: float(np.sum(xentc.logsumexp(xx, axis))), x)
    np.testing.assert_allclose(xentc.softmax(x, axis), fd, rtol=1e-6, atol=1e-8)


def test_log_softmax_derivative():
    # d/dx sum_j w_j log_softmax_j(x) = w - softmax(x) * sum(w)
    x = rng_logits((3, 5), 6)
    w = np.random.default_rng(7).normal(size=(3, 5))
    fd = central_differences(lambda xx: float(np.sum(w * xentc.log_softmax(xx))), x)
    expected = w - xentc.softmax(x) * w.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(expected, fd, rtol=1e-6, atol=1e-8)


def test_confident_row_gradient_matches_finite_differences_in_float64():
    # The true-class gradient of a confident row is tiny (-9 exp(-20)): central
    # differences of the loss (which stays ~1.855e-08) see it too.
    x = np.full((1, 10), -10.0)
    x[0, 3] = 10.0
    y = np.zeros((1, 10))
    y[0, 3] = 1.0
    _, grad = xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True)
    fd = central_differences(
        lambda xx: float(np.sum(xentc.softmax_cross_entropy_with_logits(y, xx))), x)
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-15)
    assert grad[0, 3] < 0 and grad[0, 3] != -0.0


# --------------------------------------------------------------------------
# grad_out and out: returned as the same object, in place
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F16, F32, F64])
def test_dense_grad_out_is_returned_and_filled(dtype):
    x = rng_logits((5, 7), 8).astype(dtype)
    y = np.eye(7)[[0, 3, 6, 2, 2]].astype(dtype)
    grad_out = np.full(x.shape, 7, dtype=dtype)
    out = np.full(5, 7, dtype=dtype)
    res = xentc.softmax_cross_entropy_with_logits(y, x, grad_out=grad_out, out=out)
    assert isinstance(res, tuple) and len(res) == 2  # grad_out implies return_grad
    loss, grad = res
    assert grad is grad_out and loss is out
    ref_loss, ref_grad = reference.dense_xent(y.astype(np.float64), x.astype(np.float64))
    assert_close(loss, ref_loss, dtype, reference.error_scale_dense_loss(y, x.astype(np.float64)))
    assert_close(grad, ref_grad, dtype, reference.error_scale_dense_grad(y, x.astype(np.float64)))
    # return_grad=False does not cancel grad_out
    res = xentc.softmax_cross_entropy_with_logits(y, x, return_grad=False, grad_out=grad_out)
    assert isinstance(res, tuple) and res[1] is grad_out


@pytest.mark.parametrize("dtype", [F16, F32, F64])
@pytest.mark.parametrize("shape,axis", [((5, 7), -1), ((5, 7), 0), ((2, 3, 4), 1), ((0, 4), -1)])
def test_dense_grad_in_place_into_logits(dtype, shape, axis):
    x0 = rng_logits(shape, 9).astype(dtype)
    rng = np.random.default_rng(10)
    y = rng.random(shape)
    y = (y / y.sum(axis=axis, keepdims=True)).astype(dtype) if y.size else y.astype(dtype)
    expected_loss, expected_grad = xentc.softmax_cross_entropy_with_logits(
        y, x0, axis, return_grad=True, validate_labels=False)
    x = x0.copy()
    loss, grad = xentc.softmax_cross_entropy_with_logits(y, x, axis, grad_out=x, validate_labels=False)
    assert grad is x
    assert grad.dtype == dtype and grad.shape == shape
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-6 if dtype != F64 else 1e-14)
    np.testing.assert_allclose(x, expected_grad, rtol=1e-6 if dtype != F64 else 1e-14,
                               atol=1e-7 if dtype != F64 else 1e-15)
    # and against the reference, not only against itself
    _, ref_grad = reference.dense_xent(y.astype(np.float64), x0.astype(np.float64), axis)
    assert_close(x, ref_grad, dtype, reference.error_scale_dense_grad(
        y.astype(np.float64), x0.astype(np.float64), axis))


@pytest.mark.parametrize("dtype", [F16, F32, F64])
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4), (4,)])
def test_sparse_grad_in_place_into_logits(dtype, shape):
    x0 = rng_logits(shape, 11).astype(dtype)
    labels = np.random.default_rng(12).integers(0, shape[-1], size=shape[:-1]).astype(np.uint8)
    x = x0.copy()
    out = np.full(shape[:-1], 7, dtype=dtype)
    loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(labels, x, grad_out=x, out=out)
    assert grad is x and loss is out
    ref_loss, ref_grad = reference.sparse_xent(labels, x0.astype(np.float64))
    onehot = np.zeros(shape)
    np.put_along_axis(onehot, labels.astype(np.int64)[..., None], 1.0, axis=-1)
    assert_close(x, ref_grad, dtype, np.abs(ref_grad) + onehot, "grad in place")
    assert_close(loss, ref_loss, dtype, reference.error_scale_sparse_loss(labels, x0), "loss")


def test_sparse_grad_out_separate_array():
    x = rng_logits((3, 4), 13)
    grad_out = np.full((3, 4), 7.0)
    loss, grad = xentc.sparse_softmax_cross_entropy_with_logits([1, 0, 3], x, grad_out=grad_out)
    assert grad is grad_out
    assert_close(grad, reference.sparse_xent([1, 0, 3], x)[1], F64, np.abs(grad) + 1)
    assert np.array_equal(x, rng_logits((3, 4), 13))  # logits untouched


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [F16, F32, F64])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_out_and_in_place(name, dtype, axis):
    x0 = rng_logits((4, 5), 14).astype(dtype)
    fn = getattr(xentc, name)
    ref = getattr(reference, name)(x0.astype(np.float64), axis)
    scale = None if name == "softmax" else reference.error_scale_log_softmax(x0.astype(np.float64), axis)
    out = np.full(x0.shape, 7, dtype=dtype)
    assert fn(x0, axis, out=out) is out
    assert_close(out, ref, dtype, scale, f"{name} out=")
    x = x0.copy()
    assert fn(x, axis, out=x) is x
    assert_close(x, ref, dtype, scale, f"{name} in place")


def test_in_place_is_only_done_when_asked():
    x = rng_logits((3, 4), 15)
    x0 = x.copy()
    xentc.softmax_cross_entropy_with_logits(np.eye(4)[:3], x, return_grad=True)
    xentc.sparse_softmax_cross_entropy_with_logits([0, 1, 2], x, return_grad=True)
    xentc.softmax(x)
    xentc.log_softmax(x)
    assert np.array_equal(x, x0)


def _block_rows(n, dtype, seed):
    """Rows of n classes that exercise the block structure of the kernels (blocks of
    256-2048 classes): +inf and NaN in a late block, ties of the max in different
    blocks, blocks of -inf before and after the max, all ties, a confident row whose
    other terms are below exp's range, a row of -inf but one, and a row whose softmax
    is denormal but at the max."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(11, n)) * 3
    rows[1, n - 3] = np.inf
    rows[2, [5, n - 7]] = np.inf
    rows[3, :min(2048, n // 2)] = -np.inf
    rows[4, n - 2] = np.nan
    rows[5, [1, n // 2, n - 1]] = 20.0
    rows[6] = 0.5
    rows[7] = -200.0
    rows[7, n // 3] = 10.0
    rows[8] = -np.inf
    rows[8, n - 5] = 1.0
    rows[9, 3] = 30.0
    rows[9, -(n // 3):] = -np.inf
    rows[10] = rng.uniform(-104.0, -88.0, n)   # exp(x - max) in float32's denormal range
    rows[10, n // 4] = 0.0
    return rows.astype(dtype)


# Rows of at most 1 MiB keep exp(x - block max) in the gradient (or softmax) buffer
# between the statistics pass and the output pass; longer ones compute exp twice, and
# so does a call with where= (here all True): both sides of that length (262144
# float32, 131072 float64), and rows of a few blocks.
@pytest.mark.parametrize("dtype,n", [(F32, 1000), (F32, 5000), (F32, 262144), (F32, 262145),
                                     (F64, 3000), (F64, 131072), (F64, 131073)])
def test_gradients_of_rows_across_blocks_with_special_values(dtype, n):
    x = _block_rows(n, dtype, n)
    rows = np.arange(len(x))
    rng = np.random.default_rng(1)
    labels = rng.integers(0, n, size=len(x))
    labels[[1, 2, 5, 7, 8, 9, 10]] = [n - 3, 5, n // 2, n // 3, n - 5, 3, n // 4]  # at the max
    labels[0] = 17                                                                  # and not
    x64 = x.astype(np.float64)
    everywhere = np.ones(x.shape, dtype=bool)

    p = xentc.softmax(x)
    assert_close(p, reference.softmax(x64), dtype, what="softmax")
    inplace = x.copy()
    assert xentc.softmax(inplace, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, p)

    ref_loss, ref_grad = reference.sparse_xent(labels, x64)
    grad_scale = np.abs(ref_grad)
    grad_scale[rows, labels] += 1.0
    for where in (None, everywhere):
        loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(labels, x, return_grad=True,
                                                                    where=where)
        assert_close(loss, ref_loss, dtype, reference.error_scale_sparse_loss(labels, x64),
                     what="sparse loss")
        assert_close(grad, ref_grad, dtype, grad_scale, what="sparse grad")
    loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(labels, x, return_grad=True)
    inplace = x.copy()
    loss_ip, grad_ip = xentc.sparse_softmax_cross_entropy_with_logits(labels, inplace, grad_out=inplace)
    assert grad_ip is inplace
    np.testing.assert_array_equal(loss_ip, loss)
    np.testing.assert_array_equal(grad_ip, grad)

    y = rng.random(x.shape)
    y[:, ::3] = 0.0
    y[rows, labels] += 5.0   # much of the mass at the label, at the max in some rows
    y /= y.sum(axis=1, keepdims=True)
    y = y.astype(dtype)
    y64 = y.astype(np.float64)
    ref_loss, ref_grad = reference.dense_xent(y64, x64)
    for where in (None, everywhere):
        loss, grad = xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True, where=where)
        assert_close(loss, ref_loss, dtype, reference.error_scale_dense_loss(y64, x64), what="dense loss")
        assert_close(grad, ref_grad, dtype, reference.error_scale_dense_grad(y64, x64), what="dense grad")
    loss, grad = xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True)
    inplace = x.copy()
    loss_ip, grad_ip = xentc.softmax_cross_entropy_with_logits(y, inplace, grad_out=inplace)
    np.testing.assert_array_equal(loss_ip, loss)
    np.testing.assert_array_equal(grad_ip, grad)

    # PyTorch's probability targets with class weights, label smoothing and the mean:
    # the labels enter as weight * (y (1 - eps) + eps / C), the gradient is scaled by 1 / N
    w = rng.uniform(0.5, 2.0, n).astype(dtype)
    eps = 0.1
    _, grad = xentc.cross_entropy(x, y, weight=w, label_smoothing=eps, return_grad=True)
    tw = (y64 * (1 - eps) + eps / n) * w.astype(np.float64)
    _, ref_grad = reference.dense_xent(tw, x64)
    assert_close(grad, ref_grad / len(x), dtype, reference.error_scale_dense_grad(tw, x64) / len(x),
                 what="cross_entropy grad")


@pytest.mark.parametrize("dtype,far,tiny", [(F32, -60.0, 1e-30), (F64, -690.0, 1e-295)])
def test_stored_terms_whose_factor_is_not_normal(dtype, far, tiny):
    # The output pass multiplies each stored term exp(x - block max) 2^64 by one
    # factor, or by two (the factor, then 2^-64) where the factor would not be a
    # normal number: blocks far below the row's max, and dense labels of tiny sum
    # (validate_labels=False).  Checked relative to each value (assert_close's
    # absolute floor would hide float64 values near 1e-300), within a few
    # roundings of x - max, to which exp is that sensitive (the reference too).
    n = 3001   # not a multiple of any vector width: the tails too
    rng = np.random.default_rng(3)
    x64 = rng.normal(size=(4, n))
    x64[:, n // 2:] += far             # the blocks of the second half, far below the max
    x64[3] = rng.normal(size=n) + far  # and a row that is all far
    x = x64.astype(dtype)
    x64 = x.astype(np.float64)
    rtol = (8 + 4 * np.abs(x64 - x64.max(axis=1, keepdims=True))) * np.finfo(dtype).eps

    def check(got, ref, scale, what):
        err = np.abs(got.astype(np.float64) - ref)
        assert (err <= rtol * scale).all(), (what, float(np.max(err / (rtol * scale))))

    p_ref = reference.softmax(x64)
    check(xentc.softmax(x), p_ref, p_ref, "softmax")
    labels = np.array([0, n // 2 + 7, n - 1, 5])
    _, grad = xentc.sparse_softmax_cross_entropy_with_logits(labels, x, return_grad=True)
    _, ref_grad = reference.sparse_xent(labels, x64)
    onehot = np.zeros(x.shape)
    onehot[np.arange(4), labels] = 1.0
    check(grad, ref_grad, np.abs(ref_grad) + onehot, "sparse grad")

    y = rng.random(x.shape)
    y /= y.sum(axis=1, keepdims=True)
    for scale in (1.0, tiny):
        yt = (y * scale).astype(dtype)
        y64 = yt.astype(np.float64)
        _, grad = xentc.softmax_cross_entropy_with_logits(yt, x, return_grad=True,
                                                          validate_labels=scale == 1.0)
        _, ref_grad = reference.dense_xent(y64, x64)
        check(grad, ref_grad, p_ref * y64.sum(axis=1, keepdims=True) + y64, f"dense grad, labels x {scale}")


def _few_class_rows(n, n_rows, dtype, seed):
    """n_rows >= 42 rows of n <= 33 classes: normal rows, and +inf (once,
    twice), NaN, all NaN, all -inf, -inf but one, tied maxima, a constant row, a
    row whose other terms are below exp's range, one whose softmax is
    denormal but at the max, +inf twice with a NaN, -inf but one NaN, and +inf
    twice again (row 13, ignored in cross_entropy); those special rows (0-13)
    come again in the middle and as the last rows (a partial group of SIMD
    lanes)."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n_rows, n)) * 3
    rows[0, n - 1] = np.inf
    rows[1, [0, n - 1]] = np.inf
    rows[2, n // 2] = np.nan
    rows[3] = -np.inf
    rows[4] = -np.inf
    rows[4, n // 3] = 1.0
    rows[5, [0, n - 1]] = 20.0
    rows[6] = 0.5
    rows[7] = -200.0
    rows[7, n // 2] = 10.0
    rows[8] = rng.uniform(-104.0, -88.0, n)
    rows[8, n - 1] = 0.0
    rows[10] = np.nan
    rows[11, [0, n - 1]] = np.inf     # ties of +inf (their x - max is NaN) and a NaN
    rows[11, n // 2] = np.nan
    rows[12] = -np.inf
    rows[12, n // 3] = np.nan
    rows[13] = rows[1]
    mid = n_rows // 2
    rows[mid:mid + 14] = rows[:14]
    rows[-14:] = rows[:14]
    return rows.astype(dtype)


# Rows of up to 32 classes go through the kernels several at a time, one row per
# SIMD lane; with 4 to 32 classes (8 to 32 for float32) AVX2 loads them with
# transposes and writes the gradient back with the inverse transpose, whose
# stores run past a row's end into the next row, and are masked at the group's
# last row (AVX-512: 8 to 16 classes, masked row loads and stores); the losses
# wait in batches of 8 groups for their log1p.  Every class count, more than 8
# groups of 16 lanes and a partial last group, special rows in full and partial
# groups, in place, and nothing written past the gradient's end (a sentinel
# after it).
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", list(range(2, 34)))
def test_gradients_of_few_class_rows(dtype, n):
    n_rows = 2 * 128 + 5
    x = _few_class_rows(n, n_rows, dtype, n)
    x64 = x.astype(np.float64)
    rows = np.arange(n_rows)
    rng = np.random.default_rng(100 + n)
    labels = rng.integers(0, n, size=n_rows)
    labels[[1, 5, 6, 7, 8]] = [n - 1, 0, n - 1, n // 2, n - 1]   # at the max
    labels[9] = (n // 2 + 1) % n
    mid = n_rows // 2
    labels[mid:mid + 14] = labels[:14]
    labels[-14:] = labels[:14]

    def with_sentinel(shape):
        buf = np.full(n_rows * n + 40, 7.0, dtype=dtype)
        return buf, buf[:n_rows * n].reshape(shape)

    ref_loss, ref_grad = reference.sparse_xent(labels, x64)
    grad_scale = np.abs(ref_grad)
    grad_scale[rows, labels] += 1.0
    buf, out = with_sentinel(x.shape)
    loss, grad, lse = xentc.sparse_softmax_cross_entropy_with_logits(labels, x, return_grad=True,
                                                                     grad_out=out, return_lse=True)
    assert grad is out
    assert_close(loss, ref_loss, dtype, reference.error_scale_sparse_loss(labels, x64), what="sparse loss")
    assert_close(grad, ref_grad, dtype, grad_scale, what="sparse grad")
    assert_close(lse, reference.logsumexp(x64), dtype, reference.error_scale_logsumexp(x64), what="lse")
    assert (buf[n_rows * n:] == 7.0).all()
    inplace = x.copy()
    _, grad_ip = xentc.sparse_softmax_cross_entropy_with_logits(labels, inplace, grad_out=inplace)
    np.testing.assert_array_equal(grad_ip, grad)
    loss_only = xentc.sparse_softmax_cross_entropy_with_logits(labels, x)
    np.testing.assert_array_equal(loss_only, loss)

    y = rng.random(x.shape)
    y[:, ::3] = 0.0
    y[rows, labels] += 3.0
    y /= y.sum(axis=1, keepdims=True)
    y = y.astype(dtype)
    y64 = y.astype(np.float64)
    ref_loss, ref_grad = reference.dense_xent(y64, x64)
    buf, out = with_sentinel(x.shape)
    loss, grad = xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True, grad_out=out)
    assert_close(loss, ref_loss, dtype, reference.error_scale_dense_loss(y64, x64), what="dense loss")
    assert_close(grad, ref_grad, dtype, reference.error_scale_dense_grad(y64, x64), what="dense grad")
    assert (buf[n_rows * n:] == 7.0).all()
    inplace = x.copy()
    _, grad_ip = xentc.softmax_cross_entropy_with_logits(y, inplace, grad_out=inplace)
    np.testing.assert_array_equal(grad_ip, grad)
    np.testing.assert_array_equal(xentc.softmax_cross_entropy_with_logits(y, x), loss)
    # label rows that are not distributions, in full groups, found by the
    # loss-only pass and by the check before a gradient pass
    for bad_row, col, value, message in [(13, 1, -0.25, "is negative or NaN"), (mid + 3, 0, 0.5, "sums to")]:
        yb = y.copy()
        yb[bad_row, col] = value
        for return_grad in (False, True):
            with pytest.raises(ValueError, match=rf"labels\[{bad_row}, .*{message}"):
                xentc.softmax_cross_entropy_with_logits(yb, x, return_grad=return_grad)

    # class weights, label smoothing, ignored rows (of NaN logits only, -inf
    # and a NaN, +inf twice: their loss and gradient are 0) and the weighted
    # mean: the gradient of PyTorch's loss is the dense one of the targets
    # w * ((1 - eps) onehot + eps / n), over the kept rows' sum of w[label]
    w = rng.uniform(0.5, 2.0, n).astype(dtype)
    eps = 0.1
    ignored = labels.copy()
    ignored[[10, 12, 13, mid + 12, n_rows - 1, n_rows - 4]] = -100
    kept = ignored >= 0
    # a +inf logit takes all the probability: with smoothing every other class
    # costs +inf (the reference, like PyTorch, makes NaN of inf - inf)
    posinf = np.isposinf(x64).any(axis=1)
    finite_other = posinf & ~np.isposinf(x64).all(axis=1) & ~np.isnan(x64).any(axis=1)
    for weight in (w, None):   # without weights the loss pass leaves z alone at the ties
        per_row = xentc.cross_entropy(x, ignored, weight=weight, label_smoothing=eps, reduction="none")
        ref_rows = reference.cross_entropy(x64, ignored, label_smoothing=eps, reduction="none",
                                           weight=None if weight is None else weight.astype(np.float64))
        assert np.all(per_row[~kept] == 0)
        assert np.all(per_row[finite_other & kept] == np.inf)
        assert np.all(np.isnan(per_row[np.isnan(x64).any(axis=1) & kept]))
        assert_close(per_row[~posinf], ref_rows[~posinf], dtype, what="cross_entropy rows")
        loss_g, _ = xentc.cross_entropy(x, ignored, weight=weight, label_smoothing=eps, reduction="none",
                                        return_grad=True)
        np.testing.assert_array_equal(per_row, loss_g)
    _, grad = xentc.cross_entropy(x, ignored, weight=w, label_smoothing=eps, return_grad=True)
    w64 = w.astype(np.float64)
    tw = np.zeros((n_rows, n))
    tw[rows, labels] = 1 - eps
    tw = (tw + eps / n) * w64
    _, ref_grad = reference.dense_xent(tw, x64)
    ref_grad[~kept] = 0.0
    denominator = w64[labels][kept].sum()
    scale = reference.error_scale_dense_grad(tw, x64) / denominator
    assert_close(grad, ref_grad / denominator, dtype, scale, what="cross_entropy grad")
