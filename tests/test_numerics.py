"""Numerical behaviour: stability, tiny losses in float32, long rows, special values, dtypes.

Hand values marked "mpmath" were computed with mpmath at 40 digits and rounded
to float64 here (mpmath is not a test dependency).
"""
import numpy as np
import pytest

import reference
import xentc
from conftest import F16, F32, F64

# mpmath: log(e + e**2 + e**3)
LSE_123 = 3.4076059644443803
# mpmath: log1p(9 exp(-20)) and -9 exp(-20) / (1 + 9 exp(-20))
CONFIDENT_LOSS = 1.8550382429888675e-08
CONFIDENT_TRUE_GRAD = -1.8550382257830332e-08
# mpmath: log(4096)
LOG_4096 = 8.3177661667193437

inf, nan = np.inf, np.nan


def all_functions(x, labels_dense, labels_sparse):
    """Every result xentc computes for these inputs, by name."""
    loss, grad = xentc.softmax_cross_entropy_with_logits(labels_dense, x, return_grad=True,
                                                         validate_labels=False)
    sloss, sgrad = xentc.sparse_softmax_cross_entropy_with_logits(labels_sparse, x, return_grad=True)
    return {
        "dense loss": loss, "dense grad": grad, "sparse loss": sloss, "sparse grad": sgrad,
        "softmax": xentc.softmax(x), "log_softmax": xentc.log_softmax(x),
        "logsumexp": xentc.logsumexp(x),
    }


# --------------------------------------------------------------------------
# stability
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F32, F64])
def test_shift_by_1e6_gives_the_same_loss(dtype):
    x = np.array([[1.0, 2.0, 3.0]], dtype=dtype)
    shifted = (x.astype(np.float64) + 1e6).astype(dtype)
    assert np.array_equal(shifted - dtype.type(1e6), x)  # the shift is exact in both dtypes
    y = np.array([[0.2, 0.3, 0.5]], dtype=dtype)
    rtol = 1e-6 if dtype == F32 else 1e-13
    for label in range(3):
        np.testing.assert_allclose(xentc.sparse_softmax_cross_entropy_with_logits([label], shifted),
                                   xentc.sparse_softmax_cross_entropy_with_logits([label], x), rtol=rtol)
        np.testing.assert_allclose(xentc.sparse_softmax_cross_entropy_with_logits([label], x),
                                   [LSE_123 - (label + 1)], rtol=rtol)
    np.testing.assert_allclose(xentc.softmax_cross_entropy_with_logits(y, shifted),
                               [LSE_123 - 2.3], rtol=rtol)
    np.testing.assert_allclose(xentc.softmax(shifted), xentc.softmax(x), rtol=rtol)
    np.testing.assert_allclose(xentc.log_softmax(shifted), xentc.log_softmax(x), rtol=rtol)
    np.testing.assert_allclose(xentc.logsumexp(x), [LSE_123], rtol=rtol)
    # logsumexp itself moves with the shift (to the precision of 1e6 in the dtype)
    np.testing.assert_allclose(xentc.logsumexp(shifted).astype(np.float64), [1e6 + LSE_123],
                               rtol=0, atol=0.07 if dtype == F32 else 1e-9)


@pytest.mark.parametrize("dtype,big", [(F64, 1e308), (F32, 3e38)])
def test_huge_logits_do_not_overflow(dtype, big):
    x = np.array([[big, big], [big, -big]], dtype=dtype)
    lse = xentc.logsumexp(x)
    assert np.isfinite(lse).all()
    np.testing.assert_allclose(lse, [big, big], rtol=1e-7)
    np.testing.assert_allclose(xentc.softmax(x), [[0.5, 0.5], [1.0, 0.0]], rtol=1e-7)
    np.testing.assert_allclose(xentc.sparse_softmax_cross_entropy_with_logits([0, 0], x),
                               [np.log(2), 0.0], rtol=1e-6, atol=0)
    np.testing.assert_allclose(xentc.log_softmax(x)[0], [-np.log(2)] * 2, rtol=1e-6)
    # a loss of 2 * big is beyond the dtype's range: +inf, the correctly rounded value
    assert xentc.sparse_softmax_cross_entropy_with_logits([1], x[1:])[0] == inf
    assert xentc.softmax_cross_entropy_with_logits(np.array([[0.0, 1.0]]), x[1:])[0] == inf


