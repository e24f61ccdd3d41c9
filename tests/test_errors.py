"""Errors: what raises, with which message, and that nothing was written before it.

Every call that should fail is given `out` / `grad_out` arrays pre-filled with
the sentinel 7 (when they are not the argument under test) and the inputs are
snapshotted: after the error, all of them must be unchanged.
"""
import re

import numpy as np
import pytest
from numpy.exceptions import AxisError

import xentc

SENTINEL = 7.0
dense = xentc.softmax_cross_entropy_with_logits
sparse = xentc.sparse_softmax_cross_entropy_with_logits


def sentinel(shape, dtype=np.float64):
    return np.full(shape, SENTINEL, dtype=dtype)


def assert_sentinel(*arrays):
    for a in arrays:
        assert (np.asarray(a) == SENTINEL).all(), f"an output was written before the error: {a}"


def good_inputs(n=3, c=4, dtype=np.float64):
    logits = np.random.default_rng(0).normal(size=(n, c)).astype(dtype)
    labels = np.full((n, c), 1.0 / c, dtype=dtype)
    return labels, logits


# every public function called on logits alone (labels made up to fit), by name
def call_each(logits, axis=-1, **kwargs):
    logits = np.asarray(logits)
    yield "softmax", lambda: xentc.softmax(logits, axis, **kwargs)
    yield "log_softmax", lambda: xentc.log_softmax(logits, axis, **kwargs)
    yield "logsumexp", lambda: xentc.logsumexp(logits, axis, **kwargs)
    yield "dense", lambda: dense(np.zeros(logits.shape), logits, axis, validate_labels=False, **kwargs)
    if axis == -1:
        yield "sparse", lambda: sparse(np.zeros(logits.shape[:-1], np.int64), logits, **kwargs)


# --------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------

def test_dense_shape_mismatch_names_both_shapes():
    labels = np.full((3, 5), 0.2)
    logits = np.zeros((3, 4))
    out, grad_out = sentinel(3), sentinel((3, 4))
    with pytest.raises(ValueError) as exc:
        dense(labels, logits, out=out, grad_out=grad_out)
    assert "labels.shape=(3, 5)" in str(exc.value)
    assert "logits.shape=(3, 4)" in str(exc.value)
    assert_sentinel(out, grad_out)


@pytest.mark.parametrize("labels_shape", [(1, 4), (4,), (3, 4, 1), (4, 3)])
def test_dense_labels_are_not_broadcast(labels_shape):
    labels = np.full(labels_shape, 0.25)
    with pytest.raises(ValueError, match=re.escape(f"labels.shape={labels_shape}")):
        dense(labels, np.zeros((3, 4)))


@pytest.mark.parametrize("labels_shape", [(4,), (3, 1), (3, 5), (), (1,)])
def test_sparse_shape_mismatch_names_both_shapes(labels_shape):
    labels = np.zeros(labels_shape, dtype=np.int64)
    out, grad_out = sentinel(3), sentinel((3, 5))
    with pytest.raises(ValueError) as exc:
        sparse(labels, np.zeros((3, 5)), out=out, grad_out=grad_out)
    assert str(labels_shape) in str(exc.value) and "(3, 5)" in str(exc.value)
    assert_sentinel(out, grad_out)


