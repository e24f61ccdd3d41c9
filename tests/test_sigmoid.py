"""sigmoid_cross_entropy_with_logits: hand values, the float64 reference, gradients,
pos_weight broadcasting, in place, threads, properties, errors, and the numbers
PyTorch and TensorFlow give (tests/data/binary_reference.json).

Also the module-level checks of xentc._binary: its doctests and its extension.
"""
import doctest
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, note, strategies as st
from hypothesis.extra.numpy import array_shapes, broadcastable_shapes

import reference
import xentc
import xentc._binary
from conftest import (F16, F32, F64, LAYOUTS, assert_close, compute_dtype, relayout,
                      result_dtype)

sigmoid = xentc.sigmoid_cross_entropy_with_logits
DATA = Path(__file__).resolve().parent / "data" / "binary_reference.json"
SENTINEL = 7.0


def check(labels, logits, pos_weight=None, **kwargs):
    """xentc's (loss, grad) against the reference, with the result dtype of logits."""
    loss, grad = sigmoid(labels, logits, pos_weight=pos_weight, return_grad=True, **kwargs)
    rd = result_dtype(np.asarray(logits).dtype)
    ref_loss, ref_grad = reference.sigmoid_xent(labels, logits, pos_weight)
    assert_close(loss, ref_loss, rd, reference.error_scale_sigmoid_loss(labels, logits, pos_weight),
                 what="loss")
    assert_close(grad, ref_grad, rd, reference.error_scale_sigmoid_grad(labels, logits, pos_weight),
                 what="grad")
    return loss, grad


# --------------------------------------------------------------------------
# the module: doctests, the extension
# --------------------------------------------------------------------------

def test_docstring_examples_of_the_binary_module():
    result = doctest.testmod(xentc._binary, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_elementwise_extension_is_built_like_the_main_one():
    from xentc import _elementwise, _kernels

    repo = Path(__file__).resolve().parents[1]
    assert repo not in Path(_elementwise.__file__).resolve().parents, _elementwise.__file__
    assert _elementwise.openmp_enabled() == _kernels.openmp_enabled()


# --------------------------------------------------------------------------
# hand values (computed with mpmath at 40 digits: loss = q z log1p(exp(-x)) +
# (1 - z) log1p(exp(x)), grad = (1 - z) sigmoid(x) - q z sigmoid(-x))
# --------------------------------------------------------------------------

HAND = [  # x, z, q, loss, grad
    (-20.0, 0.0, 1.0, 2.0611536203143807032e-09, 2.0611536181902035814e-09),
    (20.0, 1.0, 1.0, 2.0611536203143807032e-09, -2.0611536181902035814e-09),
    (2.0, 1.0, 1.0, 0.12692801104297249644, -0.11920292202211755594),
    (-1.0, 0.0, 1.0, 0.31326168751822283405, 0.26894142136999512075),
    (-30.0, 0.0, 1.0, 9.3576229688397367794e-14, 9.3576229688392989538e-14),
    (30.0, 0.0, 1.0, 30.000000000000093576, 0.99999999999990642377),
    (-20.0, 1.0, 3.0, 60.000000006183460861, -2.9999999938165391454),
    (20.0, 1.0, 3.0, 6.1834608609431421097e-09, -6.1834608545706107443e-09),
    (0.5, 0.25, 4.0, 1.2046347223151866915, 0.089303829603245488118),
    (-3.0, 0.75, 0.5, 1.1553670947335887867, -0.34535882926402076195),
    (0.0, 0.5, 3.0, 1.3862943611198906188, -0.5),
]


@pytest.mark.parametrize("dtype", [F32, F64])
def test_hand_values_mpmath(dtype):
    x, z, q, want_loss, want_grad = (np.array(c, dtype=np.float64) for c in zip(*HAND))
    loss, grad = sigmoid(z.astype(dtype), x.astype(dtype), pos_weight=q.astype(dtype),
                         return_grad=True)
    assert loss.dtype == dtype and grad.dtype == dtype
    # within 4 ulps of the correctly rounded value, in float32 as in float64
    np.testing.assert_array_max_ulp(loss, want_loss.astype(dtype), maxulp=4)
    np.testing.assert_array_max_ulp(grad, want_grad.astype(dtype), maxulp=4)


def test_tiny_values_survive_in_float32():
    # x = -20, z = 0: log1p(exp(-20)) = 2.0611536e-09 (mpmath); PyTorch gives 0 in float32
    x = np.array([-20.0, 20.0], dtype=np.float32)
    loss, grad = sigmoid(np.array([0.0, 1.0], np.float32), x, return_grad=True)
    assert f"{loss[0]:.7e}" == "2.0611537e-09" and f"{loss[1]:.7e}" == "2.0611537e-09"
    # sigmoid(-20) = 2.0611536e-09 (mpmath); for label 1 at x = 20 the gradient
    # sigmoid(20) - 1 would round to 0 in float32
    assert f"{grad[0]:.6e}" == "2.061154e-09" and f"{grad[1]:.6e}" == "-2.061154e-09"


@pytest.mark.parametrize("dtype", [F16, F32, F64])
@pytest.mark.parametrize("pos_weight", [None, 2.5])
def test_infinite_logits(dtype, pos_weight):
    x = np.array([-np.inf, np.inf, -np.inf, np.inf, -np.inf, np.inf], dtype)
    z = np.array([0.0, 1.0, 1.0, 0.0, 0.5, 0.5], dtype)
    loss, grad = sigmoid(z, x, pos_weight=pos_weight, return_grad=True)
    q = 1.0 if pos_weight is None else pos_weight
    # the right answer with certainty costs nothing: 0, not the NaN of 0 * inf
    assert loss[0] == 0 and loss[1] == 0 and grad[0] == 0 and grad[1] == 0
    # the wrong answer with certainty costs +inf; the gradient is the saturated slope
    assert np.isposinf(loss[2:]).all()
    np.testing.assert_array_equal(grad[2:], np.array([-q, 1.0, -q * 0.5, 0.5], dtype))


def test_nan_stays_in_its_element():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5)) * 3
    z = rng.random((4, 5))
    q = rng.random(5) + 0.5
    base_loss, base_grad = sigmoid(z, x, pos_weight=q, return_grad=True)
    x[1, 2] = np.nan
    z[3, 0] = np.nan
    loss, grad = sigmoid(z, x, pos_weight=q, return_grad=True)
    nan = np.zeros((4, 5), bool)
    nan[1, 2] = nan[3, 0] = True
    assert np.array_equal(np.isnan(loss), nan) and np.array_equal(np.isnan(grad), nan)
    assert np.array_equal(loss[~nan], base_loss[~nan]) and np.array_equal(grad[~nan], base_grad[~nan])
    # a NaN logit is NaN even where both weights are 0 (z = 1, q = 0)
    assert np.isnan(sigmoid(1.0, np.nan, pos_weight=0.0))