@pytest.mark.parametrize("dtype", [F32, F64])
def test_log_softmax_keeps_what_log_of_softmax_loses(dtype):
    x = np.array([0.0, -200.0], dtype=dtype)
    with np.errstate(divide="ignore"):
        naive = np.log(xentc.softmax(x))
    if dtype == F32:
        assert naive[1] == -inf  # softmax rounds exp(-200) to 0 in float32
    # log_softmax_0 = -log1p(exp(-200)) = -1.4e-87: below float32's range, so -0.0 there
    np.testing.assert_allclose(xentc.log_softmax(x), [-np.exp(-200.0), -200.0], rtol=1e-6,
                               atol=1e-45 if dtype == F32 else 1e-300)
    np.testing.assert_allclose(
        float(xentc.sparse_softmax_cross_entropy_with_logits(1, x)), 200.0, rtol=1e-6)


# --------------------------------------------------------------------------
# tiny losses of confident rows (seed 000's 1.855e-08)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F32, F64])
def test_confident_rows_keep_their_tiny_loss_gradient_and_log_probability(dtype):
    n, c = 6, 10
    true = np.array([0, 3, 9, 5, 5, 1])
    x = np.full((n, c), -10, dtype=dtype)
    x[np.arange(n), true] = 10
    y = np.zeros((n, c), dtype=dtype)
    y[np.arange(n), true] = 1
    rtol = 1e-3 if dtype == F32 else 1e-12
    loss, grad = xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True)
    sloss, sgrad = xentc.sparse_softmax_cross_entropy_with_logits(true, x, return_grad=True)
    lsm = xentc.log_softmax(x)
    for got in (loss, sloss, -lsm[np.arange(n), true]):
        np.testing.assert_allclose(got, np.log1p(9 * np.exp(-20.0)), rtol=rtol)
        np.testing.assert_allclose(got, CONFIDENT_LOSS, rtol=rtol)
    for g in (grad, sgrad):
        np.testing.assert_allclose(g[np.arange(n), true], CONFIDENT_TRUE_GRAD, rtol=rtol)
        # the other classes: softmax = exp(-20) / (1 + 9 exp(-20))
        off = np.ones((n, c), bool)
        off[np.arange(n), true] = False
        np.testing.assert_allclose(g[off], np.exp(-20.0) / (1 + 9 * np.exp(-20.0)), rtol=rtol)
        # each gradient row sums to 0 (to float32's resolution at 2e-9)
        np.testing.assert_allclose(g.astype(np.float64).sum(axis=1), 0, atol=1e-14)
    # the probability of the true class is 1 - 1.855e-08: 1 in float32, and below 1 in float64
    p = xentc.softmax(x)[np.arange(n), true]
    if dtype == F64:
        np.testing.assert_allclose(1 - p, CONFIDENT_LOSS, rtol=1e-6)


