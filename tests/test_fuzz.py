"""Differential fuzzing: every public function against the float64 reference, the
documented special-value semantics, and itself with another thread count.

hypothesis draws
  * shapes: 1 to 3 dimensions, 0 rows, 1 class, few classes with many rows (the
    SIMD row groups), long rows of several blocks, very wide rows (up to 40000
    classes), and inputs large enough that `num_threads=2` really starts two
    threads on two or more chunks of rows;
  * class axes, dtypes (float16/32/64, long double, integer and bool logits;
    integer and bool dense labels; every integer width of class indices),
    layouts (`conftest.relayout`: C, Fortran, strided, negative strides,
    read-only, memory-mapped, Python lists, byte-swapped);
  * special values: NaN, +-inf (several +inf in a row too), runs of -inf, whole
    rows of -inf, +-1e30 (+-6e4 in float16), subnormals, also sprinkled over
    whole inputs;
  * options: where=, out=, grad_out= (a separate array, or the logits in place),
    return_grad, return_lse, validate_labels, weights, ignore_index, reductions,
    label smoothing, pos_weight, epsilon, from_logits, top_k, batch_rows.

Every call runs with num_threads=1 and num_threads=2 and the two results must be
the same bits (dtype, shape and bytes, so also the sign of zeros and NaN
payloads); the first is compared with tests/reference.py with the tolerances
of conftest.assert_close, and checked against the README's special-value rules
(`check_special_rows`, written from the README rather than from the reference).

tests/test_reference.py already compares the softmax family and the two losses
with the reference on most of these layouts; this module adds the thread
comparison, the other public functions, where= with special values, wide and
threaded shapes, and the values the other generators leave out (+-1e30,
subnormals, several +inf).  Memory maps go to a temporary directory per
example, removed at its end.
"""
import contextlib
import math
import struct
import tempfile

import numpy as np
from hypothesis import given, note, strategies as st
from hypothesis.extra.numpy import array_shapes

import reference
import xentc
from conftest import (F16, F32, F64, INT_DTYPES, LAYOUTS, assert_close, compute_dtype, draw_logit_values,
                      relayout, result_dtype)

FLOAT_DTYPES = [F16, F32, F64]
# floats more often than the others
LOGIT_DTYPES = FLOAT_DTYPES * 3 + [np.dtype(np.longdouble), np.dtype(np.int8), np.dtype(np.int32),
                                   np.dtype(np.uint64), np.dtype(np.bool_)]
THREADS = (1, 2)
# kernels: a thread gets at least 2**15 elements, and a prange chunk is about
# 2**14 elements or 16 rows (_kernels.pyx: team_size, chunk_rows)
MIN_ELEMENTS_PER_THREAD = 1 << 15