@pytest.mark.parametrize("labels,shape,expected", [
    (np.array([0, 1, 9]), (3, 5), "labels[2] = 9 is outside the valid range [0, 5)"),
    (np.array([[0, 1, 2], [3, 4, 9]]), (2, 3, 5), "labels[1, 2] = 9 is outside the valid range [0, 5)"),
    (np.array([0, -1], dtype=np.int8), (2, 5), "labels[1] = -1 is outside the valid range [0, 5)"),
    (np.array([200, 0], dtype=np.uint8), (2, 5), "labels[0] = 200 is outside the valid range [0, 5)"),
    (np.array([0, 2**63 + 5], dtype=np.uint64), (2, 5),
     "labels[1] = 9223372036854775813 is outside the valid range [0, 5)"),
    (np.array([2**64 - 1], dtype=np.uint64), (1, 5),
     "labels[0] = 18446744073709551615 is outside the valid range [0, 5)"),
    (np.array([5, 0], dtype=np.int64), (2, 5), "labels[0] = 5 is outside the valid range [0, 5)"),
    (np.array([1, -32768], dtype=np.int16), (2, 5), "labels[1] = -32768 is outside the valid range [0, 5)"),
    (np.array([3, 2**31 - 1], dtype=np.int32), (2, 5), "labels[1] = 2147483647 is outside"),
    (np.array([0, 9, -1]), (3, 5), "labels[1] = 9 is outside"),  # the first bad one
    (np.array([7], dtype=">i8"), (1, 5), "labels[0] = 7 is outside the valid range [0, 5)"),
    # narrow signed labels whose negative values, read as unsigned, are below C
    # (the check's max over the labels as unsigned would miss them), and the
    # boundary C = 128 for int8, where -128 reads as 128, not below C
    (np.array([0, -1], dtype=np.int8), (2, 300), "labels[1] = -1 is outside the valid range [0, 300)"),
    (np.array([-128], dtype=np.int8), (1, 129), "labels[0] = -128 is outside the valid range [0, 129)"),
    (np.array([-128], dtype=np.int8), (1, 128), "labels[0] = -128 is outside the valid range [0, 128)"),
    (np.array([5, -30000], dtype=np.int16), (2, 40000),
     "labels[1] = -30000 is outside the valid range [0, 40000)"),
])
@pytest.mark.parametrize("scan_limit", [None, 0])
@pytest.mark.parametrize("outputs", ["out, grad_out", "out", "out, return_grad"])
def test_sparse_label_out_of_range_names_index_value_and_range(labels, shape, expected, scan_limit,
                                                               outputs, monkeypatch):
    # scan_limit 0: the check that takes NumPy's max (or min and max) first,
    # which more than _SCAN_LABELS labels take, on these few labels too (the
    # check before the kernel, with a grad_out).  Without a grad_out the kernel
    # call checks the labels instead (the loss staged): the same message, and
    # `out` untouched.
    if scan_limit is not None:
        monkeypatch.setattr(xentc._api, "_SCAN_LABELS", scan_limit)
    logits = np.zeros(shape)
    out, grad_out = sentinel(shape[:-1]), sentinel(shape)
    kwargs = {"out": out, "grad_out": grad_out if "grad_out" in outputs else None,
              "return_grad": "return_grad" in outputs}
    with pytest.raises(ValueError) as exc:
        sparse(labels, logits, **kwargs)
    assert expected in str(exc.value)
    assert_sentinel(out, grad_out)


@pytest.mark.parametrize("scan_limit", [None, 0])   # as above: the scan alone, and NumPy's min and max
@pytest.mark.parametrize("dtype,n", [(np.int8, 300), (np.int8, 128), (np.int16, 40000), (np.uint8, 256)])
@pytest.mark.parametrize("checked_first", [False, True])   # the kernel call's check, or (grad_out) NumPy's
def test_narrow_labels_in_range_pass(dtype, n, scan_limit, checked_first, monkeypatch):
    if scan_limit is not None:
        monkeypatch.setattr(xentc._api, "_SCAN_LABELS", scan_limit)
    # the largest and smallest valid labels of narrow dtypes with many classes
    labels = np.array([0, np.iinfo(dtype).max if np.iinfo(dtype).max < n else n - 1, 1], dtype=dtype)
    logits = np.random.default_rng(3).normal(size=(3, n))
    loss = sparse(labels, logits, grad_out=np.empty_like(logits) if checked_first else None)
    loss = loss[0] if checked_first else loss
    ref = np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(3), labels.astype(np.int64)]
    np.testing.assert_allclose(loss, ref, rtol=1e-12)


@pytest.mark.parametrize("n_rows", [1024, 1025, 5000])   # with a grad_out: up to _SCAN_LABELS the scan alone
@pytest.mark.parametrize("bad", [-1, 5])
@pytest.mark.parametrize("checked_first", [False, True])   # the kernel call's check, or (grad_out) NumPy's
def test_sparse_label_out_of_range_in_many_rows(n_rows, bad, checked_first):
    labels = np.random.default_rng(2).integers(0, 5, n_rows)
    labels[n_rows - 3] = bad
    labels[n_rows - 1] = 7   # only the first bad label is named
    logits = np.zeros((n_rows, 5), np.float32)
    grad_out = sentinel(logits.shape, np.float32) if checked_first else None
    with pytest.raises(ValueError, match=re.escape(f"labels[{n_rows - 3}] = {bad} is outside")):
        sparse(labels, logits, grad_out=grad_out)
    if checked_first:
        assert_sentinel(grad_out)
    assert xentc._api._SCAN_LABELS == 1024