@pytest.mark.parametrize("n_classes", [5, 10, 16, 50])   # the few-class kernels' log1p; 50: libm's
@pytest.mark.parametrize("dtype", [F32, F64])
def test_log1p_of_ties_and_one_term_is_within_a_few_ulp(dtype, n_classes):
    # rows of k ties at the max 0, one term z and -inf elsewhere, label 0: s =
    # (k - 1) + exp(z) (the ties are counted exactly), loss = lse = log(k +
    # exp(z)); k = 1 takes the few-class kernels' vector log1p (taken from s,
    # not from 1 + s) over z from the smallest term to 0, with s near sqrt 2 -
    # 1 (where its reduction switches) and tiny s; k up to 15 covers s up to
    # 15 (every exponent e of 1 + s up to 4).  Reference in long double where
    # it is wider than float64 (x86-64).
    lo = -745.0 if dtype == F64 else -103.0
    z1 = np.concatenate([np.linspace(lo, 0.0, 100001),
                         np.log([np.sqrt(2) - 1, 2.0**-30, 2.0**-60])])
    zk = np.linspace(-40.0, 0.0, 4001)
    ks = [k for k in (2, 3, 4, 7, 8, 9, 10, 15) if k < n_classes]
    z = np.concatenate([z1] + [zk] * len(ks)).astype(dtype)
    k = np.concatenate([np.ones(z1.size, int)] + [np.full(zk.size, k) for k in ks])
    x = np.full((z.size, n_classes), -np.inf, dtype)
    x[np.arange(n_classes) < k[:, None]] = 0
    x[:, n_classes - 1] = z
    label = np.zeros(z.size, int)
    wide = np.longdouble if np.finfo(np.longdouble).nmant > 52 else np.float64
    want = np.log1p((k - 1) + np.exp(z.astype(wide)))
    ulp = np.spacing(want.astype(dtype)).astype(wide)
    normal = want > np.finfo(dtype).tiny
    # the exp of the term (up to 1.06 ulp in float32 on AVX-512) and log1p's
    # rounding.  Measured on these rows: float32 1.97 ulp (AVX-512; AVX2 1.58,
    # baseline 1.49), float64 2.37, rows with ties at most 1.31; on four times
    # as many one-term rows float32 2.12 (AVX-512) and float64 2.40, where
    # float32 gave 3.58 before log1p added t - t0 and float64 3.35 with the
    # earlier log1p of two divisions
    bound = 2.5 if dtype == F32 else 3.0 if wide is not np.float64 else 4.0
    for name, got in [
        ("sparse loss", xentc.sparse_softmax_cross_entropy_with_logits(label, x)),
        ("dense loss", xentc.softmax_cross_entropy_with_logits(np.eye(n_classes, dtype=dtype)[label], x)),
        ("lse", xentc.sparse_softmax_cross_entropy_with_logits(label, x, return_lse=True)[1]),
    ]:
        err = np.abs(got.astype(wide) - want)[normal] / ulp[normal]
        assert err.max() <= bound, (name, float(err.max()), float(z[normal][err.argmax()]),
                                    int(k[normal][err.argmax()]))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_confident_long_rows_with_the_max_anywhere(dtype):
    # The kernels cut a row into blocks (256 to 2048 elements, multiples of 256,
    # by path and dtype) and sum each block's terms in pairs of vectors; only
    # the pair that holds the block's first max (found by a scan after the max
    # pass), the last odd vector and the tail leave the max's terms out of the
    # sum, the other pairs add a tie as exactly 1.  A max anywhere: first and
    # last element, around vector, pair and block edges, every element of the
    # last block.  n = 2111: the last block (63 elements from 2048) leaves,
    # after the scan's steps of four vectors, a pair, an odd vector and a tail
    # on every path (vectors of 2, 4, 8 or 16 elements).  Confident rows (every
    # other logit -30): the loss of the max's class is log1p(s) ~ 1.9e-10,
    # which a max term counted in the sum (s + 1) or left out twice (s - 1)
    # would ruin; other labels lose 30 + log1p(s).  Two more rows per position
    # tie the max: once 1100 classes on (another block, wrapping around), once
    # in the same 256 classes (the same block on every path, before or after
    # the max: either one is the first the scan finds, the other is summed).
    n = 2111
    pos = sorted({0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 127, 128, 255, 256, 511, 512, 513,
                  700, 1023, 1024, 1025, 1535, 2047, *range(2048, n)})
    rows = len(pos)
    far = [(p + 1100) % n for p in pos]
    near = []
    for p in pos:
        chunk = p - p % 256
        width = min(256, n - chunk)
        near.append(chunk + (p - chunk + 100) % width)
    assert all(t != p for t, p in zip(near + far, pos + pos))
    x = np.full((3 * rows, n), -30, dtype=dtype)
    r = np.arange(rows)
    x[r, pos] = x[rows + r, pos] = x[2 * rows + r, pos] = 0
    x[rows + r, far] = 0
    x[2 * rows + r, near] = 0
    lab_max = np.array(pos * 3)
    lab_other = (lab_max + 1) % n
    xd = x.astype(np.float64)
    rtol = 1e-6 if dtype == F32 else 1e-13
    # what the rows are: a tiny loss at the max's class, log(2) and more at a tie
    ref_max, _ = reference.sparse_xent(lab_max, xd)
    assert (ref_max[:rows] < 2e-10).all() and (ref_max[rows:] > np.log(2)).all()
    all_rows = np.arange(3 * rows)
    for lab in (lab_max, lab_other):
        ref, ref_grad = reference.sparse_xent(lab, xd)
        loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(lab, x, return_grad=True)
        np.testing.assert_allclose(loss, ref, rtol=rtol)
        np.testing.assert_array_equal(xentc.sparse_softmax_cross_entropy_with_logits(lab, x), loss)
        np.testing.assert_allclose(grad[all_rows, lab], ref_grad[all_rows, lab], rtol=rtol)
        y = np.zeros_like(x)
        y[all_rows, lab] = 1
        np.testing.assert_allclose(xentc.softmax_cross_entropy_with_logits(y, x), ref, rtol=rtol)
    np.testing.assert_allclose(xentc.logsumexp(x), reference.logsumexp(xd), rtol=rtol, atol=0)
    # scoring reads the rows through its own max pass (it also ranks the label)
    got = xentc.score(x[:rows], lab_max[:rows], top_k=(1,))
    np.testing.assert_allclose(got.loss_sum, ref_max[:rows].sum(), rtol=rtol)
    assert got.accuracy == 1.0


