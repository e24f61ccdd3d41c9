"""xentc against the float64 reference (tests/reference.py).

Two input generators, as the house style asks:
  * hypothesis: shapes (0 rows, leading dimensions), class axes, dtypes
    (float16/32/64, long double, integers, bool; integer dense and sparse labels
    of every width), layouts (C, Fortran, strided, negative strides, read-only,
    memory-mapped, Python lists, byte-swapped), class counts from 1 to 3000 (few
    classes with many rows, and long rows of several blocks), special values
    (NaN, -inf, runs of -inf, one +inf per row), out= / grad_out= / in place;
  * an explicit edge-case list (EDGE_CASES) of the inputs most likely to break.
"""
import numpy as np
import pytest
from hypothesis import assume, given, note, strategies as st
from hypothesis.extra.numpy import array_shapes

import reference
import xentc
from conftest import (F16, F32, F64, INT_DTYPES, LAYOUTS, assert_close, compute_dtype, draw_logit_values,
                      relayout, result_dtype)

FLOAT_DTYPES = [F16, F32, F64]
LOGIT_DTYPES = FLOAT_DTYPES + [np.dtype(np.longdouble), np.dtype(np.int32),
                               np.dtype(np.int8), np.dtype(np.uint16), np.dtype(np.bool_)]
SPECIALS = {"nan": np.nan, "-inf": -np.inf, "+inf": np.inf}


# --------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------

@st.composite
def logits_and_axis(draw, class_axis_last=False, specials=True, dtypes=LOGIT_DTYPES):
    """(logits ndarray, axis): 1 to 3 dimensions, any of them 0 except the class axis."""
    ndim = draw(st.integers(1, 3))
    shape = list(draw(array_shapes(min_dims=ndim, max_dims=ndim, min_side=0, max_side=4)))
    axis = -1 if class_axis_last else draw(st.integers(-ndim, ndim - 1))
    # class counts: a few (rows are processed several at a time, one per SIMD
    # lane, up to 32 classes), more than one vector, and long rows of several
    # blocks (the row kernels work in blocks of 128 vectors)
    n_classes = draw(st.one_of(st.integers(1, 6), st.integers(7, 40), st.integers(41, 3000)))
    shape[axis] = n_classes
    if ndim > 1 and n_classes <= 40 and draw(st.booleans()):
        # enough rows for several full groups of SIMD lanes
        batch_axis = draw(st.sampled_from([i for i in range(ndim) if i != axis % ndim]))
        shape[batch_axis] = draw(st.integers(5, 70))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = draw_logit_values(draw, rng, dtype, shape, small=3.0)
    if specials and dtype.kind == "f" and x.size:
        moved = np.moveaxis(x, axis, -1)  # a view: writes go to x
        n_rows = int(np.prod(moved.shape[:-1]))
        n_cols = moved.shape[-1]
        injections = draw(st.lists(
            st.tuples(st.integers(0, max(n_rows - 1, 0)), st.integers(0, n_cols - 1),
                      st.sampled_from(sorted(SPECIALS) + ["-inf run"]), st.integers(1, n_cols)),
            max_size=4))
        for row, col, kind, length in injections:
            idx = np.unravel_index(row, moved.shape[:-1]) if moved.ndim > 1 else ()
            target = moved[idx] if idx else moved
            if kind == "-inf run":  # masked classes, possibly whole blocks of a long row
                target[col:col + length] = -np.inf
                continue
            if kind == "+inf" and np.isposinf(target).any():
                continue  # several +inf in a row: unspecified
            target[col] = SPECIALS[kind]
    return x, axis