def test_without_pos_weight_is_pos_weight_one():
    rng = np.random.default_rng(1)
    x, z = rng.normal(size=(50, 7)) * 5, rng.random((50, 7))
    a = sigmoid(z, x, return_grad=True)
    b = sigmoid(z, x, pos_weight=np.ones(7), return_grad=True)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_is_tensorflows_formula_on_ordinary_values():
    # max(x, 0) - x z + log1p(exp(-|x|)), and the weighted form, where they do not cancel
    rng = np.random.default_rng(2)
    x, z, q = rng.normal(size=(6, 4)) * 3, rng.random((6, 4)), rng.random(4) * 4
    tf_loss = np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))
    np.testing.assert_allclose(sigmoid(z, x), tf_loss, rtol=1e-13)
    tf_weighted = (1 - z) * x + (1 + (q - 1) * z) * (np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0))
    np.testing.assert_allclose(sigmoid(z, x, pos_weight=q), tf_weighted, rtol=1e-12)


# --------------------------------------------------------------------------
# against the reference: dtypes, pos_weight broadcasting, layouts
# --------------------------------------------------------------------------

LOGIT_DTYPES = [F16, F32, F64, np.dtype(np.longdouble), np.dtype(np.int32), np.dtype(np.uint8),
                np.dtype(np.bool_)]


@pytest.mark.parametrize("dtype", LOGIT_DTYPES, ids=str)
def test_dtypes(dtype):
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(5, 6)) * 4)
    x = (np.abs(x) if dtype.kind in "ub" else x).astype(dtype)
    z = (rng.random((5, 6)) < 0.5).astype(np.int64)  # integer labels
    loss, grad = check(z, x)
    assert loss.dtype == result_dtype(dtype) and grad.dtype == result_dtype(dtype)