def test_ten_million_classes_in_float32_within_1e_minus_6_of_float64():
    c = 10_000_000
    x = (np.random.default_rng(123).normal(size=c) * 3).astype(np.float32)
    label = 4_321_987
    x64 = x.astype(np.float64)
    m = x64.max()
    lse64 = m + np.log(np.sum(np.exp(x64 - m)))  # float64, pairwise summation
    sloss = xentc.sparse_softmax_cross_entropy_with_logits(label, x)
    assert np.asarray(sloss).dtype == F32
    np.testing.assert_allclose(float(sloss), lse64 - x64[label], rtol=1e-6)
    np.testing.assert_allclose(float(xentc.logsumexp(x)), lse64, rtol=1e-6)
    y = np.zeros(c, dtype=np.float32)
    y[label] = 1
    dloss = xentc.softmax_cross_entropy_with_logits(y, x)
    np.testing.assert_allclose(float(dloss), lse64 - x64[label], rtol=1e-6)
    del y
    sm = xentc.softmax(x)
    np.testing.assert_allclose(np.sum(sm, dtype=np.float64), 1.0, rtol=1e-6)
    np.testing.assert_allclose(sm[label], np.exp(x64[label] - lse64), rtol=1e-5)


def test_float16_is_computed_in_float32():
    # 4096 equal logits: a float16 accumulator stalls at 2048 (2048 + 1 == 2048 in
    # float16) and would give log(2048); float32 gives log(4096), rounded to float16.
    x = np.zeros((2, 4096), dtype=F16)
    lse = xentc.logsumexp(x)
    assert lse.dtype == F16
    assert np.array_equal(lse, np.full(2, LOG_4096, dtype=F16))
    sm = xentc.softmax(x)
    assert sm.dtype == F16 and np.array_equal(sm, np.full(x.shape, 1 / 4096, dtype=F16))
    loss = xentc.sparse_softmax_cross_entropy_with_logits([0, 4095], x)
    assert loss.dtype == F16 and np.array_equal(loss, np.full(2, LOG_4096, dtype=F16))
    # values whose exp overflows float16 (exp(12) > 65504)
    big = np.array([[20.0, 0.0, -20.0]], dtype=F16)
    np.testing.assert_allclose(xentc.softmax(big).astype(np.float64),
                               reference.softmax(big.astype(np.float64)), rtol=1e-3, atol=6e-8)
    assert xentc.logsumexp(big)[0] == F16.type(20.0)


def test_softmax_rows_sum_to_one():
    x = np.random.default_rng(5).normal(size=(50, 1000)) * 20
    for dtype, tol in ((F32, 1e-5), (F64, 1e-13)):
        s = xentc.softmax(x.astype(dtype), axis=-1).astype(np.float64).sum(axis=-1)
        np.testing.assert_allclose(s, 1.0, rtol=tol)
        s0 = xentc.softmax(x.T.astype(dtype), axis=0).astype(np.float64).sum(axis=0)
        np.testing.assert_allclose(s0, 1.0, rtol=tol)


# --------------------------------------------------------------------------
# special values
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F16, F32, F64])
@pytest.mark.parametrize("nan_at", [0, 2, 4])
def test_nan_logit_makes_only_its_row_nan(dtype, nan_at):
    x = np.random.default_rng(6).normal(size=(4, 5)).astype(dtype)
    x[1, 1] = 50  # a max before or after the NaN
    x[1, nan_at] = nan
    yd = np.full((4, 5), 0.2, dtype=dtype)
    ys = np.array([1, 1, 2, 3])
    res = all_functions(x, yd, ys)
    clean = np.delete(x, 1, axis=0)
    res_clean = all_functions(clean, np.delete(yd, 1, axis=0), np.delete(ys, 1))
    for name, value in res.items():
        assert np.isnan(value[1]).all(), f"{name}: row 1 should be NaN, got {value[1]}"
        assert not np.isnan(np.delete(value, 1, axis=0)).any(), name
        assert np.array_equal(np.delete(value, 1, axis=0), res_clean[name]), name


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("case", ["in a later block", "last element", "block of -inf", "block with +inf",
                                  "whole block", "before the max"])