def chunk_rows(n_classes):
    rows = ((1 << 14) // n_classes + 15) // 16 * 16
    return max(rows, 16)


# --------------------------------------------------------------------------
# running twice: num_threads 1 and 2, the same bits
# --------------------------------------------------------------------------

def _bits(result):
    """Something == compares bit for bit: dtype, shape and bytes of arrays and scalars."""
    if isinstance(result, tuple):
        return tuple(_bits(r) for r in result)
    if isinstance(result, xentc.ScoreResult):
        return _bits(tuple(sorted(result.to_dict().items(), key=lambda kv: kv[0])))
    if isinstance(result, dict):
        return _bits(tuple(sorted(result.items())))
    if isinstance(result, str):
        return result
    if isinstance(result, float):
        return ("float", struct.pack("<d", result))
    if isinstance(result, int):
        return ("int", result)
    a = np.asarray(result)
    return (type(result).__name__, a.dtype.str, a.shape, a.tobytes())


def twice(call):
    """call(num_threads) for num_threads 1 and 2: the results must be the same bits.
    Returns the first result.  `call` must make fresh outputs (and in-place
    inputs) each time."""
    first = call(THREADS[0])
    second = call(THREADS[1])
    assert _bits(first) == _bits(second), (
        f"num_threads={THREADS[0]} and num_threads={THREADS[1]} differ: {first!r} vs {second!r}")
    return first


def grad_mode_args(grad_mode, xin, xa, rd, kwargs):
    """The logits to pass and kwargs for one gradient mode: "none", "return_grad",
    "grad_out" (a fresh array of 7s) or "in place" (grad_out= a fresh copy of the
    logits, passed as the logits too)."""
    if grad_mode == "return_grad":
        kwargs["return_grad"] = True
    elif grad_mode == "grad_out":
        kwargs["grad_out"] = np.full(xa.shape, 7, dtype=rd)
    elif grad_mode == "in place":
        xin = kwargs["grad_out"] = np.array(xa, dtype=rd, order="C")
    return xin


@contextlib.contextmanager
def scratch():
    """A directory for the memory maps of one example (hypothesis examples may
    not use function-scoped fixtures; a per-example directory keeps a long
    `thorough` run from filling /tmp)."""
    with tempfile.TemporaryDirectory(prefix="xentc-fuzz-") as d:
        yield d


def snapshot(a):
    return np.array(np.asarray(a), copy=True)


def assert_unchanged(before, after, name):
    after = np.asarray(after)
    assert before.dtype == after.dtype, f"{name}: dtype {after.dtype}, was {before.dtype}"
    if before.dtype.kind == "f" and before.dtype.itemsize > 8:
        # long double: x87's 10 bytes padded to 16, the padding is not data
        assert np.array_equal(before, after, equal_nan=True), f"{name} was modified"
    else:
        assert before.tobytes() == np.ascontiguousarray(after).tobytes(), f"{name} was modified"


def close(got, ref, rdtype, scale=None, what="result"):
    """conftest.assert_close, with NaN in the error scale read as 0: a scale is NaN
    where a term is NaN (a NaN label times a probability 0, a NaN logit of an
    ignored row), and a finite result there must then be exact."""
    if scale is not None:
        scale = np.nan_to_num(np.asarray(scale, dtype=np.float64), nan=0.0, posinf=np.inf)
    assert_close(got, ref, rdtype, scale, what)


def loss_shape(shape, axis):
    return tuple(d for i, d in enumerate(shape) if i != axis % len(shape))


def moved_rows(a, axis):
    """a with the class axis last, as (n_rows, C) rows."""
    a = np.asarray(a)
    moved = np.moveaxis(a, axis, -1)
    return moved.reshape(-1, moved.shape[-1])


# --------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------

SIZES = ["small", "small", "rows", "wide", "very wide", "threaded"]


@st.composite
def shapes(draw, class_axis_last=False, min_ndim=1):
    """(shape, axis, size kind)."""
    ndim = draw(st.integers(min_ndim, 3))
    axis = -1 if class_axis_last else draw(st.integers(-ndim, ndim - 1))
    ax = axis % ndim
    batch_axes = [i for i in range(ndim) if i != ax]
    size = draw(st.sampled_from(SIZES))
    if not batch_axes and size in ("rows", "threaded"):
        size = "small"
    if size == "small":
        shape = list(draw(array_shapes(min_dims=ndim, max_dims=ndim, min_side=0, max_side=4)))
        shape[ax] = draw(st.integers(1, 40))
    elif size == "rows":  # few classes, several groups of SIMD lanes
        shape = [draw(st.integers(1, 3)) for _ in range(ndim)]
        shape[draw(st.sampled_from(batch_axes))] = draw(st.integers(5, 200))
        shape[ax] = draw(st.integers(1, 40))
    elif size == "wide":  # rows of several blocks
        shape = [draw(st.integers(0, 3)) for _ in range(ndim)]
        shape[ax] = draw(st.integers(41, 3000))
    elif size == "very wide":  # one or two very long rows
        shape = [1] * ndim
        if batch_axes and draw(st.booleans()):
            shape[draw(st.sampled_from(batch_axes))] = 2
        shape[ax] = draw(st.integers(3001, 40000))
    else:  # threaded: two threads, each on at least one chunk of rows
        n_classes = draw(st.one_of(st.integers(1, 16), st.integers(17, 300), st.integers(301, 2048)))
        n_rows = max(2 * chunk_rows(n_classes) + 1,
                     -(-2 * MIN_ELEMENTS_PER_THREAD // n_classes)) + draw(st.integers(0, 40))
        shape = [1] * ndim
        split = draw(st.sampled_from([1, 2, 3])) if len(batch_axes) > 1 else 1
        shape[batch_axes[0]] = -(-n_rows // split)
        if split > 1:
            shape[batch_axes[1]] = split
        shape[ax] = n_classes
    return tuple(shape), axis, size


SPECIAL_KINDS = ["nan", "-inf", "+inf", "-inf run", "-inf row", "+big", "-big", "subnormal", "sprinkle"]


def _big(dtype):
    return 6e4 if dtype == F16 else 1e30


@st.composite
def logits_case(draw, class_axis_last=False, dtypes=LOGIT_DTYPES, specials=True, min_ndim=1):
    """(logits ndarray, axis, size kind)."""
    shape, axis, size = draw(shapes(class_axis_last, min_ndim))
    dtype = draw(st.sampled_from(dtypes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = draw_logit_values(draw, rng, dtype, shape, small=1.0)
    if specials and dtype.kind == "f" and x.size:
        inject_specials(draw, rng, x, axis)
    return x, axis, size


def inject_specials(draw, rng, x, axis):
    """Special values into x (in place), along rows of the class axis."""
    dtype = x.dtype
    moved = np.moveaxis(x, axis, -1)  # a view: writes go to x
    n_rows, n_cols = int(np.prod(moved.shape[:-1])), moved.shape[-1]
    tiny = float(np.finfo(dtype).smallest_subnormal)
    injections = draw(st.lists(
        st.tuples(st.integers(0, max(n_rows - 1, 0)), st.integers(0, n_cols - 1),
                  st.sampled_from(SPECIAL_KINDS), st.integers(1, n_cols)), max_size=5))
    for row, col, kind, length in injections:
        idx = np.unravel_index(row, moved.shape[:-1]) if moved.ndim > 1 else ()
        target = moved[idx] if idx else moved
        if kind == "nan":
            target[col] = np.nan
        elif kind == "-inf":
            target[col] = -np.inf
        elif kind == "+inf":
            target[col] = np.inf
        elif kind == "-inf run":  # masked classes, possibly whole blocks of a long row
            target[col:col + length] = -np.inf
        elif kind == "-inf row":
            target[...] = -np.inf
        elif kind == "+big":
            target[col] = _big(dtype)
        elif kind == "-big":
            target[col] = -_big(dtype)
        elif kind == "subnormal":
            target[col:col + length] = tiny * rng.integers(-3, 4, size=len(target[col:col + length]))
        else:  # sprinkle: about 1% of all elements, a NaN, +-inf, a big value or a subnormal
            flat = x.reshape(-1)
            hit = rng.random(flat.size) < 0.01
            choice = np.array([np.nan, -np.inf, np.inf, _big(dtype), -_big(dtype), tiny], dtype=dtype)
            flat[hit] = choice[rng.integers(0, len(choice), size=int(hit.sum()))]


@st.composite
def where_masks(draw, shape, axis):
    """None, or a bool mask broadcastable to shape: full, per class, per row, or a scalar."""
    kind = draw(st.sampled_from(["none", "none", "full", "classes", "rows", "scalar"]))
    if kind == "none":
        return None
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = draw(st.sampled_from([0.1, 0.5, 0.9, 1.0]))
    ax = axis % len(shape)
    if kind == "full":
        m_shape = shape
    elif kind == "classes":  # one row of classes for every row: (C,) or (C, 1, ...)
        m_shape = tuple(d if i == ax else 1 for i, d in enumerate(shape))[ax if draw(st.booleans()) else 0:]
    elif kind == "rows":  # whole rows in or out
        m_shape = tuple(1 if i == ax else d for i, d in enumerate(shape))
    else:
        return np.bool_(draw(st.booleans()))
    w = rng.random(m_shape) < p
    if draw(st.booleans()) and w.ndim >= 2:
        w = np.asfortranarray(w)
    return w


@st.composite
def dense_labels(draw, shape, axis, validate):
    """Labels of the given shape: valid probability rows when validate (one-hot of
    float, integer or bool dtype, or multiples of 1/16 in float), else anything
    (any sign, zeros, a few NaN; float or int16)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    moved_shape = np.moveaxis(np.empty(shape, dtype=np.uint8), axis, -1).shape
    n_classes, n_rows = moved_shape[-1], math.prod(moved_shape[:-1])
    if validate:
        kind = draw(st.sampled_from(["one-hot", "dyadic"]))
        if kind == "one-hot":
            dtype = draw(st.sampled_from(FLOAT_DTYPES + [np.dtype(np.int8), np.dtype(np.uint8),
                                                         np.dtype(np.int64), np.dtype(np.bool_)]))
            rows = np.zeros((n_rows, n_classes))
            rows[np.arange(n_rows), rng.integers(0, n_classes, size=n_rows)] = 1
        else:  # exact in every float dtype: the rows sum exactly to 1
            dtype = draw(st.sampled_from(FLOAT_DTYPES))
            rows = np.zeros((n_rows, n_classes))
            for _ in range(16):
                rows[np.arange(n_rows), rng.integers(0, n_classes, size=n_rows)] += 1 / 16
    else:
        dtype = draw(st.sampled_from(FLOAT_DTYPES + [np.dtype(np.int16)]))
        if dtype.kind == "f":
            rows = rng.uniform(-2, 2, size=(n_rows, n_classes))
            rows[rng.random((n_rows, n_classes)) < 0.3] = 0.0
            if draw(st.booleans()):
                rows[rng.random((n_rows, n_classes)) < 0.01] = np.nan
        else:
            rows = rng.integers(-2, 3, size=(n_rows, n_classes)).astype(np.float64)
    return np.moveaxis(rows.reshape(moved_shape), -1, axis).astype(dtype)


def class_labels(rng, batch_shape, n_classes, dtype):
    """Integer class indices in [0, C) (and within the dtype's range)."""
    hi = min(n_classes, int(np.iinfo(dtype).max) + 1)
    return rng.integers(0, hi, size=batch_shape).astype(dtype)


# --------------------------------------------------------------------------
# the README's special-value rules, checked directly (not through the reference)
# --------------------------------------------------------------------------

def row_kinds(x64_rows):
    """Per row: 'nan' (a NaN), 'empty' (only -inf), 'inf' (one or more +inf, no NaN), else 'finite'."""
    nan = np.isnan(x64_rows).any(axis=1)
    empty = (x64_rows == -np.inf).all(axis=1) & ~nan
    posinf = (x64_rows == np.inf).any(axis=1) & ~nan
    return nan, empty, posinf


def check_special_rows(x, axis, *, softmax=None, log_softmax=None, lse=None, sparse=None,
                       dense_labels_rows=None, dense=None):
    """The README's 'Special values stay in their row' for the results given
    (rows of the class axis, float64): a NaN logit makes its row's results NaN
    (logsumexp too); a row of only -inf has NaN loss, gradient, softmax and
    log-softmax and logsumexp -inf; +inf logits share all the probability
    (softmax 1/k there, logsumexp +inf, sparse loss finite at a +inf label and
    +inf at any other); a finite row has a finite softmax, log-softmax and
    logsumexp.  sparse = (labels, loss, grad), dense = (loss, grad) with
    dense_labels_rows the labels as rows (only rows whose labels are >= 0)."""
    rows = moved_rows(np.asarray(x, dtype=np.float64), axis)
    nan, empty, posinf = row_kinds(rows)
    finite = np.isfinite(rows).all(axis=1)
    n_inf = (rows == np.inf).sum(axis=1)

    def per_row(values):
        return moved_rows(np.asarray(values, dtype=np.float64), axis)

    def per_loss(values):
        return np.asarray(values, dtype=np.float64).reshape(-1)

    if softmax is not None:
        p = per_row(softmax)
        assert np.isnan(p[nan | empty]).all(), "softmax of a NaN or all -inf row is not NaN"
        assert np.isfinite(p[finite]).all(), "softmax of a finite row is not finite"
        ip = p[posinf]
        k = n_inf[posinf][:, None]
        expected = np.where(rows[posinf] == np.inf, 1.0 / np.maximum(k, 1), 0.0)
        assert np.allclose(ip, expected, rtol=1e-3, atol=0), "+inf logits do not share the probability"
    if log_softmax is not None:
        lp = per_row(log_softmax)
        assert np.isnan(lp[nan | empty]).all(), "log_softmax of a NaN or all -inf row is not NaN"
        if np.asarray(log_softmax).dtype != F16:  # float16: -1.2e5 is -inf
            assert np.isfinite(lp[finite]).all(), "log_softmax of a finite row is not finite"
        assert (lp[posinf][rows[posinf] != np.inf] == -np.inf).all(), \
            "log_softmax next to +inf is not -inf"
    if lse is not None:
        v = per_loss(lse)
        assert np.isnan(v[nan]).all(), "logsumexp of a NaN row is not NaN"
        assert (v[empty] == -np.inf).all(), "logsumexp of an all -inf row is not -inf"
        assert (v[posinf] == np.inf).all(), "logsumexp of a row with +inf is not +inf"
    if sparse is not None:
        labels, loss, grad = sparse
        lab = np.asarray(labels).reshape(-1).astype(np.int64)
        loss = per_loss(loss)
        assert np.isnan(loss[nan | empty]).all(), "sparse loss of a NaN or all -inf row is not NaN"
        if grad is not None:
            assert np.isnan(per_row(grad)[nan | empty]).all(), "sparse gradient of a NaN row is not NaN"
        at = rows[np.arange(rows.shape[0]), lab]
        hit = posinf & (at == np.inf)
        miss = posinf & (at != np.inf)
        assert np.isfinite(loss[hit]).all() and (loss[hit] >= 0).all(), "loss at a +inf label"
        assert (loss[miss] == np.inf).all(), "loss of a label next to +inf is not +inf"
    if dense is not None:
        loss, grad = dense
        loss = per_loss(loss)
        assert np.isnan(loss[nan | empty]).all(), "dense loss of a NaN or all -inf row is not NaN"
        if grad is not None:
            assert np.isnan(per_row(grad)[nan | empty]).all(), "dense gradient of a NaN row is not NaN"
        if dense_labels_rows is not None:
            y = dense_labels_rows
            ok = ~nan & ~empty & (y >= 0).all(axis=1)
            # 0 * log 0 = 0: a label 0 on -inf adds nothing; a positive label on -inf gives +inf
            on_masked = ((rows == -np.inf) & (y > 0)).any(axis=1)
            assert (loss[ok & on_masked & ~posinf] == np.inf).all(), "positive label on -inf is not +inf"
            plain = ok & ~on_masked & ~posinf
            if np.asarray(dense[0]).dtype != F16:  # float16: a loss of 1.2e5 is +inf
                assert np.isfinite(loss[plain]).all(), "a label 0 on -inf does not drop out"


# --------------------------------------------------------------------------
# softmax, log_softmax, logsumexp
# --------------------------------------------------------------------------

@given(data=st.data(), case=logits_case(), layout=st.sampled_from(LAYOUTS),
       mode=st.sampled_from(["new", "out", "in place"]))
def test_softmax_family(data, case, layout, mode):
    x, axis, size = case
    where = data.draw(where_masks(x.shape, axis), label="where")
    with scratch() as d:
        xin = relayout(x, layout, d)
        xa = snapshot(xin)
        rd = result_dtype(xa.dtype)
        note(f"logits {xa.dtype} {xa.shape} axis={axis} {size} layout={layout} mode={mode} "
             f"where={None if where is None else np.shape(where)}")
        x64 = xa.astype(np.float64)

        lse = twice(lambda nt: xentc.logsumexp(xin, axis, where=where, num_threads=nt))
        assert np.shape(lse) == loss_shape(xa.shape, axis)
        if where is None:
            close(lse, reference.logsumexp(x64, axis), rd,
                         reference.error_scale_logsumexp(x64, axis), "logsumexp")
            check_special_rows(x64, axis, lse=lse)
        else:
            xs = np.where(np.broadcast_to(where, x64.shape), x64, -np.inf)
            close(lse, reference.where_logsumexp(x64, where, axis), rd,
                         reference.error_scale_logsumexp(xs, axis), "logsumexp with where")

        for name in ("softmax", "log_softmax"):
            fn = getattr(xentc, name)

            def call(nt):
                if mode == "new":
                    return fn(xin, axis, where=where, num_threads=nt)
                if mode == "out":
                    out = np.full(xa.shape, 7, dtype=rd)
                    got = fn(xin, axis, out=out, where=where, num_threads=nt)
                    assert got is out
                    return got
                inp = np.array(xa, dtype=rd, order="C")  # C-contiguous, writeable, the result dtype
                got = fn(inp, axis, out=inp, where=where, num_threads=nt)
                assert got is inp
                return got

            got = twice(call)
            assert got.shape == xa.shape
            if where is None:
                ref = getattr(reference, name)(x64, axis)
                scale = None if name == "softmax" else reference.error_scale_log_softmax(x64, axis)
                close(got, ref, rd, scale, name)
                check_special_rows(x64, axis, **{name: got})
            else:
                ref = getattr(reference, f"where_{name}")(x64, where, axis)
                xs = np.where(np.broadcast_to(where, x64.shape), x64, -np.inf)
                scale = None if name == "softmax" else reference.error_scale_log_softmax(xs, axis)
                close(got, ref, rd, scale, f"{name} with where")
        assert_unchanged(xa, xin, "logits")


# --------------------------------------------------------------------------
# softmax_cross_entropy_with_logits
# --------------------------------------------------------------------------

@given(data=st.data(), case=logits_case(), validate=st.booleans(),
       layouts=st.tuples(st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS)),
       grad_mode=st.sampled_from(["none", "return_grad", "grad_out", "in place"]),
       use_out=st.booleans(), return_lse=st.booleans())
def test_dense(data, case, validate, layouts, grad_mode, use_out, return_lse):
    x, axis, size = case
    y = data.draw(dense_labels(x.shape, axis, validate), label="labels")
    where = data.draw(where_masks(x.shape, axis), label="where")
    with scratch() as d:
        xin = relayout(x, layouts[0], d)
        yin = relayout(y, layouts[1], d)
        xa, ya = snapshot(xin), snapshot(yin)
        rd, cd = result_dtype(xa.dtype), compute_dtype(xa.dtype)
        note(f"logits {xa.dtype} {xa.shape} axis={axis} {size} labels {ya.dtype} layouts={layouts} "
             f"validate={validate} grad={grad_mode} out={use_out} lse={return_lse} "
             f"where={None if where is None else np.shape(where)}")
        x64 = xa.astype(np.float64)
        y64 = ya.astype(cd).astype(np.float64)  # labels are converted to the computation dtype

        def call(nt):
            kwargs = {"validate_labels": validate, "return_lse": return_lse, "where": where,
                      "num_threads": nt}
            if use_out:
                kwargs["out"] = np.full(loss_shape(xa.shape, axis), 7, dtype=rd)
            xx = grad_mode_args(grad_mode, xin, xa, rd, kwargs)
            res = xentc.softmax_cross_entropy_with_logits(yin, xx, axis, **kwargs)
            res = res if isinstance(res, tuple) else (res,)
            if use_out:
                assert res[0] is kwargs["out"]
            if grad_mode in ("grad_out", "in place"):
                assert res[1] is kwargs["grad_out"]
            return res

        res = list(twice(call))
        loss = res.pop(0)
        grad = res.pop(0) if grad_mode != "none" else None
        lse = res.pop(0) if return_lse else None
        assert np.shape(loss) == loss_shape(xa.shape, axis)

        if where is None:
            ref_loss, ref_grad = reference.dense_xent(y64, x64, axis)
            ref_lse = reference.logsumexp(x64, axis)
            xs, ys = x64, y64
        else:
            ref_loss, ref_grad = reference.where_dense_xent(y64, x64, where, axis)
            ref_lse = reference.where_logsumexp(x64, where, axis)
            w = np.broadcast_to(where, x64.shape)
            xs, ys = np.where(w, x64, -np.inf), np.where(w, y64, 0.0)
        close(loss, ref_loss, rd, reference.error_scale_dense_loss(ys, xs, axis),
                     "loss")
        if grad is not None:
            close(grad, ref_grad, rd, reference.error_scale_dense_grad(ys, xs, axis),
                         "grad")
        if lse is not None:
            close(lse, ref_lse, rd, reference.error_scale_logsumexp(xs, axis), "lse")
        if where is None:
            check_special_rows(x64, axis, lse=lse, dense=(loss, grad),
                               dense_labels_rows=moved_rows(y64, axis))
        assert_unchanged(ya, yin, "labels")
        assert_unchanged(xa, xin, "logits")


# --------------------------------------------------------------------------
# sparse_softmax_cross_entropy_with_logits
# --------------------------------------------------------------------------

@given(data=st.data(), case=logits_case(class_axis_last=True), label_dtype=st.sampled_from(INT_DTYPES),
       layouts=st.tuples(st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS)),
       grad_mode=st.sampled_from(["none", "return_grad", "grad_out", "in place"]),
       use_out=st.booleans(), return_lse=st.booleans())
def test_sparse(data, case, label_dtype, layouts, grad_mode, use_out, return_lse):
    x, _, size = case
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="label seed"))
    lab = class_labels(rng, x.shape[:-1], x.shape[-1], label_dtype)
    where = data.draw(where_masks(x.shape, -1), label="where")
    with scratch() as d:
        xin = relayout(x, layouts[0], d)
        lin = relayout(lab, layouts[1], d)
        xa, la = snapshot(xin), snapshot(lin)
        rd = result_dtype(xa.dtype)
        note(f"logits {xa.dtype} {xa.shape} {size} labels {la.dtype} layouts={layouts} "
             f"grad={grad_mode} out={use_out} lse={return_lse} "
             f"where={None if where is None else np.shape(where)}")
        x64 = xa.astype(np.float64)

        def call(nt):
            kwargs = {"return_lse": return_lse, "where": where, "num_threads": nt}
            if use_out:
                kwargs["out"] = np.full(xa.shape[:-1], 7, dtype=rd)
            xx = grad_mode_args(grad_mode, xin, xa, rd, kwargs)
            res = xentc.sparse_softmax_cross_entropy_with_logits(lin, xx, **kwargs)
            res = res if isinstance(res, tuple) else (res,)
            if use_out:
                assert res[0] is kwargs["out"]
            if grad_mode in ("grad_out", "in place"):
                assert res[1] is kwargs["grad_out"]
            return res

        res = list(twice(call))
        loss = res.pop(0)
        grad = res.pop(0) if grad_mode != "none" else None
        lse = res.pop(0) if return_lse else None
        assert np.shape(loss) == xa.shape[:-1]
        onehot = np.zeros(x64.shape)
        np.put_along_axis(onehot, lab.astype(np.int64)[..., None], 1.0, axis=-1)
        if where is None:
            ref_loss, ref_grad = reference.sparse_xent(lab, x64)
            ref_lse = reference.logsumexp(x64)
            scale = reference.error_scale_sparse_loss(lab, x64)
            xs = x64
        else:
            ref_loss, ref_grad = reference.where_sparse_xent(lab, x64, where)
            ref_lse = reference.where_logsumexp(x64, where)
            scale = reference.error_scale_where_sparse_loss(lab, x64, where)
            xs = np.where(np.broadcast_to(where, x64.shape), x64, -np.inf)
        close(loss, ref_loss, rd, scale, "loss")
        if grad is not None:
            close(grad, ref_grad, rd, np.abs(ref_grad) + onehot, "grad")
        if lse is not None:
            close(lse, ref_lse, rd, reference.error_scale_logsumexp(xs), "lse")
        if where is None:
            check_special_rows(x64, -1, lse=lse, sparse=(lab, loss, grad))
        assert_unchanged(la, lin, "labels")
        assert_unchanged(xa, xin, "logits")


# --------------------------------------------------------------------------
# cross_entropy
# --------------------------------------------------------------------------

def cross_entropy_coefficients(target, n_classes, axis, kind, weight, eps, ignore_index, cd):
    """(A, counted, denominator): PyTorch's loss of a row is sum_c A_c (logsumexp - x_c),
    i.e. reference.dense_xent with labels A (rows, class axis last):
      class indices t: A = (1 - eps) w_t onehot(t) + eps / C w, counted rows only;
      probabilities p:  A = w ((1 - eps) p + eps / C).
    The denominator of "mean" is the sum of w_t over counted rows (their number
    without weights) or the number of rows."""
    w = np.ones(n_classes) if weight is None else np.asarray(weight).astype(cd).astype(np.float64)
    if kind == "index":
        t = np.asarray(target).reshape(-1)
        counted = t != ignore_index if _representable(ignore_index, t.dtype) else np.ones(t.shape, bool)
        safe = np.where(counted, t, 0).astype(np.int64)
        a = np.zeros((t.size, n_classes))
        a[np.arange(t.size), safe] = (1 - eps) * w[safe]
        a += eps / n_classes * w
        a[~counted] = 0.0
        denominator = float(w[safe][counted].sum())
    else:
        p = moved_rows(np.asarray(target).astype(cd).astype(np.float64), axis)
        a = w * ((1 - eps) * p + eps / n_classes)
        counted = np.ones(p.shape[0], bool)
        denominator = float(p.shape[0])
    return a, counted, denominator


def _representable(value, dtype):
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


@given(data=st.data(), case=logits_case(), kind=st.sampled_from(["index", "index", "probability"]),
       reduction=st.sampled_from(["mean", "sum", "none"]),
       eps=st.sampled_from([0.0, 0.0, 0.1, 1.0, 0.37]),
       weight_kind=st.sampled_from(["none", "none", "positive", "with zeros", "int list"]),
       grad_mode=st.sampled_from(["none", "return_grad", "grad_out", "in place"]),
       layouts=st.tuples(st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS)))
def test_cross_entropy(data, case, kind, reduction, eps, weight_kind, grad_mode, layouts):
    x, axis, size = case
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    n_classes = x.shape[axis]
    batch = loss_shape(x.shape, axis)
    kwargs = {}
    ignore_index = -100
    if kind == "index":
        dtype = data.draw(st.sampled_from(INT_DTYPES), label="target dtype")
        target = class_labels(rng, batch, n_classes, dtype)
        ignore_index = data.draw(st.sampled_from([-100, -100, -1, 0, n_classes + 3, 2**40]),
                                 label="ignore_index")
        if ignore_index != -100:
            kwargs["ignore_index"] = ignore_index
        if _representable(ignore_index, dtype) and target.size and data.draw(st.booleans(), "ignore some"):
            target.reshape(-1)[rng.random(target.size) < 0.3] = ignore_index
    else:
        dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="target dtype")
        target = rng.random(x.shape) ** 2
        target[rng.random(x.shape) < 0.3] = 0.0
        target = target.astype(dtype)
    weight = None
    if weight_kind == "positive":
        weight = rng.uniform(0.1, 3.0, n_classes)
    elif weight_kind == "with zeros":
        weight = rng.uniform(0.1, 3.0, n_classes) * (rng.random(n_classes) < 0.6)
    elif weight_kind == "int list":
        weight = rng.integers(0, 4, n_classes).tolist()
    if weight is not None:
        kwargs["weight"] = weight
    if eps:
        kwargs["label_smoothing"] = eps
    with scratch() as d:
        xin = relayout(x, layouts[0], d)
        tin = relayout(target, layouts[1], d)
        xa, ta = snapshot(xin), snapshot(tin)
        rd, cd = result_dtype(xa.dtype), compute_dtype(xa.dtype)
        note(f"logits {xa.dtype} {xa.shape} axis={axis} {size} target {kind} {ta.dtype} "
             f"layouts={layouts} reduction={reduction} eps={eps} weight={weight_kind} "
             f"ignore_index={ignore_index} grad={grad_mode}")

        def call(nt):
            kw = dict(kwargs, reduction=reduction, axis=axis, num_threads=nt)
            xx = grad_mode_args(grad_mode, xin, xa, rd, kw)
            res = xentc.cross_entropy(xx, tin, **kw)
            if "grad_out" in kw:
                assert res[1] is kw["grad_out"]
            return res

        res = twice(call)
        loss, grad = res if grad_mode != "none" else (res, None)

        x64 = xa.astype(np.float64)
        a, counted, denominator = cross_entropy_coefficients(
            ta, n_classes, axis, kind, weight, eps, ignore_index, cd)
        xr = moved_rows(x64, axis)
        rows, grad_rows = reference.dense_xent(a, xr)
        rows = np.asarray(rows, dtype=np.float64).reshape(-1)
        rows[~counted] = 0.0  # ignored rows: 0 whatever their logits
        grad_rows[~counted] = 0.0
        row_scale = np.asarray(reference.error_scale_dense_loss(a, xr), dtype=np.float64).reshape(-1)
        row_scale[~counted] = 0.0
        grad_scale = reference.error_scale_dense_grad(a, xr)
        if reduction == "none":
            close(loss, rows.reshape(batch), rd, row_scale.reshape(batch), "loss")
            gscale = 1.0
        else:
            with np.errstate(invalid="ignore"):
                total, scale = rows.sum(), row_scale.sum()
            gscale = 1.0
            if reduction == "mean":
                gscale = 1.0 / denominator if denominator else 0.0
                total, scale = (total * gscale, scale * gscale) if denominator else (0.0, 0.0)
            assert np.ndim(loss) == 0 and isinstance(loss, np.generic)
            close(loss, total, rd, scale, f"{reduction} loss")
        if grad is not None:
            moved_shape = np.moveaxis(x64, axis, -1).shape
            with np.errstate(invalid="ignore"):
                ref_grad = np.moveaxis((grad_rows * gscale).reshape(moved_shape), -1, axis)
                scale = np.moveaxis((grad_scale * gscale).reshape(moved_shape), -1, axis)
            close(grad, ref_grad, rd, scale, "grad")
        assert_unchanged(ta, tin, "target")
        assert_unchanged(xa, xin, "logits")


# --------------------------------------------------------------------------
# sigmoid_cross_entropy_with_logits
# --------------------------------------------------------------------------

@given(data=st.data(), case=logits_case(), layouts=st.tuples(st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS)),
       labels_kind=st.sampled_from(["binary", "soft", "any", "nan"]),
       q_kind=st.sampled_from(["none", "scalar", "per class", "per row", "full", "offsets"]),
       grad_mode=st.sampled_from(["none", "return_grad", "grad_out", "in place"]),
       zero_d=st.booleans())