@pytest.mark.parametrize("n_classes", [5, 40, 1000])   # rows of few classes (without where=), and wide ones
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])   # float16: computed in float32
@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("where", [False, True])
@pytest.mark.parametrize("label_dtype", [np.int64, np.uint64])
def test_sparse_label_out_of_range_in_one_chunk_of_many(n_classes, dtype, num_threads, where, label_dtype):
    # Without a grad_out each chunk of rows checks its labels before its kernel
    # (sparse_xent): bad labels in two chunks and the last row, the first named;
    # the loss goes to `out` only when all are valid.
    n_rows = 200000 // n_classes
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(n_rows, n_classes)).astype(dtype)
    labels = rng.integers(0, n_classes, n_rows).astype(label_dtype)
    mask = np.ones(n_classes, bool) if where else None
    first = n_rows // 2 + 7
    wrapped = 2**64 - 1 if label_dtype == np.uint64 else -1   # -1 as an int64
    for row, value in [(first, n_classes), (n_rows - 1, wrapped), (n_rows // 4 * 3, 2**40)]:
        labels[row] = value
    out = sentinel(n_rows, dtype)
    with pytest.raises(ValueError, match=re.escape(
            f"labels[{first}] = {n_classes} is outside the valid range [0, {n_classes})")):
        sparse(labels, logits, out=out, return_grad=True, return_lse=True, where=mask,
               num_threads=num_threads)
    assert_sentinel(out)
    labels[first] = 0
    with pytest.raises(ValueError, match=re.escape(f"labels[{n_rows // 4 * 3}] = {2**40} is outside")):
        sparse(labels, logits, out=out, where=mask, num_threads=num_threads)
    labels[n_rows // 4 * 3] = 0
    with pytest.raises(ValueError, match=re.escape(f"labels[{n_rows - 1}] = {wrapped} is outside")):
        sparse(labels, logits, out=out, where=mask, num_threads=num_threads)
    assert_sentinel(out)
    labels[n_rows - 1] = 0
    loss, grad = sparse(labels, logits, out=out, return_grad=True, where=mask, num_threads=num_threads)
    assert loss is out
    ref_loss, ref_grad = sparse(labels, logits, where=mask, num_threads=num_threads,
                                grad_out=np.empty_like(logits))   # checked first, the same kernel
    assert np.array_equal(loss, ref_loss) and np.array_equal(grad, ref_grad)


def test_labels_changed_during_the_call_raise_rather_than_return_unwritten_rows(monkeypatch):
    # sparse_xent returns -2 when a chunk skipped its kernel for a bad label that
    # the scan after it no longer finds (another thread wrote to the labels):
    # those rows were never written, so the call must not return them
    real = xentc._kernels.sparse_xent
    monkeypatch.setattr(xentc._kernels, "sparse_xent", lambda *args: real(*args) and -2)
    out = sentinel(3)
    with pytest.raises(RuntimeError, match="labels changed while the loss was computed"):
        sparse(np.array([0, 1, 2]), np.zeros((3, 4)), out=out)
    assert_sentinel(out)


def test_sparse_label_out_of_range_for_one_row():
    with pytest.raises(ValueError, match=re.escape("= 7 is outside the valid range [0, 5)")):
        sparse(7, np.zeros(5))


def test_sparse_label_out_of_range_in_place_leaves_logits_unchanged():
    logits = np.random.default_rng(1).normal(size=(4, 3))
    before = logits.copy()
    with pytest.raises(ValueError, match=re.escape("labels[3] = 3")):
        sparse(np.array([0, 1, 2, 3]), logits, grad_out=logits)
    assert np.array_equal(logits, before)


@pytest.mark.parametrize("shape,axis", [((3, 0), -1), ((0, 3), 0), ((2, 0, 4), 1), ((0,), 0), ((0, 0), -1)])
def test_zero_classes_is_an_error(shape, axis):
    for name, call in call_each(np.zeros(shape), axis):
        with pytest.raises(ValueError, match=r"0 classes|class axis") as exc:
            call()
        assert not isinstance(exc.value, AxisError), name


@pytest.mark.parametrize("axis", [2, -3, 5])
def test_axis_out_of_range_is_axis_error(axis):
    for name, call in call_each(np.zeros((3, 4)), axis):
        with pytest.raises(AxisError) as exc:
            call()
        assert isinstance(exc.value, ValueError) and isinstance(exc.value, IndexError), name


def test_zero_dimensional_logits_are_an_error():
    x = np.array(1.5)
    for fn in (xentc.softmax, xentc.log_softmax, xentc.logsumexp):
        with pytest.raises(ValueError):
            fn(x)
    with pytest.raises(ValueError):
        dense(np.array(1.0), x)
    with pytest.raises(ValueError):
        sparse(np.array(0), x)
    with pytest.raises(ValueError):
        xentc.softmax(2.0)


# --------------------------------------------------------------------------
# out and grad_out
# --------------------------------------------------------------------------

def _bad_outputs(shape, dtype):
    """(description, array or object, exception type) that are not valid outputs of this shape and dtype."""
    other = np.float32 if np.dtype(dtype) != np.float32 else np.float64
    bigger = tuple(d + 1 for d in shape) if shape else (1,)
    cases = [
        ("wrong shape", sentinel(bigger, dtype), ValueError),
        ("wrong shape, same size", sentinel((int(np.prod(shape)),), dtype) if len(shape) != 1
         else sentinel((1, shape[0]), dtype), ValueError),
        ("wrong dtype", sentinel(shape, other), ValueError),
        ("byte-swapped dtype", sentinel(shape, np.dtype(dtype).newbyteorder()), ValueError),
        ("strided", sentinel(tuple(2 * d for d in shape), dtype)[tuple(slice(None, None, 2) for _ in shape)],
         ValueError),
        ("list", sentinel(shape, dtype).tolist(), TypeError),
    ]
    if len(shape) >= 2:
        cases.append(("Fortran order", np.asfortranarray(sentinel(shape, dtype)), ValueError))
    ro = sentinel(shape, dtype)
    ro.flags.writeable = False
    cases.append(("read-only", ro, ValueError))
    return cases


def _expect_output_error(call, name, bad, exc_type, others):
    with pytest.raises(exc_type) as exc:
        call()
    msg = str(exc.value)
    if name == "out":
        assert re.search(r"(?<!grad_)\bout\b", msg), msg
    else:
        assert "grad_out" in msg, msg
    assert_sentinel(*others)
    if isinstance(bad, np.ndarray):
        assert_sentinel(bad)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_bad_out_and_grad_out_for_dense(dtype):
    labels, logits = good_inputs(dtype=dtype)
    for desc, bad, exc_type in _bad_outputs((3,), dtype):
        g = sentinel((3, 4), dtype)
        _expect_output_error(lambda: dense(labels, logits, out=bad, grad_out=g), "out", bad, exc_type, [g])
    for desc, bad, exc_type in _bad_outputs((3, 4), dtype):
        o = sentinel(3, dtype)
        _expect_output_error(lambda: dense(labels, logits, out=o, grad_out=bad), "grad_out", bad,
                             exc_type, [o])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_bad_out_and_grad_out_for_sparse(dtype):
    _, logits = good_inputs(dtype=dtype)
    labels = np.array([0, 3, 1])
    for desc, bad, exc_type in _bad_outputs((3,), dtype):
        g = sentinel((3, 4), dtype)
        _expect_output_error(lambda: sparse(labels, logits, out=bad, grad_out=g), "out", bad, exc_type, [g])
    for desc, bad, exc_type in _bad_outputs((3, 4), dtype):
        o = sentinel(3, dtype)
        _expect_output_error(lambda: sparse(labels, logits, out=o, grad_out=bad), "grad_out", bad,
                             exc_type, [o])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_bad_out_for_softmax(name, dtype):
    _, logits = good_inputs(dtype=dtype)
    fn = getattr(xentc, name)
    for desc, bad, exc_type in _bad_outputs((3, 4), dtype):
        _expect_output_error(lambda: fn(logits, out=bad), "out", bad, exc_type, [])


def test_out_must_have_the_result_dtype_of_integer_logits():
    logits = np.array([[1, 2, 3]], dtype=np.int32)
    with pytest.raises(ValueError, match="out"):
        xentc.softmax(logits, out=logits)  # int32 is not the result dtype (float64)
    with pytest.raises(ValueError, match="out"):
        xentc.softmax(logits, out=np.zeros((1, 3), np.float32))
    assert xentc.softmax(logits, out=np.zeros((1, 3))).dtype == np.float64


def test_in_place_float16_requires_float16_grad_out():
    labels, logits = good_inputs(dtype=np.float16)
    with pytest.raises(ValueError, match="grad_out"):
        dense(labels, logits, grad_out=np.zeros((3, 4), np.float32))


# --------------------------------------------------------------------------
# overlapping memory
# --------------------------------------------------------------------------

def test_grad_out_must_not_be_labels():
    labels, logits = good_inputs()
    before = labels.copy()
    out = sentinel(3)
    with pytest.raises(ValueError, match="grad_out"):
        dense(labels, logits, grad_out=labels, out=out)
    assert np.array_equal(labels, before)
    assert_sentinel(out)


def test_grad_out_must_not_overlap_labels_partially():
    base = np.full(16, 0.25)
    labels = base[:12].reshape(3, 4)
    grad_out = base[4:16].reshape(3, 4)
    with pytest.raises(ValueError, match="grad_out"):
        dense(labels, np.zeros((3, 4)), grad_out=grad_out)
    assert (base == 0.25).all()


@pytest.mark.parametrize("which", ["dense", "sparse"])
def test_grad_out_partially_overlapping_logits_is_an_error(which):
    base = np.arange(16, dtype=np.float64)
    logits = base[:12].reshape(3, 4)
    grad_out = base[4:16].reshape(3, 4)
    out = sentinel(3)
    with pytest.raises(ValueError, match="grad_out"):
        if which == "dense":
            dense(np.full((3, 4), 0.25), logits, grad_out=grad_out, out=out)
        else:
            sparse([0, 1, 2], logits, grad_out=grad_out, out=out)
    assert np.array_equal(base, np.arange(16.0))
    assert_sentinel(out)


@pytest.mark.parametrize("which", ["dense", "sparse"])
def test_out_overlapping_logits_is_an_error(which):
    base = np.zeros(14)
    logits = base[:12].reshape(3, 4)
    out = base[10:13]  # its first two elements are logits[2, 2:]
    with pytest.raises(ValueError, match="out"):
        if which == "dense":
            dense(np.full((3, 4), 0.25), logits, out=out)
        else:
            sparse([0, 1, 2], logits, out=out)
    assert (base == 0).all()


def test_out_overlapping_labels_is_an_error_dense():
    base = np.full(15, 0.25)
    labels = base[:12].reshape(3, 4)
    out = base[12:15]
    with pytest.raises(ValueError, match="out"):
        dense(labels, np.zeros((3, 4)), out=base[9:12])  # labels[2, 1:]
    with pytest.raises(ValueError, match="out"):
        dense(labels, np.zeros((3, 4)), out=base[10:13])  # labels[2, 2:] and one more
    assert (base == 0.25).all()
    dense(labels, np.zeros((3, 4)), out=out)  # adjacent but not overlapping: fine


def test_out_overlapping_labels_is_an_error_sparse():
    buf = np.zeros(3, dtype=np.int64)
    out = buf.view(np.float64)  # the same 24 bytes as the labels
    with pytest.raises(ValueError, match="out"):
        sparse(buf, np.zeros((3, 4)), out=out)
    assert (buf == 0).all()


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_out_partially_overlapping_logits_is_an_error(name):
    base = np.arange(16, dtype=np.float64)
    logits = base[:12].reshape(3, 4)
    with pytest.raises(ValueError, match="out"):
        getattr(xentc, name)(logits, out=base[4:16].reshape(3, 4))
    assert np.array_equal(base, np.arange(16.0))


def _sharing_bool_mask(out, shape):
    """A bool where= mask of `shape` in the first bytes of `out` (its memory), all True."""
    mask = out.reshape(-1).view(np.uint8)[:int(np.prod(shape))].view(bool).reshape(shape)
    mask[...] = True
    return mask


@pytest.mark.parametrize("which", ["dense out", "dense grad_out", "sparse out", "sparse grad_out",
                                   "softmax out", "log_softmax out"])
def test_outputs_must_not_overlap_where(which):
    # the kernels read the mask row by row while they write the outputs: an
    # output sharing the mask's memory gave wrong numbers, silently
    logits = np.random.default_rng(4).normal(size=(64, 8))
    name, arg = which.split()
    shape = (64,) if arg == "out" and name in ("dense", "sparse") else (64, 8)
    target = sentinel(shape)
    where = _sharing_bool_mask(target, (64, 8) if len(shape) == 2 else (8, 8))
    if len(shape) == 1:
        where = np.broadcast_to(where.reshape(-1)[:8], (64, 8))  # one row of classes for all rows
    before = target.copy()
    kwargs = {arg: target, "where": where}
    with pytest.raises(ValueError, match=f"^{arg} must not overlap where$"):
        if name == "dense":
            dense(np.full((64, 8), 1 / 8), logits, **kwargs)
        elif name == "sparse":
            sparse(np.zeros(64, np.int64), logits, **kwargs)
        else:
            getattr(xentc, name)(logits, **kwargs)
    assert np.array_equal(target, before)


def test_cross_entropy_grad_out_must_not_overlap_weight():
    # the kernel reads the weights (a view of them) for every row while it writes grad_out
    logits = np.random.default_rng(5).normal(size=(64, 8))
    grad_out = sentinel((64, 8))
    weight = grad_out[0]
    before = grad_out.copy()
    with pytest.raises(ValueError, match="^grad_out must not overlap weight$"):
        xentc.cross_entropy(logits, np.zeros(64, np.int64), weight=weight, grad_out=grad_out)
    assert np.array_equal(grad_out, before)


# --------------------------------------------------------------------------
# validate_labels
# --------------------------------------------------------------------------

HINT = "validate_labels=False"


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_negative_dense_label_names_the_element(dtype):
    labels = np.full((3, 4), 0.25, dtype=dtype)
    labels[1] = [0.5, 1.0, -0.5, 0.0]  # sums to 1, but a negative entry
    logits = np.zeros((3, 4), dtype=dtype)
    out, grad_out = sentinel(3, dtype), sentinel((3, 4), dtype)
    with pytest.raises(ValueError) as exc:
        dense(labels, logits, out=out, grad_out=grad_out)
    assert "labels[1, 2] = -0.5" in str(exc.value)
    assert "logits" in str(exc.value) and HINT in str(exc.value)
    assert_sentinel(out, grad_out)


def test_negative_dense_label_names_the_element_along_another_axis():
    labels = np.full((4, 3), 0.25)
    labels[:, 1] = [0.5, 0.75, -0.25, 0.0]
    with pytest.raises(ValueError, match=re.escape("labels[2, 1] = -0.25")):
        dense(labels, np.zeros((4, 3)), axis=0)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_row_not_summing_to_one_names_the_row_and_its_sum(dtype):
    labels = np.full((3, 4), 0.25, dtype=dtype)
    labels[1] = [0.25, 0.25, 0.0, 0.0]
    logits = np.zeros((3, 4), dtype=dtype)
    out, grad_out = sentinel(3, dtype), sentinel((3, 4), dtype)
    with pytest.raises(ValueError) as exc:
        dense(labels, logits, out=out, grad_out=grad_out)
    msg = str(exc.value)
    assert re.search(r"labels\[1(, :)?\]", msg), msg
    assert "0.5" in msg and "logits" in msg and HINT in msg
    assert_sentinel(out, grad_out)


def test_row_along_axis_0_is_named_with_a_colon():
    labels = np.full((4, 5), 0.25)
    labels[:, 3] = [0.25, 0.25, 0.25, 0.5]  # column 3 sums to 1.25
    with pytest.raises(ValueError) as exc:
        dense(labels, np.zeros((4, 5)), axis=0)
    assert "labels[:, 3]" in str(exc.value) and "1.25" in str(exc.value)


def test_row_along_a_middle_axis_is_named_with_a_colon():
    labels = np.full((2, 4, 3), 0.25)
    labels[1, :, 2] = 0.0
    with pytest.raises(ValueError) as exc:
        dense(labels, np.zeros((2, 4, 3)), axis=1)
    assert "labels[1, :, 2]" in str(exc.value)


@pytest.mark.parametrize("bad", [np.nan, -np.inf, np.inf])
def test_non_finite_labels_are_invalid(bad):
    labels = np.full((2, 4), 0.25)
    labels[1, 0] = bad
    with pytest.raises(ValueError, match=r"labels\[1"):
        dense(labels, np.zeros((2, 4)))


def test_all_zero_label_row_is_invalid():
    labels = np.full((2, 4), 0.25)
    labels[0] = 0
    with pytest.raises(ValueError, match=r"labels\[0"):
        dense(labels, np.zeros((2, 4)))


@pytest.mark.parametrize("dtype,ok,bad", [
    (np.float32, 1 + 5e-4, 1 + 3e-3),
    (np.float64, 1 + 5e-7, 1 + 5e-6),
    (np.float16, 1.0, 1.0 + 2**-5),
])
def test_label_sum_tolerance(dtype, ok, bad):
    logits = np.zeros((1, 2), dtype=dtype)
    good = np.array([[0.5, ok - 0.5]], dtype=dtype)
    dense(good, logits)  # no error
    with pytest.raises(ValueError, match=r"labels\[0"):
        dense(np.array([[0.5, bad - 0.5]], dtype=dtype), logits)


def test_invalid_labels_in_place_leave_logits_unchanged():
    labels = np.full((3, 4), 0.3)
    logits = np.random.default_rng(2).normal(size=(3, 4))
    before = logits.copy()
    out = sentinel(3)
    with pytest.raises(ValueError):
        dense(labels, logits, grad_out=logits, out=out)
    assert np.array_equal(logits, before)
    assert_sentinel(out)


@pytest.mark.parametrize("n_classes", [3, 32, 33, 3000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("grad", ["loss only", "return_grad", "grad_out", "grad_out axis 0",
                                  "in place", "in place axis 0"])
def test_invalid_labels_write_nothing(n_classes, dtype, grad):
    # rows of few classes and long rows take different kernels; the loss-only call
    # and a gradient into a buffer of our own (return_grad, or a grad_out the
    # result is copied into) check the labels in the same pass as the loss:
    # nothing may reach out or grad_out
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(40, n_classes)).astype(dtype)
    logits[3, 0] = np.nan  # a NaN logit must not hide the bad labels of its row
    labels = np.zeros((40, n_classes), dtype=dtype)
    labels[:, -1] = 1
    labels[3, -1] = 0.5  # row 3 sums to 0.5
    labels[7, 0] = -1.0
    before = logits.copy()
    out = sentinel(40, dtype)
    kwargs = {"out": out}
    if grad == "return_grad":
        kwargs["return_grad"] = True
    elif grad == "grad_out":
        kwargs["grad_out"] = grad_out = sentinel(logits.shape, dtype)
    elif grad == "grad_out axis 0":  # classes along axis 0: the kernel writes a buffer of ours
        labels, logits, before = (np.ascontiguousarray(a.T) for a in (labels, logits, before))
        kwargs.update(axis=0, grad_out=(grad_out := sentinel(logits.shape, dtype)))
    elif grad == "in place":
        kwargs["grad_out"] = logits
    elif grad == "in place axis 0":  # the kernel writes our copy of the logits, then copies back
        labels, logits, before = (np.ascontiguousarray(a.T) for a in (labels, logits, before))
        kwargs.update(axis=0, grad_out=logits)
    with pytest.raises(ValueError) as exc:
        dense(labels, logits, **kwargs)
    assert re.search(r"labels\[(:, )?3(, :)?\]", str(exc.value)) and "0.5" in str(exc.value), str(exc.value)
    assert_sentinel(out)
    if grad.startswith("grad_out"):
        assert_sentinel(grad_out)
    assert np.array_equal(logits, before, equal_nan=True)


def test_labels_are_checked_before_the_pass_only_when_it_writes_grad_out(monkeypatch):
    # a separate check reads the labels again (a third more memory traffic for
    # long rows); a gradient of our own is checked in the kernel's pass
    from xentc import _kernels
    calls = []
    check = _kernels.check_labels
    monkeypatch.setattr(_kernels, "check_labels", lambda *a: calls.append(1) or check(*a))
    logits = np.random.default_rng(1).normal(size=(6, 50))
    labels = np.full((6, 50), 1 / 50)
    loss, grad = dense(labels, logits, return_grad=True)
    assert calls == []
    grad_t = sentinel(logits.T.shape)  # classes along axis 0: a buffer of ours, then copied
    loss_t, _ = dense(labels.T, logits.T, axis=0, grad_out=grad_t)
    assert calls == []
    assert np.array_equal(loss_t, loss) and np.array_equal(grad_t, grad.T)
    dense(labels, logits, grad_out=np.empty_like(logits))
    assert calls == [1]


@pytest.mark.parametrize("n_classes,bad_col", [(5, 4), (100, 99), (3000, 2900)])
def test_negative_label_late_in_a_row_is_found(n_classes, bad_col):
    labels = np.zeros((2, n_classes))
    labels[:, 0] = 1.0
    labels[1, 1] = 0.5
    labels[1, bad_col] = -0.5  # row 1 still sums to 1
    with pytest.raises(ValueError, match=re.escape(f"labels[1, {bad_col}] = -0.5")):
        dense(labels, np.zeros((2, n_classes)))


@pytest.mark.parametrize("num_threads", [1, 2, 3])
def test_first_invalid_row_is_reported_whatever_the_thread_count(num_threads):
    labels = np.full((4000, 300), 1 / 300)
    labels[2500, 7] = -1.0
    labels[3900] = 0.0
    labels[3999, 3] = np.nan
    with pytest.raises(ValueError, match=re.escape("labels[2500, 7] = -1.0")):
        dense(labels, np.zeros((4000, 300)), num_threads=num_threads)


def test_validate_labels_false_computes_the_raw_formula():
    import reference

    labels = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]])
    logits = np.array([[1.0, 2.0, 3.0], [0.5, -0.5, 0.0]])
    loss, grad = dense(labels, logits, validate_labels=False, return_grad=True)
    ref_loss, ref_grad = reference.dense_xent(labels, logits)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------

BAD_VALUES = {
    "complex": np.array([[1.0 + 1j, 2.0, 3.0]]),
    "complex64": np.array([[1.0, 2.0, 3.0]], dtype=np.complex64),
    "object": np.array([[1.0, 2.0, 3.0]], dtype=object),
    "str": np.array([["1.0", "2.0", "3.0"]]),
    "bytes": np.array([[b"1", b"2", b"3"]]),
    "datetime": np.array([[1, 2, 3]], dtype="datetime64[s]"),
}


@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
def test_non_real_logits_are_a_type_error(kind):
    x = BAD_VALUES[kind]
    for name, call in call_each(x):
        with pytest.raises(TypeError):
            call()


@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
def test_non_real_dense_labels_are_a_type_error(kind):
    with pytest.raises(TypeError):
        dense(BAD_VALUES[kind], np.zeros((1, 3)), validate_labels=False)


@pytest.mark.parametrize("labels", [
    np.array([True, False]), np.array([0.0, 1.0]), np.array([0.0, 1.0], dtype=np.float32),
    [0.0, 1.0], np.array([0, 1], dtype=np.complex128), np.array(["0", "1"]),
    np.array([0, 1], dtype=object),
])
def test_sparse_labels_must_be_integers(labels):
    out, grad_out = sentinel(2), sentinel((2, 3))
    with pytest.raises(TypeError):
        sparse(labels, np.zeros((2, 3)), out=out, grad_out=grad_out)
    assert_sentinel(out, grad_out)


RAGGED = [[1.0, 2.0], [1.0]]


@pytest.mark.parametrize("name,call", [
    ("logits", lambda: xentc.softmax(RAGGED)),
    ("logits", lambda: xentc.logsumexp(RAGGED)),
    ("labels", lambda: dense(RAGGED, np.zeros((2, 2)))),
    ("logits", lambda: dense(np.zeros((2, 2)), RAGGED)),
    ("labels", lambda: sparse([[0], [0, 1]], np.zeros((2, 2)))),
    ("where", lambda: xentc.softmax(np.zeros((2, 2)), where=[[True], [True, False]])),
    ("target", lambda: xentc.cross_entropy(np.zeros((2, 2)), RAGGED)),
    ("weight", lambda: xentc.cross_entropy(np.zeros((2, 2)), [0, 1], weight=RAGGED)),
    ("labels", lambda: xentc.sigmoid_cross_entropy_with_logits(RAGGED, np.zeros(2))),
    ("pos_weight", lambda: xentc.sigmoid_cross_entropy_with_logits(np.zeros(2), np.zeros(2),
                                                                   pos_weight=RAGGED)),
    ("output", lambda: xentc.categorical_crossentropy(np.zeros((2, 2)), RAGGED)),
    ("target", lambda: xentc.binary_crossentropy(RAGGED, np.zeros((2, 2)))),
    ("labels", lambda: xentc.score(np.zeros((2, 2)), RAGGED)),
])
def test_a_ragged_sequence_is_named(name, call):
    # NumPy's own message ("setting an array element with a sequence ...") names no argument
    with pytest.raises(ValueError, match=f"^{name} could not be converted to an array: .*inhomogeneous"):
        call()


# --------------------------------------------------------------------------
# num_threads
# --------------------------------------------------------------------------

@pytest.mark.parametrize("num_threads", [0, -1, -8])
def test_num_threads_must_be_positive(num_threads):
    for name, call in call_each(np.zeros((3, 4)), num_threads=num_threads):
        with pytest.raises(ValueError, match="num_threads"):
            call()
    out = sentinel(3)
    with pytest.raises(ValueError, match="num_threads"):
        dense(np.full((3, 4), 0.25), np.zeros((3, 4)), out=out, num_threads=num_threads)
    assert_sentinel(out)


@pytest.mark.parametrize("num_threads", [1.0, 2.5, "2", True, False, [2], np.float64(2.0)])
def test_num_threads_must_be_an_integer(num_threads):
    for name, call in call_each(np.zeros((3, 4)), num_threads=num_threads):
        with pytest.raises(TypeError):
            call()


@pytest.mark.parametrize("num_threads", [None, 1, 2, np.int64(3), np.uint8(4), 1000])
def test_num_threads_accepts_none_and_integers(num_threads):
    x = np.random.default_rng(3).normal(size=(3, 4))
    expected = xentc.softmax(x, num_threads=1)
    for name, call in call_each(x, num_threads=num_threads):
        call()
    assert np.array_equal(xentc.softmax(x, num_threads=num_threads), expected)


def test_label_sum_checks_agree_at_the_tolerance():
    # float32 label rows of 3001 classes whose sum sits within a few ulp of the
    # 1e-3 tolerance: the check in the kernel's pass (a loss-only call) and the
    # separate check run before a gradient goes straight into grad_out must add
    # the labels in the same order and accept or reject the same rows
    n = 3001
    rng = np.random.default_rng(17)
    logits = rng.normal(size=n).astype(np.float32)
    verdicts = set()
    for k in range(-40, 41):
        y = rng.uniform(0.0, 1.0, n)
        y = (y / y.sum() * (1 + 1e-3 + k * 5e-9)).astype(np.float32)
        results = []
        for kwargs in ({}, {"grad_out": np.empty_like(logits)}):
            try:
                dense(y, logits, **kwargs)
                results.append(True)
            except ValueError:
                results.append(False)
        assert results[0] == results[1], f"row {k}: the two checks disagree ({results})"
        verdicts.add(results[0])
    assert verdicts == {True, False}   # rows on both sides of the tolerance