def test_nan_in_rows_of_many_blocks(dtype, case):
    # rows of 3001 classes span several blocks of every SIMD path (256 to 2048
    # elements); the max pass leaves NaNs out and the block's sum finds them,
    # so a NaN must make its whole row NaN wherever it sits, gradients of all
    # lengths included, in place too, and leave the other rows bit for bit
    n = 3001   # a partial last vector on every path
    x = np.random.default_rng(8).normal(size=(3, n)).astype(dtype)
    x[1, 100] = 40.0
    if case == "in a later block":
        x[1, 2100] = nan
    elif case == "last element":
        x[1, n - 1] = nan
    elif case == "block of -inf":   # whole blocks on every path (256 to 2048 elements)
        x[1, 2048:] = -inf
        x[1, 2500] = nan
    elif case == "block with +inf":   # the same block on every path (256 to 2048 elements)
        x[1, 1800] = inf
        x[1, 1801] = nan
    elif case == "whole block":
        x[1, 2048:] = nan
    else:
        x[1, 50] = nan
    yd = np.full((3, n), 1.0 / n, dtype=dtype)
    ys = np.array([3, 100, 2999])
    res = all_functions(x, yd, ys)
    clean = np.delete(x, 1, axis=0)
    res_clean = all_functions(clean, np.delete(yd, 1, axis=0), np.delete(ys, 1))
    g = x.copy()
    xentc.sparse_softmax_cross_entropy_with_logits(ys, g, return_grad=True, grad_out=g)
    res["sparse grad in place"] = g
    g = x.copy()
    xentc.softmax_cross_entropy_with_logits(yd, g, return_grad=True, grad_out=g, validate_labels=False)
    res["dense grad in place"] = g
    res_clean["sparse grad in place"] = res_clean["sparse grad"]
    res_clean["dense grad in place"] = res_clean["dense grad"]
    weights = np.linspace(0.5, 2.0, n).astype(dtype)   # PyTorch's cross_entropy: weights, smoothing
    for key, (data, lab) in {"ce": (x, ys), "ce clean": (clean, np.delete(ys, 1))}.items():
        loss, grad = xentc.cross_entropy(data, lab, weight=weights, label_smoothing=0.1, reduction="none",
                                         return_grad=True)
        target = res_clean if key == "ce clean" else res
        target["cross_entropy loss"], target["cross_entropy grad"] = loss, grad
    for name, value in res.items():
        assert np.isnan(value[1]).all(), f"{name}: row 1 should be NaN, got {value[1]}"
        assert np.array_equal(np.delete(value, 1, axis=0), res_clean[name]), name


@pytest.mark.parametrize("dtype", [F16, F32, F64])
def test_row_of_minus_inf(dtype):
    x = np.array([[-inf, -inf, -inf], [0.0, 1.0, 2.0]], dtype=dtype)
    res = all_functions(x, np.array([[0, 1.0, 0], [0, 1.0, 0]], dtype=dtype), [1, 1])
    for name in ("dense loss", "dense grad", "sparse loss", "sparse grad", "softmax", "log_softmax"):
        assert np.isnan(res[name][0]).all(), f"{name}: {res[name][0]}"
        assert np.isfinite(res[name][1]).all(), name
    assert res["logsumexp"][0] == -inf
    assert np.isfinite(res["logsumexp"][1])


@pytest.mark.parametrize("dtype", [F16, F32, F64])
def test_masked_logit_with_zero_label_contributes_nothing(dtype):
    # 0 * log(0) = 0: TensorFlow, PyTorch and optax return NaN here.
    loss, grad = xentc.softmax_cross_entropy_with_logits(
        np.array([[0.0, 1.0]], dtype=dtype), np.array([[-inf, 0.0]], dtype=dtype), return_grad=True)
    assert loss.dtype == dtype and grad.dtype == dtype
    assert loss[0] == 0 and np.array_equal(grad, [[0.0, 0.0]])
    # a wider row: masked classes with label 0, two live classes sharing the label
    y = np.array([[0.0, 0.5, 0.5, 0.0]], dtype=dtype)
    x = np.array([[-inf, 1.0, 1.0, -inf]], dtype=dtype)
    loss, grad = xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True)
    np.testing.assert_allclose(loss.astype(np.float64), [np.log(2)], rtol=1e-3 if dtype == F16 else 1e-6)
    assert np.array_equal(grad, np.zeros((1, 4)))
    # sparse: the masked classes get probability 0 and gradient 0
    sloss, sgrad = xentc.sparse_softmax_cross_entropy_with_logits([1], np.array([[-inf, 0.0]], dtype=dtype),
                                                                  return_grad=True)
    assert sloss[0] == 0 and np.array_equal(sgrad, [[0.0, 0.0]])
    assert np.array_equal(xentc.softmax(x), np.array([[0.0, 0.5, 0.5, 0.0]], dtype=dtype))
    lsm = xentc.log_softmax(x)
    assert lsm[0, 0] == -inf and lsm[0, 3] == -inf


@pytest.mark.parametrize("dtype", [F16, F32, F64])
def test_positive_label_on_minus_inf_logit_gives_inf(dtype):
    x = np.array([[-inf, 0.0, 1.0]], dtype=dtype)
    loss, grad = xentc.softmax_cross_entropy_with_logits(
        np.array([[0.5, 0.5, 0.0]], dtype=dtype), x, return_grad=True)
    assert loss[0] == inf
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad.astype(np.float64), reference.dense_xent(
        np.array([[0.5, 0.5, 0.0]]), x.astype(np.float64))[1], rtol=1e-3, atol=1e-7)
    assert xentc.sparse_softmax_cross_entropy_with_logits([0], x)[0] == inf