def test_sigmoid(data, case, layouts, labels_kind, q_kind, grad_mode, zero_d):
    x, _, size = case
    if zero_d and size == "small":
        x = x.reshape(-1)[:1].reshape(()) if x.size else x
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    shape = x.shape
    if labels_kind == "binary":
        z = (rng.random(shape) < 0.5).astype(data.draw(st.sampled_from(FLOAT_DTYPES + [np.dtype(np.int8)])))
    elif labels_kind == "soft":
        z = rng.random(shape).astype(data.draw(st.sampled_from(FLOAT_DTYPES)))
    else:
        z = rng.uniform(-3, 3, shape)
        if labels_kind == "nan":
            z[rng.random(shape) < 0.05] = np.nan
    q = None
    if q_kind != "none" and len(shape) and not (q_kind == "offsets" and len(shape) < 3):
        q_shape = {"scalar": (), "per class": shape[-1:], "per row": shape[:-1] + (1,), "full": shape,
                   "offsets": shape[:1] + (1,) + shape[2:]}[q_kind]
        q = rng.uniform(0, 5, q_shape)
    elif q_kind == "scalar":
        q = np.float64(2.5)
    with scratch() as d:
        xin = relayout(x, layouts[0], d)
        zin = relayout(z, layouts[1], d)
        xa, za = snapshot(xin), snapshot(zin)
        rd, cd = result_dtype(xa.dtype), compute_dtype(xa.dtype)
        note(f"logits {xa.dtype} {xa.shape} {size} labels {labels_kind} {za.dtype} layouts={layouts} "
             f"pos_weight={None if q is None else np.shape(q)} grad={grad_mode}")

        def call(nt):
            kw = {"pos_weight": q, "num_threads": nt}
            xx = grad_mode_args(grad_mode, xin, xa, rd, kw)
            res = xentc.sigmoid_cross_entropy_with_logits(zin, xx, **kw)
            if "grad_out" in kw:
                assert res[1] is kw["grad_out"]
            return res

        res = twice(call)
        loss, grad = res if grad_mode != "none" else (res, None)
        x64 = xa.astype(np.float64)
        z64 = za.astype(cd).astype(np.float64)  # labels and pos_weight follow the computation dtype
        q64 = None if q is None else np.asarray(q).astype(cd).astype(np.float64)
        ref_loss, ref_grad = reference.sigmoid_xent(z64, x64, q64)
        close(loss, ref_loss, rd, reference.error_scale_sigmoid_loss(z64, x64, q64), "loss")
        if grad is not None:
            close(grad, ref_grad, rd, reference.error_scale_sigmoid_grad(z64, x64, q64), "grad")
        assert_unchanged(za, zin, "labels")
        assert_unchanged(xa, xin, "logits")