# (logits shape, pos_weight shape): the ways a weight can broadcast; the kernel
# reads each in place (row stride 0, per-row offsets, one run), never N x C
POS_WEIGHT_SHAPES = [
    ((7, 5), ()), ((7, 5), (1,)), ((7, 5), (5,)), ((7, 5), (1, 5)), ((7, 5), (7, 1)),
    ((7, 5), (7, 5)), ((3, 4, 5), (5,)), ((3, 4, 5), (4, 5)), ((3, 4, 5), (4, 1)),
    ((3, 4, 5), (3, 1, 1)), ((3, 4, 5), (3, 1, 5)), ((3, 4, 5), (3, 4, 1)), ((3, 4, 5), (1, 1, 1)),
    ((6,), (6,)), ((6,), ()), ((6, 1), (1,)), ((6, 1), (6, 1)), ((), ()), ((0, 5), (5,)),
    ((4, 0), (0,)), ((2, 3, 1), (3, 1)),
]


@pytest.mark.parametrize("shape,q_shape", POS_WEIGHT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [F32, F64])
def test_pos_weight_broadcasting(shape, q_shape, dtype):
    rng = np.random.default_rng(4)
    x = (rng.normal(size=shape) * 4).astype(dtype)
    z = rng.random(shape).astype(dtype)
    q = (rng.random(q_shape) * 4).astype(dtype)
    loss, grad = check(z, x, q)
    # the same as a materialised weight
    full = np.array(np.broadcast_to(q, shape))
    loss2, grad2 = sigmoid(z, x, pos_weight=full, return_grad=True)
    assert np.array_equal(loss, loss2) and np.array_equal(grad, grad2)


def test_pos_weight_is_not_materialised():
    # a (C,) weight on many rows: the layer passes the (C,) vector with row stride 0
    from xentc._binary import _Elements, _pos_weight_layout

    lg = _Elements("logits", np.zeros((10000, 8), np.float32))
    q, offsets, row_stride, col_stride, n_cols, _ = _pos_weight_layout(np.arange(8.0), lg)
    assert q.shape == (8,) and q.dtype == np.float32
    assert offsets is None and row_stride == 0 and col_stride == 1 and n_cols == 8
    # a weight that varies on a leading axis only: one offset per row, not per element
    lg = _Elements("logits", np.zeros((30, 40, 8)))
    q, offsets, _, col_stride, n_cols, _ = _pos_weight_layout(np.ones((30, 1, 1)), lg)
    assert q.shape == (30,) and offsets.shape == (1200,) and col_stride == 0 and n_cols == 8


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts(layout, memmap_dir):
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(4, 6)) * 3).astype(np.float32)
    z = rng.random((4, 6)).astype(np.float32)
    q = (rng.random(6) * 2).astype(np.float32)
    expected = sigmoid(z, x, pos_weight=q, return_grad=True)
    args = [relayout(a, layout, memmap_dir) for a in (z, x, q)]
    loss, grad = sigmoid(args[0], args[1], pos_weight=args[2], return_grad=True)
    if layout == "list":  # a list of float32 values becomes float64
        check(z, x.astype(np.float64), q)
    else:
        assert np.array_equal(loss, expected[0]) and np.array_equal(grad, expected[1])
    assert np.array_equal(np.asarray(args[1]), x)  # the input is untouched


def test_scalar_and_empty_inputs():
    loss = sigmoid(1.0, 2.0)
    assert isinstance(loss, np.float64) and abs(loss - 0.12692801104297249644) < 1e-16
    loss, grad = sigmoid(np.float32(0), np.float32(-20), return_grad=True)
    assert isinstance(loss, np.float32) and isinstance(grad, np.float32)
    for shape in [(0,), (3, 0), (0, 4, 2)]:
        loss, grad = sigmoid(np.zeros(shape), np.zeros(shape, np.float32), return_grad=True)
        assert loss.shape == shape and loss.dtype == np.float32 and grad.shape == shape


# --------------------------------------------------------------------------
# gradients: central differences in float64
# --------------------------------------------------------------------------

H = 1e-5