@st.composite
def dense_labels(draw, shape, axis, validate):
    """Labels of the given shape; valid probability rows when validate, else anything."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    moved_shape = np.moveaxis(np.empty(shape), axis, -1).shape
    n_classes = moved_shape[-1]
    n_rows = int(np.prod(moved_shape[:-1]))
    if validate:
        kind = draw(st.sampled_from(["one-hot", "dyadic"]))
        if kind == "one-hot":
            dtype = draw(st.sampled_from(FLOAT_DTYPES + [np.dtype(np.int64), np.dtype(np.uint8),
                                                         np.dtype(np.bool_)]))
            rows = np.zeros((n_rows, n_classes))
            rows[np.arange(n_rows), rng.integers(0, n_classes, size=n_rows)] = 1
        else:
            # multiples of 1/16: exact in every float dtype, so rows sum exactly to 1
            dtype = draw(st.sampled_from(FLOAT_DTYPES))
            p = rng.dirichlet(np.ones(n_classes) * 0.5, size=n_rows) if n_rows else np.zeros((0, n_classes))
            rows = np.array([rng.multinomial(16, r) for r in p]).reshape(n_rows, n_classes) / 16.0
    else:
        dtype = draw(st.sampled_from(FLOAT_DTYPES + [np.dtype(np.int16)]))
        if dtype.kind == "f":
            rows = rng.uniform(-2, 2, size=(n_rows, n_classes))
            rows[rng.random((n_rows, n_classes)) < 0.3] = 0.0
        else:
            rows = rng.integers(-2, 3, size=(n_rows, n_classes)).astype(np.float64)
    y = np.moveaxis(rows.reshape(moved_shape), -1, axis).astype(dtype)
    return y


def loss_shape(shape, axis):
    return tuple(d for i, d in enumerate(shape) if i != axis % len(shape))


def snapshot(a):
    return np.array(np.asarray(a), copy=True)


def assert_unchanged(before, after, name):
    assert np.array_equal(before, np.asarray(after), equal_nan=True), f"{name} was modified"


# --------------------------------------------------------------------------
# hypothesis: the softmax family
# --------------------------------------------------------------------------

@given(data=st.data(), la=logits_and_axis(), layout=st.sampled_from(LAYOUTS))
def test_softmax_family_matches_reference(data, la, layout, memmap_dir):
    x, axis = la
    xin = relayout(x, layout, memmap_dir)
    xa = snapshot(xin)
    rd = result_dtype(xa.dtype)
    x64 = xa.astype(np.float64)
    note(f"logits {xa.dtype} {xa.shape} axis={axis} layout={layout}")

    lse = xentc.logsumexp(xin, axis)
    assert np.asarray(lse).shape == loss_shape(xa.shape, axis)
    assert_close(lse, reference.logsumexp(x64, axis), rd,
                 reference.error_scale_logsumexp(x64, axis), "logsumexp")

    mode = data.draw(st.sampled_from(["new", "out", "in place"]), label="out mode")
    for name, ref, scale in [
        ("softmax", reference.softmax(x64, axis), None),
        ("log_softmax", reference.log_softmax(x64, axis), reference.error_scale_log_softmax(x64, axis)),
    ]:
        fn = getattr(xentc, name)
        if mode == "new":
            got = fn(xin, axis)
            assert_unchanged(xa, xin, "logits")
        elif mode == "out":
            out = np.full(xa.shape, 7, dtype=rd)
            got = fn(xin, axis, out=out)
            assert got is out
            assert_unchanged(xa, xin, "logits")
        else:
            inp = np.array(xa, dtype=rd, order="C")  # C-contiguous, writeable, result dtype
            got = fn(inp, axis, out=inp)
            assert got is inp
        assert_close(got, ref, rd, scale, name)


# --------------------------------------------------------------------------
# hypothesis: dense labels
# --------------------------------------------------------------------------

@given(data=st.data(), la=logits_and_axis(), validate=st.booleans(),
       layouts=st.tuples(st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS)))
def test_dense_matches_reference(data, la, validate, layouts, memmap_dir):
    x, axis = la
    y = data.draw(dense_labels(x.shape, axis, validate), label="labels")
    grad_mode = data.draw(st.sampled_from(["none", "return_grad", "grad_out", "in place"]),
                          label="grad mode")
    use_out = data.draw(st.booleans(), label="out")
    xin = relayout(x, layouts[0], memmap_dir)
    yin = relayout(y, layouts[1], memmap_dir)
    xa, ya = snapshot(xin), snapshot(yin)
    rd, cd = result_dtype(xa.dtype), compute_dtype(xa.dtype)
    note(f"logits {xa.dtype} {xa.shape} axis={axis} labels {ya.dtype} layouts={layouts}")

    x64 = xa.astype(np.float64)
    y64 = ya.astype(cd).astype(np.float64)  # labels are converted to the computation dtype
    ref_loss, ref_grad = reference.dense_xent(y64, x64, axis)

    kwargs = {"validate_labels": validate}
    if use_out:
        kwargs["out"] = out = np.full(loss_shape(xa.shape, axis), 7, dtype=rd)
    if grad_mode == "return_grad":
        kwargs["return_grad"] = True
    elif grad_mode == "grad_out":
        kwargs["grad_out"] = grad_out = np.full(xa.shape, 7, dtype=rd)
    elif grad_mode == "in place":
        xin = grad_out = np.array(xa, dtype=rd, order="C")
        kwargs["grad_out"] = grad_out
    res = xentc.softmax_cross_entropy_with_logits(yin, xin, axis, **kwargs)

    if grad_mode == "none":
        loss = res
    else:
        loss, grad = res
        if grad_mode in ("grad_out", "in place"):
            assert grad is grad_out
        assert_close(grad, ref_grad, rd, reference.error_scale_dense_grad(y64, x64, axis), "grad")
    if use_out:
        assert loss is out
    assert np.asarray(loss).shape == loss_shape(xa.shape, axis)
    assert_close(loss, ref_loss, rd, reference.error_scale_dense_loss(y64, x64, axis), "loss")
    assert_unchanged(ya, yin, "labels")
    if grad_mode != "in place":
        assert_unchanged(xa, xin, "logits")


# --------------------------------------------------------------------------
# hypothesis: sparse labels
# --------------------------------------------------------------------------

@given(data=st.data(), la=logits_and_axis(class_axis_last=True),
       label_dtype=st.sampled_from(INT_DTYPES),
       layouts=st.tuples(st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS)))
def test_sparse_matches_reference(data, la, label_dtype, layouts, memmap_dir):
    x, _ = la
    n_classes = x.shape[-1]
    assume(n_classes <= np.iinfo(label_dtype).max + 1)
    seed = data.draw(st.integers(0, 2**32 - 1), label="label seed")
    lab = np.random.default_rng(seed).integers(0, n_classes, size=x.shape[:-1]).astype(label_dtype)
    grad_mode = data.draw(st.sampled_from(["none", "return_grad", "grad_out", "in place"]),
                          label="grad mode")
    use_out = data.draw(st.booleans(), label="out")
    xin = relayout(x, layouts[0], memmap_dir)
    lin = relayout(lab, layouts[1], memmap_dir)
    xa, la_ = snapshot(xin), snapshot(lin)
    rd = result_dtype(xa.dtype)
    note(f"logits {xa.dtype} {xa.shape} labels {la_.dtype} layouts={layouts}")

    x64 = xa.astype(np.float64)
    ref_loss, ref_grad = reference.sparse_xent(lab, x64)
    loss_scale = reference.error_scale_sparse_loss(lab, x64)
    onehot = np.zeros(x64.shape)
    np.put_along_axis(onehot, lab.astype(np.int64)[..., None], 1.0, axis=-1)

    kwargs = {}
    if use_out:
        kwargs["out"] = out = np.full(xa.shape[:-1], 7, dtype=rd)
    if grad_mode == "return_grad":
        kwargs["return_grad"] = True
    elif grad_mode == "grad_out":
        kwargs["grad_out"] = grad_out = np.full(xa.shape, 7, dtype=rd)
    elif grad_mode == "in place":
        xin = grad_out = np.array(xa, dtype=rd, order="C")
        kwargs["grad_out"] = grad_out
    res = xentc.sparse_softmax_cross_entropy_with_logits(lin, xin, **kwargs)

    if grad_mode == "none":
        loss = res
    else:
        loss, grad = res
        if grad_mode in ("grad_out", "in place"):
            assert grad is grad_out
        assert_close(grad, ref_grad, rd, np.abs(ref_grad) + onehot, "grad")
    if use_out:
        assert loss is out
    assert np.asarray(loss).shape == xa.shape[:-1]
    assert_close(loss, ref_loss, rd, loss_scale, "loss")
    assert_unchanged(la_, lin, "labels")
    if grad_mode != "in place":
        assert_unchanged(xa, xin, "logits")


# --------------------------------------------------------------------------
# the explicit edge-case list
# --------------------------------------------------------------------------

def _edge_cases():
    inf, nan = np.inf, np.nan
    cases = {
        "nan row among finite rows": [[1.0, 2.0, 3.0], [1.0, nan, 3.0], [0.5, 0.5, 0.5]],
        "nan first": [[nan, 2.0, 3.0], [1.0, 2.0, 3.0]],
        "nan last after +inf": [[inf, 2.0, nan], [1.0, 2.0, 3.0]],
        "all -inf row": [[-inf, -inf, -inf], [1.0, 2.0, 3.0]],
        "masked logits": [[-inf, 0.0, 1.0], [2.0, -inf, -inf]],
        "one +inf": [[1.0, inf, 3.0], [-inf, inf, 0.0]],
        "one class": [[3.0], [-inf], [nan], [inf]],
        "huge float64": [[1e308, -1e308, 1e308], [-1e308, -1e308, -1e308]],
        "tiny differences": [[1e-300, 0.0, -1e-300], [5e-324, 0.0, 0.0]],
        "ties": [[2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 1.0, 0.0]],
    }
    out = []
    for name, rows in cases.items():
        arr = np.array(rows)
        for dtype in (F32, F64):
            if name in ("huge float64", "tiny differences") and dtype == F32:
                continue
            out.append(pytest.param(arr.astype(dtype), id=f"{name}-{dtype}"))
    half = np.array([[1.0, 2.0, 3.0], [60000.0, 0.0, -60000.0], [np.nan, 0.0, 0.0], [-np.inf] * 3])
    out.append(pytest.param(half.astype(F16), id="float16 with huge values"))
    bs = np.array([[1.0, 2.0, 3.0], [4.0, -np.inf, 5.0]])
    out.append(pytest.param(bs.astype(">f8"), id="byte-swapped float64"))
    out.append(pytest.param(bs.astype(">f4"), id="byte-swapped float32"))
    out.append(pytest.param(bs.astype("<f2").astype(">f2"), id="byte-swapped float16"))
    out.append(pytest.param(np.arange(24.0).reshape(2, 3, 4).transpose(2, 0, 1), id="transposed 3-d"))
    out.append(pytest.param(np.asfortranarray(np.arange(12.0).reshape(3, 4) % 5), id="fortran"))
    out.append(pytest.param(np.zeros((0, 5), F32), id="zero rows"))
    out.append(pytest.param(np.zeros((2, 0, 5)), id="zero leading dim"))
    out.append(pytest.param(np.arange(10.0)[::-3].reshape(2, 2), id="negative stride"))
    out.append(pytest.param(np.array([[1, -2, 3], [0, 0, 0]], dtype=np.int64), id="int64 logits"))
    out.append(pytest.param(np.array([[True, False]]), id="bool logits"))
    out.append(pytest.param(np.array([[1.5, 2.5, -1.0]], dtype=np.longdouble), id="longdouble logits"))
    return out


EDGE_CASES = _edge_cases()


def _read_only_memmap(x, directory, name):
    path = directory / f"{name}.bin"
    w = np.memmap(path, dtype=x.dtype, mode="w+", shape=x.shape)
    w[...] = x
    w.flush()
    del w
    return np.memmap(path, dtype=x.dtype, mode="r", shape=x.shape)


@pytest.mark.parametrize("x", EDGE_CASES)
@pytest.mark.parametrize("layout", ["array", "read-only", "read-only memmap"])
def test_edge_cases_match_reference(x, layout, tmp_path):
    if layout == "read-only memmap" and x.size:
        xin = _read_only_memmap(x, tmp_path, "logits")
    elif layout == "array":
        xin = x
    else:  # read-only, also for zero-size arrays (an empty file cannot be mapped)
        xin = x.copy()
        xin.flags.writeable = False
    rd = result_dtype(x.dtype)
    x64 = np.asarray(x, dtype=np.float64)
    n_classes = x.shape[-1]
    if rd == F16:
        # results beyond float16's range (120000 here) round to -inf when cast
        # to float16; NumPy's cast may warn about that, which is not the point here
        with np.errstate(over="ignore"):
            _check_edge_case(x, xin, rd, x64, n_classes)
    else:
        _check_edge_case(x, xin, rd, x64, n_classes)


def _check_edge_case(x, xin, rd, x64, n_classes):
    assert_close(xentc.softmax(xin), reference.softmax(x64), rd, None, "softmax")
    assert_close(xentc.log_softmax(xin), reference.log_softmax(x64), rd,
                 reference.error_scale_log_softmax(x64), "log_softmax")
    assert_close(xentc.logsumexp(xin), reference.logsumexp(x64), rd,
                 reference.error_scale_logsumexp(x64), "logsumexp")
    # sparse: every class in turn
    for label in range(n_classes):
        lab = np.full(x.shape[:-1], label, dtype=np.int32)
        loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(lab, xin, return_grad=True)
        ref_loss, ref_grad = reference.sparse_xent(lab, x64)
        assert_close(loss, ref_loss, rd, reference.error_scale_sparse_loss(lab, x64),
                     f"sparse loss, label {label}")
        assert_close(grad, ref_grad, rd, np.abs(ref_grad) + 1, f"sparse grad, label {label}")
    # dense: one-hot at each class, and a uniform row
    eye = np.eye(n_classes)
    for label in list(range(n_classes)) + [None]:
        row = np.full(n_classes, 1.0 / n_classes) if label is None else eye[label]
        y = np.broadcast_to(row, x.shape).astype(compute_dtype(x.dtype))
        loss, grad = xentc.softmax_cross_entropy_with_logits(y, xin, return_grad=True)
        ref_loss, ref_grad = reference.dense_xent(y.astype(np.float64), x64)
        assert_close(loss, ref_loss, rd, reference.error_scale_dense_loss(y, x64), f"dense loss, {label}")
        assert_close(grad, ref_grad, rd, reference.error_scale_dense_grad(y, x64), f"dense grad, {label}")
    assert np.array_equal(np.asarray(xin), x, equal_nan=True)