# --------------------------------------------------------------------------
# categorical_crossentropy and binary_crossentropy (Keras, on probabilities)
# --------------------------------------------------------------------------

@given(data=st.data(), case=logits_case(specials=False, dtypes=FLOAT_DTYPES + [np.dtype(np.longdouble)]),
       layouts=st.tuples(st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS)),
       epsilon=st.sampled_from([1e-7, 0.0, 1e-3, 0.5]), from_logits=st.booleans(),
       nan_rows=st.booleans())
def test_keras_losses(data, case, layouts, epsilon, from_logits, nan_rows):
    x, axis, size = case
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    dtype = x.dtype
    if from_logits:
        out = x
    else:  # probabilities: rows that sum to 1 (with exact zeros and ones)
        p = rng.random(x.shape) ** 3
        p[rng.random(x.shape) < 0.2] = 0
        p += 1e-3
        p /= p.sum(axis=axis, keepdims=True)
        if data.draw(st.booleans(), label="one-hot rows"):
            p = np.zeros(x.shape)
            hot = rng.integers(0, x.shape[axis], loss_shape(x.shape, axis))
            np.put_along_axis(p, np.expand_dims(hot, axis), 1.0, axis=axis)
        out = p.astype(dtype)
    if nan_rows and out.size:  # NaN is not an error: its own row (element) only
        out.reshape(-1)[rng.integers(0, out.size, 3)] = np.nan
    target = rng.choice([0.0, 0.25, 1.0], size=x.shape).astype(
        data.draw(st.sampled_from(FLOAT_DTYPES + [np.dtype(np.int8)]), label="target dtype"))
    with scratch() as d:
        oin = relayout(out, layouts[0], d)
        tin = relayout(target, layouts[1], d)
        oa, ta = snapshot(oin), snapshot(tin)
        rd, cd = result_dtype(oa.dtype), compute_dtype(oa.dtype)
        note(f"output {oa.dtype} {oa.shape} axis={axis} {size} target {ta.dtype} layouts={layouts} "
             f"epsilon={epsilon} from_logits={from_logits}")
        o64 = oa.astype(np.float64)
        t64 = ta.astype(cd).astype(np.float64)

        got = twice(lambda nt: xentc.categorical_crossentropy(
            tin, oin, from_logits=from_logits, axis=axis, epsilon=epsilon, num_threads=nt))
        if from_logits:
            ref, _ = reference.dense_xent(t64, o64, axis)
            scale = reference.error_scale_dense_loss(t64, o64, axis)
        else:
            ref = reference.categorical_crossentropy(t64, o64, axis, epsilon, cd)
            scale = reference.error_scale_categorical_crossentropy(t64, o64, axis, epsilon, cd)
        close(got, ref, rd, scale, "categorical_crossentropy")

        got = twice(lambda nt: xentc.binary_crossentropy(
            tin, oin, from_logits=from_logits, epsilon=epsilon, num_threads=nt))
        if from_logits:
            ref, _ = reference.sigmoid_xent(t64, o64)
            scale = reference.error_scale_sigmoid_loss(t64, o64)
        else:
            ref = reference.binary_crossentropy(t64, o64, epsilon, cd)
            scale = reference.error_scale_binary_crossentropy(t64, o64, epsilon, cd)
        close(got, ref, rd, scale, "binary_crossentropy")
        assert_unchanged(ta, tin, "target")
        assert_unchanged(oa, oin, "output")