@pytest.mark.parametrize("q_shape", [None, (), (5,), (4, 1), (4, 5)])
@pytest.mark.parametrize("labels_kind", ["binary", "soft", "outside [0, 1]"])
def test_grad_is_the_derivative_of_the_summed_loss(q_shape, labels_kind):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 5)) * 3
    z = {"binary": (rng.random((4, 5)) < 0.5) * 1.0, "soft": rng.random((4, 5)),
         "outside [0, 1]": rng.normal(size=(4, 5)) * 2}[labels_kind]
    q = None if q_shape is None else rng.random(q_shape) * 3 + 0.1
    _, grad = sigmoid(z, x, pos_weight=q, return_grad=True)
    fd = np.empty_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += H
        xm[idx] -= H
        fd[idx] = (np.sum(sigmoid(z, xp, pos_weight=q)) - np.sum(sigmoid(z, xm, pos_weight=q))) / (2 * H)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------
# grad_out, in place
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F16, F32, F64])
def test_in_place(dtype):
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(6, 5)) * 4).astype(dtype)
    z = rng.random((6, 5))
    q = rng.random(5) + 0.5
    expected_loss, expected_grad = sigmoid(z, x, pos_weight=q, return_grad=True)
    loss, grad = sigmoid(z, x, pos_weight=q, grad_out=x)
    assert grad is x
    assert np.array_equal(x, expected_grad) and np.array_equal(loss, expected_loss)


def test_grad_out_is_returned_as_the_same_object():
    rng = np.random.default_rng(8)
    x, z = rng.normal(size=(2, 3, 4)), rng.random((2, 3, 4))
    x_before = x.copy()
    g = np.full(x.shape, SENTINEL)
    loss, grad = sigmoid(z, x, grad_out=g)
    assert grad is g and np.array_equal(x, x_before)
    assert np.array_equal(g, sigmoid(z, x, return_grad=True)[1])
    g0 = np.zeros(())
    _, grad = sigmoid(1.0, 2.0, grad_out=g0)
    assert grad is g0 and abs(g0[()] - -0.11920292202211755594) < 3e-17  # mpmath


def test_loss_only_does_not_touch_the_inputs():
    # integer logits are copied to float64 and the loss written into that copy
    x = np.array([[1, -2, 3]], dtype=np.int16)
    z = np.array([[1.0, 0.0, 0.5]])
    loss = sigmoid(z, x)
    assert np.array_equal(x, [[1, -2, 3]]) and loss.dtype == np.float64
    ref, _ = reference.sigmoid_xent(z, x)
    assert_close(loss, ref, F64)


# --------------------------------------------------------------------------
# threads: bit-identical for every num_threads
# --------------------------------------------------------------------------