@pytest.mark.parametrize("n_classes", [10, 100, 3000])
@pytest.mark.parametrize("case", ["masked first", "masked middle", "+inf last"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_labels_of_both_signs_on_infinite_terms_give_nan_in_rows_of_any_length(n_classes, case, dtype):
    # validate_labels=False computes the raw formula sum_j y_j (logsumexp - x_j).
    # Labels +1 and -1 where logsumexp - x_j = +inf (a -inf logit, or any finite
    # logit when the row holds +inf) give +inf - inf = NaN, however long the
    # row: long rows are summed in blocks, and a block must not drop (or
    # half-count) its labels' infinite terms because its labels sum to 0 or
    # its own max is -inf.
    x = np.zeros((1, n_classes), dtype=dtype)
    if case == "masked first":
        start, stop = 0, n_classes - 5
        x[0, start:stop] = -inf
    elif case == "masked middle":
        start, stop = n_classes // 5, n_classes // 5 + (3 * n_classes) // 5
        x[0, start:stop] = -inf
    else:
        start, stop = 0, n_classes - 1
        x[0, -1] = inf
    at = (start + stop) // 2  # away from the ends of the run
    for pos, neg in ((1.0, -1.0), (2.0, -1.0), (1.0, -2.0)):
        y = np.zeros((1, n_classes), dtype=dtype)
        y[0, at], y[0, at + 1], y[0, -1] = pos, neg, 1.0
        loss, grad = xentc.softmax_cross_entropy_with_logits(y, x, validate_labels=False, return_grad=True)
        ref_loss, ref_grad = reference.dense_xent(y, x)
        assert np.isnan(ref_loss[0])
        assert np.isnan(loss[0]), f"labels {pos}, {neg} at {at}, {at + 1} ({case}): loss {loss[0]}"
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_loss_only_and_loss_grad_round_alike_with_minus_inf_logits(dtype):
    # soft labels on every class but a run of -inf logits (label 0) in one
    # block: the loss-only pass sums that block's y (x - max) a second time with
    # the guard, the loss+grad pass once with it; both must add the same terms
    # in the same order with the same roundings (an FMA where the CPU has one),
    # so the losses are equal bit for bit, and equal to those of logits of
    # -1e30 there (no guard needed).  With GCC left to contract a y z + sum
    # into an FMA as it saw fit, the AVX2 path differed in 5 (float32) and 1
    # (float64) of these 200 rows.
    n, rows = 3001, 200
    rng = np.random.default_rng(21)
    x = rng.normal(size=(rows, n)).astype(dtype)
    cols = np.arange(1500, 1530)
    x[:, cols] = -inf
    y = np.zeros((rows, n), dtype=dtype)
    live = np.setdiff1d(np.arange(n), cols)
    y[:, live] = rng.uniform(0.1, 1.0, (rows, live.size))
    y /= y.sum(axis=1, keepdims=True)
    loss = xentc.softmax_cross_entropy_with_logits(y, x)
    loss2, _ = xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True)
    low = x.copy()
    low[:, cols] = -1e30
    loss3 = xentc.softmax_cross_entropy_with_logits(y, low)
    np.testing.assert_array_equal(loss, loss2)
    np.testing.assert_array_equal(loss, loss3)
    ref_loss, _ = reference.dense_xent(y.astype(np.float64), x.astype(np.float64))
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-6 if dtype == F32 else 1e-13)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("where", ["first block", "later block", "tail", "everywhere but one"])
def test_minus_inf_logits_with_label_0_add_nothing_in_long_rows(dtype, where):
    # the loss-only pass sums y (x - max) with one FMA per vector, which is NaN
    # at a -inf logit with label 0 (0 * -inf); such a block is summed again with
    # the guard (0 log 0 = 0).  The loss must be the reference's, finite, in
    # every block position, with or without the gradient, and so must
    # cross_entropy's with class weights 0 at the -inf classes and label
    # smoothing 0.1
    n = 3001   # a partial last vector on every path
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, n)).astype(dtype)
    cols = {"first block": np.arange(3, 60), "later block": np.arange(1500, 1530),
            "tail": np.arange(n - 7, n), "everywhere but one": np.r_[0:700, 701:n]}[where]
    x[:, cols] = -inf
    y = np.zeros((2, n), dtype=dtype)
    live = np.setdiff1d(np.arange(n), cols)
    # soft labels on every live class: a block's y (x - max) is many terms in
    # every lane, which the loss-only pass (guarded again) and the loss+grad
    # pass must add in the same order
    y[0, live] = rng.uniform(0.1, 1.0, live.size)
    y[0] /= y[0].sum()
    y[1, live[-1]] = 1.0
    ref_loss, ref_grad = reference.dense_xent(y.astype(np.float64), x.astype(np.float64))
    assert np.isfinite(ref_loss).all()
    rtol = 2e-6 if dtype == F32 else 1e-13
    loss = xentc.softmax_cross_entropy_with_logits(y, x)
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol)
    loss2, grad = xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True)
    np.testing.assert_array_equal(loss2, loss)   # the two passes round alike
    np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=1e-7 if dtype == F32 else 1e-15)
    assert np.all(grad[:, cols] == 0)
    if where == "everywhere but one":   # one finite logit: loss exactly 0, lse its logit
        assert loss[0] == 0 and loss[1] == 0
        sloss, lse = xentc.sparse_softmax_cross_entropy_with_logits([700, 700], x, return_lse=True)
        assert np.all(sloss == 0) and np.array_equal(lse, x[:, 700])
    # PyTorch's cross_entropy with class weights 0 at the -inf classes and label
    # smoothing sums w (x - max) over every class (the weights' label modes):
    # 0 there, as for a logit so low that its exp is 0 (PyTorch itself gives
    # NaN: 0 * -inf), with or without the gradient
    w = np.linspace(0.5, 2.0, n).astype(dtype)
    w[cols] = 0
    targets = np.array([live[0], live[-1]])
    ce = xentc.cross_entropy(x, targets, weight=w, label_smoothing=0.1, reduction="none")
    low = np.where(np.isinf(x), -1e4, x)
    np.testing.assert_allclose(ce, reference.cross_entropy(low, targets, weight=w, label_smoothing=0.1,
                                                           reduction="none"), rtol=rtol)
    ce2, _ = xentc.cross_entropy(x, targets, weight=w, label_smoothing=0.1, reduction="none", return_grad=True)
    np.testing.assert_array_equal(ce2, ce)
    # a NaN label (unvalidated) still makes the loss NaN after the second look
    y[0, cols[0]] = nan
    assert np.isnan(xentc.softmax_cross_entropy_with_logits(y, x, validate_labels=False)[0])
    assert xentc.softmax_cross_entropy_with_logits(y, x, validate_labels=False)[1] == loss[1]