# --------------------------------------------------------------------------
# score
# --------------------------------------------------------------------------

@given(data=st.data(), case=logits_case(), layouts=st.tuples(st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS)),
       dense=st.booleans())
def test_score(data, case, layouts, dense):
    x, axis, size = case
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    n_classes = x.shape[axis]
    if dense:
        labels = data.draw(dense_labels(x.shape, axis, validate=True), label="labels")
        if labels.dtype.kind != "f":
            labels = labels.astype(np.float32)  # dense labels of score are real floating
    else:
        labels = class_labels(rng, loss_shape(x.shape, axis), n_classes,
                              data.draw(st.sampled_from(INT_DTYPES), label="labels dtype"))
    top_k = data.draw(st.lists(st.integers(1, n_classes + 2), min_size=1, max_size=3), label="top_k")
    n_rows = math.prod(loss_shape(x.shape, axis))
    batch_rows = data.draw(st.one_of(st.none(), st.integers(1, max(n_rows, 1) + 1)), label="batch_rows")
    with scratch() as d:
        xin = relayout(x, layouts[0], d)
        lin = relayout(labels, layouts[1], d)
        xa, la = snapshot(xin), snapshot(lin)
        cd = compute_dtype(xa.dtype)
        note(f"logits {xa.dtype} {xa.shape} axis={axis} {size} labels {la.dtype} layouts={layouts} "
             f"top_k={top_k} batch_rows={batch_rows}")

        got = twice(lambda nt: xentc.score(xin, lin, axis=axis, top_k=top_k, batch_rows=batch_rows,
                                           num_threads=nt))
        x64 = xa.astype(np.float64)
        lab = la.astype(cd).astype(np.float64) if dense else la
        with np.errstate(over="ignore"):  # perplexity exp(6e4)
            ref = reference.score(x64, lab, axis, top_k=sorted(set(top_k)))
        assert got.rows == ref["rows"] == n_rows
        assert sorted(got.top_k_accuracy) == sorted(set(top_k))
        for k in got.top_k_accuracy:
            assert _same_or_both_nan(got.top_k_accuracy[k], ref["top_k_accuracy"][k]), ("top", k)
        assert _same_or_both_nan(got.accuracy, ref["accuracy"])
        if dense:
            scale = reference.error_scale_dense_loss(lab, x64, axis)
        else:
            scale = reference.error_scale_sparse_loss(lab, moved_rows(x64, axis))
        with np.errstate(invalid="ignore"):
            scale = float(np.sum(scale))
        close(np.float64(got.loss_sum), ref["loss_sum"], F64,
                     _loss_sum_scale(cd, scale, n_rows), "loss_sum")
        if n_rows:
            close(np.float64(got.mean_loss), ref["mean_loss"], F64,
                         _loss_sum_scale(cd, scale, n_rows) / n_rows, "mean_loss")
        else:
            assert np.isnan(got.mean_loss) and np.isnan(got.perplexity)
        # ECE: the confidences of xentc and the reference may round apart (float32)
        tol = 1e-12 if cd == F64 else 1e-5
        ece, ref_ece = got.expected_calibration_error, ref["expected_calibration_error"]
        assert (np.isnan(ece) and np.isnan(ref_ece)) or abs(ece - ref_ece) <= tol, (ece, ref_ece)
        if batch_rows is not None:  # another batch size: the same counts, the same sums up to order
            other = xentc.score(xin, lin, axis=axis, top_k=top_k, num_threads=1)
            assert other.top_k_accuracy == got.top_k_accuracy or n_rows == 0
        assert_unchanged(la, lin, "labels")
        assert_unchanged(xa, xin, "logits")


def _same_or_both_nan(a, b):
    return (np.isnan(a) and np.isnan(b)) or a == b


def _loss_sum_scale(cd, scale, n_rows):
    """conftest.assert_close compares float64 results with RTOL[F64]; a sum of float32 row
    losses is as accurate as float32's RTOL and ATOL of its terms (a row loss of 5e-289,
    the last logit of [8861.122, 226.55, 9524.874], is 0 in float32)."""
    from conftest import ATOL, RTOL
    return (scale * RTOL[cd] + n_rows * ATOL[cd]) / RTOL[F64]