@pytest.mark.parametrize("q_kind", [None, "per class", "per row", "offsets"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_bit_identical_for_every_thread_count(dtype, q_kind):
    rng = np.random.default_rng(9)
    shape = (60, 50, 37)  # 111000 elements: several chunks and threads
    x = (rng.normal(size=shape) * 8).astype(dtype)
    x[rng.random(shape) < 0.01] = -np.inf
    x[rng.random(shape) < 0.01] = np.inf
    x[3, 4, 5] = np.nan
    z = (rng.random(shape) < 0.5).astype(dtype)
    q = {None: None, "per class": rng.random(37) * 3, "per row": rng.random((60, 50, 1)),
         "offsets": rng.random((60, 1, 1))}[q_kind]
    base = sigmoid(z, x, pos_weight=q, return_grad=True, num_threads=1)
    for nt in [2, 3, 7, None]:
        got = sigmoid(z, x, pos_weight=q, return_grad=True, num_threads=nt)
        assert np.array_equal(got[0], base[0], equal_nan=True), f"loss, num_threads={nt}"
        assert np.array_equal(got[1], base[1], equal_nan=True), f"grad, num_threads={nt}"
    check(z, x, q, num_threads=2)


# --------------------------------------------------------------------------
# properties (hypothesis): shapes, dtypes, layouts, pos_weight shapes, specials
# --------------------------------------------------------------------------

ELEMENTS = st.one_of(st.floats(-60, 60), st.sampled_from([0.0, -20.0, 20.0, np.inf, -np.inf, np.nan]))


@st.composite
def sigmoid_inputs(draw):
    shape = draw(array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    dtype = draw(st.sampled_from([F16, F32, F64, np.dtype(np.int16)]))
    n = int(np.prod(shape))
    x = np.array(draw(st.lists(ELEMENTS, min_size=n, max_size=n)), dtype=np.float64).reshape(shape)
    if dtype.kind == "i":
        x = np.nan_to_num(x, nan=0.0, posinf=60.0, neginf=-60.0).round()
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    label_values = draw(st.sampled_from(["binary", "soft", "any"]))
    z = {"binary": st.sampled_from([0.0, 1.0]), "soft": st.floats(0, 1),
         "any": st.floats(-3, 3)}[label_values]
    z = np.array(draw(st.lists(z, min_size=n, max_size=n)), dtype=np.float64).reshape(shape)
    q = None
    if draw(st.booleans()):
        q_shape = draw(broadcastable_shapes(shape, min_dims=0, max_dims=len(shape), min_side=0).filter(
            lambda s: np.broadcast_shapes(s, shape) == shape))
        q = draw(st.lists(st.floats(0, 5), min_size=int(np.prod(q_shape)),
                          max_size=int(np.prod(q_shape))))
        q = np.array(q, dtype=np.float64).reshape(q_shape)
    return x, z, q


@given(inputs=sigmoid_inputs(), layout=st.sampled_from(LAYOUTS), in_place=st.booleans())
def test_matches_reference(inputs, layout, in_place, memmap_dir):
    x, z, q = inputs
    note(f"x={x!r} z={z!r} q={q!r}")
    rd = result_dtype(x.dtype)
    xin = relayout(x, layout, memmap_dir)
    zin = relayout(z.astype(compute_dtype(x.dtype)), layout, memmap_dir)
    if layout == "list":
        x = np.asarray(xin, dtype=np.float64) if x.ndim else np.float64(xin)
        rd = result_dtype(np.asarray(xin).dtype)
    if q is not None:  # pos_weight is computed in the logits' computation dtype
        q = q.astype(compute_dtype(x.dtype))
    ref_loss, ref_grad = reference.sigmoid_xent(np.asarray(zin, np.float64), x, q)
    if in_place and layout not in ("list", "memmap", "readonly", "byteswapped") and x.ndim:
        g = np.empty(x.shape, rd)
        loss, grad = sigmoid(zin, xin, pos_weight=q, grad_out=g)
        assert grad is g
    else:
        loss, grad = sigmoid(zin, xin, pos_weight=q, return_grad=True)
    zz = np.asarray(zin, np.float64)
    assert_close(loss, ref_loss, rd, reference.error_scale_sigmoid_loss(zz, x, q), what="loss")
    assert_close(grad, ref_grad, rd, reference.error_scale_sigmoid_grad(zz, x, q), what="grad")


# --------------------------------------------------------------------------
# errors: message, and nothing written
# --------------------------------------------------------------------------

def sentinel(shape, dtype=np.float64):
    return np.full(shape, SENTINEL, dtype=dtype)


def test_shape_mismatch_names_both_shapes():
    g = sentinel((3, 4))
    with pytest.raises(ValueError, match=re.escape(
            "labels and logits must have the same shape, got labels.shape=(3, 5) and "
            "logits.shape=(3, 4)")):
        sigmoid(np.zeros((3, 5)), np.zeros((3, 4)), grad_out=g)
    assert (g == SENTINEL).all()


@pytest.mark.parametrize("q_shape", [(4,), (3, 5, 1), (2, 1), (1, 3, 5), (6,)])
def test_pos_weight_not_broadcastable(q_shape):
    x = np.zeros((3, 5))
    g = sentinel((3, 5))
    with pytest.raises(ValueError, match=re.escape(
            f"pos_weight must be broadcastable to the shape of logits, got "
            f"pos_weight.shape={q_shape} and logits.shape=(3, 5)")):
        sigmoid(np.zeros((3, 5)), x, pos_weight=np.ones(q_shape), grad_out=g)
    assert (g == SENTINEL).all()


def test_pos_weight_not_broadcastable_in_place_leaves_logits():
    x = np.arange(6.0).reshape(2, 3)
    with pytest.raises(ValueError, match="pos_weight.shape=\\(2,\\)"):
        sigmoid(np.zeros((2, 3)), x, pos_weight=[1.0, 2.0], grad_out=x)
    assert np.array_equal(x, np.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize("make,message", [
    (lambda: np.zeros((3, 5)), "grad_out must have shape (3, 4), got grad_out.shape=(3, 5)"),
    (lambda: np.zeros((3, 4), np.float32), "grad_out must have dtype float64, got grad_out.dtype=float32"),
    (lambda: np.zeros((4, 3)).T, "grad_out must be C-contiguous"),
    (lambda: np.zeros((3, 4)).astype(">f8"), "grad_out must have dtype float64"),
])
def test_bad_grad_out(make, message):
    g = make()
    g[...] = SENTINEL
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match=re.escape(message)):
        sigmoid(np.zeros((3, 4)), x, grad_out=g)
    assert (g == SENTINEL).all() and (x == 1).all()


def test_read_only_grad_out():
    g = sentinel((3, 4))
    g.flags.writeable = False
    with pytest.raises(ValueError, match="grad_out must be writeable, got a read-only array"):
        sigmoid(np.zeros((3, 4)), np.zeros((3, 4)), grad_out=g)


def test_grad_out_not_an_array():
    with pytest.raises(TypeError, match="grad_out must be a numpy.ndarray, got list"):
        sigmoid(np.zeros(2), np.zeros(2), grad_out=[0.0, 0.0])


def test_grad_out_must_not_overlap_labels_or_pos_weight():
    buf = np.full((2, 3, 4), SENTINEL)
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="grad_out must not overlap labels"):
        sigmoid(buf[0], x, grad_out=buf[0])
    with pytest.raises(ValueError, match="grad_out must not overlap pos_weight"):
        sigmoid(buf[1] * 0, x, pos_weight=buf[0], grad_out=buf[0])
    # a part of the logits (not the logits themselves) is not in place either
    big = np.full((3, 8), SENTINEL)
    with pytest.raises(ValueError, match="grad_out must not overlap logits; pass grad_out=logits"):
        sigmoid(np.zeros((3, 4)), big[:, :4], grad_out=_overlapping(big))
    assert (buf == SENTINEL).all() and (big == SENTINEL).all()


def _overlapping(big):
    """A C-contiguous (3, 4) array sharing memory with big[:, :4] but not identical to it."""
    flat = big.reshape(-1)
    return flat[2:14].reshape(3, 4)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(logits=np.zeros(3, complex)), TypeError,
     "logits must be an array of real floating-point or integer numbers, got logits.dtype=complex128"),
    (dict(labels=np.array(["a", "b", "c"])), TypeError, "labels must be an array of real"),
    (dict(pos_weight=np.array([1j, 1, 1])), TypeError, "pos_weight must be an array of real"),
    (dict(return_grad="yes"), TypeError, "return_grad must be True or False, got 'yes'"),
    (dict(num_threads=0), ValueError, "num_threads must be a positive integer or None, got num_threads=0"),
    (dict(num_threads=1.5), TypeError, "num_threads must be a positive integer or None"),
])
def test_argument_errors(kwargs, error, message):
    args = dict(labels=np.zeros(3), logits=np.zeros(3))
    args.update(kwargs)
    with pytest.raises(error, match=re.escape(message)):
        sigmoid(args.pop("labels"), args.pop("logits"), **args)