@pytest.mark.parametrize("dtype", [F16, F32, F64])
@pytest.mark.parametrize("at", [0, 2, 4])
def test_single_plus_inf_takes_all_the_probability(dtype, at):
    x = np.array([1.0, -2.0, 3.0, -inf, 0.5], dtype=dtype)
    x[at] = inf
    onehot = np.zeros(5, dtype=dtype)
    onehot[at] = 1
    assert np.array_equal(xentc.softmax(x), onehot)
    assert xentc.logsumexp(x) == inf
    lsm = xentc.log_softmax(x)
    assert lsm[at] == 0 and (np.delete(lsm, at) == -inf).all()
    for label in range(5):
        loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(label, x, return_grad=True)
        assert loss == (0 if label == at else inf), (label, loss)
        expected = onehot.astype(np.float64)
        expected[label] -= 1
        assert np.array_equal(grad, expected.astype(dtype)), (label, grad)
        y = np.zeros(5, dtype=dtype)
        y[label] = 1
        dloss, dgrad = xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True)
        assert dloss == (0 if label == at else inf)
        assert np.array_equal(dgrad, expected.astype(dtype))


# --------------------------------------------------------------------------
# shapes and dtypes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis", [((0, 5), -1), ((3, 0, 5), -1), ((0, 5), 1), ((4, 0), 0),
                                        ((2, 0, 3), 2), ((0, 0, 3), -1)])
@pytest.mark.parametrize("dtype", [F16, F32, F64])
def test_zero_rows_give_empty_results(shape, axis, dtype):
    x = np.zeros(shape, dtype=dtype)
    batch = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    loss, grad = xentc.softmax_cross_entropy_with_logits(x, x, axis, return_grad=True)
    assert loss.shape == batch and loss.dtype == dtype
    assert grad.shape == shape and grad.dtype == dtype
    for fn in (xentc.softmax, xentc.log_softmax):
        r = fn(x, axis)
        assert r.shape == shape and r.dtype == dtype
    r = xentc.logsumexp(x, axis)
    assert r.shape == batch and r.dtype == dtype
    if axis % len(shape) == len(shape) - 1:
        sl, sg = xentc.sparse_softmax_cross_entropy_with_logits(
            np.zeros(batch, np.int64), x, return_grad=True)
        assert sl.shape == batch and sl.dtype == dtype
        assert sg.shape == shape and sg.dtype == dtype
        g = np.full(shape, 7, dtype)
        assert xentc.sparse_softmax_cross_entropy_with_logits(np.zeros(batch, np.int8), x, grad_out=g)[1] is g