# --------------------------------------------------------------------------
# PyTorch and TensorFlow (recorded by tests/data/record_binary.py)
# --------------------------------------------------------------------------

def _recorded(kind):
    if not DATA.exists():
        return []
    return json.loads(DATA.read_text())[kind]


def assert_agrees_with_framework(ours, theirs, x, q, what):
    """|xentc - framework| <= atol + rtol |framework| where the framework is finite.

    Both round in x.dtype, and the frameworks' formulas cancel: PyTorch's
    float64 loss at x = -20, z = 0 is max(-x, 0) + x + ... (off by 3e-7
    relative, an ulp of 20), its gradient at x = 20, z = 1 is 1 - sigmoid(x)
    (off by 6e-8 relative), and in float32 it flushes 2.06e-9 to 0.  So atol
    is a few ulps of the terms, 1 + |x|, times the weight."""
    eps = np.finfo(x.dtype).eps
    weight = 1.0 if q is None else np.maximum(1.0, np.broadcast_to(q, x.shape))
    with np.errstate(invalid="ignore"):
        atol = 4 * eps * weight * (1 + np.abs(x))
        rtol = 2e-6 if x.dtype == F32 else 1e-12
        ok = np.isfinite(theirs)
        bad = ok & ~(np.abs(ours - theirs) <= atol + rtol * np.abs(theirs))
    assert not bad.any(), f"{what}: at {np.argwhere(bad).tolist()}: ours {ours[bad]}, theirs {theirs[bad]}"
    return ok


@pytest.mark.parametrize("case", _recorded("sigmoid"), ids=lambda c: f"{c['name']}-{c['dtype']}")
def test_agrees_with_tensorflow_and_torch(case):
    dtype = np.dtype(case["dtype"])
    x, z = np.array(case["logits"], dtype), np.array(case["labels"], dtype)
    q = None if case["pos_weight"] is None else np.array(case["pos_weight"], dtype)
    loss, grad = sigmoid(z, x, pos_weight=q, return_grad=True)
    for framework, res in case["results"].items():
        for name, ours in (("loss", loss), ("grad", grad)):
            theirs = np.array(res[name], np.float64)
            if framework == "tensorflow" and name == "grad" and q is not None:
                theirs[x == 0] = np.nan  # TensorFlow's weighted gradient is wrong at 0 (see below)
            # where the framework has a number, it is ours
            assert_agrees_with_framework(ours, theirs, x, q, f"{framework} {name}")


def test_where_tensorflow_and_torch_differ():
    cases = [c for c in _recorded("sigmoid") if c["name"] == "special values"]
    if not cases:
        pytest.skip("tests/data/binary_reference.json not recorded")
    case = cases[0]
    x, z = np.array(case["logits"], np.float32), np.array(case["labels"], np.float32)
    loss, grad = sigmoid(z, x, return_grad=True)
    # x = -inf, z = 0 and x = +inf, z = 1: 0 here, NaN in both frameworks (0 * inf)
    assert loss[0] == 0 and loss[1] == 0
    assert np.isnan(case["results"]["tensorflow"]["loss"][:2]).all()
    assert np.isnan(case["results"]["torch"]["loss"][:2]).all()
    # x = -20, z = 0 in float32: 2.06e-9 here and in TensorFlow, 0 in PyTorch;
    # x = 20, z = 1: PyTorch's gradient is 0, ours -2.06e-9
    assert loss[4] == np.float32(case["results"]["tensorflow"]["loss"][4]) > 0
    assert case["results"]["torch"]["loss"][4] == 0.0
    assert case["results"]["torch"]["grad"][5] == 0.0 and grad[5] < 0


def test_tensorflow_weighted_gradient_is_wrong_at_zero():
    # weighted_cross_entropy_with_logits differentiates abs() and relu() with
    # slope 0 at x = 0, so its gradient there is 1 - z instead of
    # (1 - z) / 2 - q z / 2: +0.5 instead of -0.5 for z = 0.5, q = 3 (mpmath: -0.5)
    cases = [c for c in _recorded("sigmoid") if c["name"] == "hand values, pos_weight (C,)"]
    if not cases:
        pytest.skip("tests/data/binary_reference.json not recorded")
    case = cases[0]
    x, z, q = (np.array(case[k], np.float64) for k in ("logits", "labels", "pos_weight"))
    _, grad = sigmoid(z, x, pos_weight=q, return_grad=True)
    at_zero = x == 0
    tf_grad = np.array(case["results"]["tensorflow"]["grad"])
    np.testing.assert_allclose(tf_grad[at_zero], (1 - z)[at_zero], atol=1e-7)
    expected = ((1 - z) / 2 - np.broadcast_to(q, x.shape) * z / 2)[at_zero]
    np.testing.assert_allclose(grad[at_zero], expected, rtol=1e-15)
    np.testing.assert_allclose(np.array(case["results"]["torch"]["grad"])[at_zero], expected, rtol=1e-6)


def test_label_times_pos_weight_that_rounds_to_0_in_float32_still_counts():
    # found by the hypothesis suite: label 2**-149 (the least float32 denormal) times
    # pos_weight 0.5 rounds to 0 in float32, and the "label 1" term was left out as if
    # its weight were 0: the loss at x = -inf was 0 instead of +inf
    x = np.array([-np.inf, -1e38, 2.0], dtype=np.float32)
    z = np.array([2.0**-149, 1e-30, 0.3], dtype=np.float32)
    q = np.array([0.5, 1e-20, 2.0], dtype=np.float32)
    ref, ref_grad = reference.sigmoid_xent(z.astype(np.float64), x.astype(np.float64),
                                           q.astype(np.float64))
    for dtype in (np.float32, np.float64):
        got, grad = xentc.sigmoid_cross_entropy_with_logits(
            z.astype(dtype), x.astype(dtype), pos_weight=q.astype(dtype), return_grad=True)
        assert got[0] == np.inf
        assert_close(got, ref, dtype, what="loss")
        assert_close(grad, ref_grad, dtype, np.abs(ref_grad) + 1, what="grad")