@pytest.mark.parametrize("logits_dtype,expected", [
    (np.float16, F16), (np.float32, F32), (np.float64, F64), (np.longdouble, F64),
    (np.int8, F64), (np.int32, F64), (np.int64, F64), (np.uint8, F64), (np.uint64, F64),
    (np.bool_, F64), (">f4", F32), (">f8", F64),
])
def test_result_dtypes(logits_dtype, expected):
    x = np.array([[1, 0, 1], [0, 1, 0]], dtype=logits_dtype)
    x64 = x.astype(np.float64)
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss, grad = xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True)
    sloss, sgrad = xentc.sparse_softmax_cross_entropy_with_logits([1, 0], x, return_grad=True)
    results = [loss, grad, sloss, sgrad, xentc.softmax(x), xentc.log_softmax(x), xentc.logsumexp(x)]
    for r in results:
        assert r.dtype == expected
    tol = 1e-3 if expected == F16 else (1e-6 if expected == F32 else 1e-14)
    np.testing.assert_allclose(loss.astype(np.float64), reference.dense_xent(y, x64)[0], rtol=tol)
    np.testing.assert_allclose(xentc.logsumexp(x).astype(np.float64), reference.logsumexp(x64), rtol=tol)


@pytest.mark.parametrize("labels_dtype", [np.float16, np.float32, np.float64, np.longdouble,
                                          np.int8, np.uint8, np.int64, np.bool_])
@pytest.mark.parametrize("logits_dtype", [np.float16, np.float32, np.float64])
def test_dense_labels_of_any_real_dtype(labels_dtype, logits_dtype):
    x = np.array([[1.0, -3.0, 10.0], [0.5, 0.25, 0.0]], dtype=logits_dtype)
    y = np.array([[0, 0, 1], [1, 0, 0]], dtype=labels_dtype)
    loss = xentc.softmax_cross_entropy_with_logits(y, x)
    assert loss.dtype == np.dtype(logits_dtype)
    expected = reference.dense_xent(y.astype(np.float64), x.astype(np.float64))[0]
    np.testing.assert_allclose(loss.astype(np.float64), expected,
                               rtol=1e-3 if logits_dtype == np.float16 else 1e-6)


def test_dense_labels_are_converted_to_the_computation_dtype():
    # float64 labels with float32 logits are rounded to float32 first
    x = np.array([[1.0, -3.0, 10.0]], dtype=np.float32)
    y = np.array([[0.1, 0.02, 0.88]])
    expected = reference.dense_xent(y.astype(np.float32).astype(np.float64), x.astype(np.float64))[0]
    np.testing.assert_allclose(xentc.softmax_cross_entropy_with_logits(y, x), expected, rtol=2e-7)


def test_one_class():
    x = np.array([[3.0], [-7.0]])
    assert np.array_equal(xentc.softmax(x), [[1.0], [1.0]])
    assert np.array_equal(xentc.log_softmax(x), [[0.0], [0.0]])
    assert np.array_equal(xentc.logsumexp(x), [3.0, -7.0])
    loss, grad = xentc.sparse_softmax_cross_entropy_with_logits([0, 0], x, return_grad=True)
    assert np.array_equal(loss, [0.0, 0.0]) and np.array_equal(grad, [[0.0], [0.0]])


def test_leading_dimensions_and_axes_agree_with_2d():
    x = np.random.default_rng(8).normal(size=(2, 3, 4, 5))
    y = np.random.default_rng(9).random(size=x.shape)
    for axis in range(4):
        yy = y / y.sum(axis=axis, keepdims=True)
        loss, grad = xentc.softmax_cross_entropy_with_logits(yy, x, axis, return_grad=True)
        x2 = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
        y2 = np.moveaxis(yy, axis, -1).reshape(-1, x.shape[axis])
        loss2, grad2 = xentc.softmax_cross_entropy_with_logits(y2, x2, return_grad=True)
        batch = np.moveaxis(x, axis, -1).shape
        np.testing.assert_allclose(loss, loss2.reshape(batch[:-1]), rtol=1e-14)
        np.testing.assert_allclose(grad, np.moveaxis(grad2.reshape(batch), -1, axis), rtol=1e-14,
                                   atol=1e-16)
        np.testing.assert_allclose(xentc.logsumexp(x, axis), xentc.logsumexp(x2).reshape(batch[:-1]),
                                   rtol=1e-14)
        np.testing.assert_allclose(xentc.softmax(x, axis - 4),
                                   np.moveaxis(xentc.softmax(x2).reshape(batch), -1, axis), rtol=1e-14)
