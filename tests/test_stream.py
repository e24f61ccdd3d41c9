"""Streaming stores of large gradients into grad_out (stream_scratch in _xentc_rows_impl.h).

A grad_out of the caller's (not the logits), or a gradient of xentc's in memory from the
buffer cache (tests/test_buffers.py), of at least _kernels._stream_bytes() bytes (32 MiB)
is written once, with streaming stores, from terms kept in a scratch row, instead of
through the cache.
Only where the values go changes, not how they are computed, so the results must be
bitwise those of the cached path.  The threshold is set to 0 here, so that small arrays
take the streaming path: rows of every length class (one block, several blocks, longer
than the stored-terms limit), special values, and gradients at every alignment.
"""
import gc

import numpy as np
import pytest

import xentc
from xentc import _buffers, _kernels

STORE_N = {np.float32: 262144, np.float64: 131072}   # _xentc_rows_impl.h: 1 MiB of terms


@pytest.fixture
def threshold():
    """set(bytes) sets the streaming threshold; the old one is restored after the test."""
    old = _kernels._stream_bytes()
    yield _kernels._stream_bytes
    _kernels._stream_bytes(old)


def _logits(dtype, n_rows, n):
    rng = np.random.default_rng(n_rows * 7919 + n)
    x = (rng.standard_normal((n_rows, n)) * 3).astype(dtype)
    labels = rng.integers(0, n, n_rows)
    specials = [
        lambda r: r.__setitem__(slice(None), r.max()),                   # every logit ties
        lambda r: r.__setitem__(slice(1, None, 3), -np.inf),             # -inf among them
        lambda r: r.__setitem__(slice(None), -np.inf),                   # undefined row
        lambda r: r.__setitem__(n // 2, np.nan),                         # NaN
        lambda r: r.__setitem__(n - 1, np.inf),                          # a +inf max
        lambda r: r.__setitem__(slice(0, n // 2), r[: n // 2] - 1000),   # blocks far below the max
        lambda r: r.__setitem__(0, r.max() + 50),                        # a confident row
    ]
    for i, f in enumerate(specials[: n_rows]):
        f(x[i])
    labels[n_rows - 1] = int(np.argmax(x[n_rows - 1]))                   # the label ties the max
    y = rng.random((n_rows, n))
    y[:, ::5] = 0
    y /= y.sum(axis=1, keepdims=True)
    return x, labels, y.astype(dtype)


def _buffer(shape, dtype, offset):
    """An uninitialised C-contiguous array `offset` elements past a 64-byte boundary."""
    item = np.dtype(dtype).itemsize
    raw = np.empty(int(np.prod(shape)) * item + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset * item
    out = raw[start:start + int(np.prod(shape)) * item].view(dtype).reshape(shape)
    out[...] = 7   # stale values: every element must be written
    return out


def _call(task, x, labels, y, grad_out):
    if task == "sparse":
        return xentc.sparse_softmax_cross_entropy_with_logits(
            labels, x, return_grad=True, grad_out=grad_out, return_lse=True)
    return xentc.softmax_cross_entropy_with_logits(
        y, x, return_grad=True, grad_out=grad_out, return_lse=True, validate_labels=False)


SHAPES = [(9, 33), (9, 1000), (8, 2048), (7, 4100), (3, "store"), (7, "store+")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("task", ["sparse", "dense"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_streaming_matches_cached(threshold, dtype, task, shape):
    n_rows, n = shape
    if n == "store":
        n = STORE_N[dtype] - 3
    elif n == "store+":
        n = STORE_N[dtype] + 5   # rows that take the exp again instead of keeping terms
    x, labels, y = _logits(dtype, n_rows, n)
    threshold(1 << 62)
    ref = _call(task, x.copy(), labels, y, None)
    threshold(0)
    gc.collect()                  # a block in a reference cycle would come back later
    xentc.empty_buffer_cache()
    # "new": xentc allocates the gradient (fresh pages: never streamed); "reused": from the
    # buffer cache (a dropped gradient's mapped pages: streamed when the cache holds it,
    # for gradients of at least 4 MiB)
    for offset in ("new", "reused", 0, 1, 3):
        grad_out = _buffer(x.shape, dtype, offset) if isinstance(offset, int) else None
        before = _kernels._streamed_calls()
        got = _call(task, x.copy(), labels, y, grad_out)
        streamed = isinstance(offset, int) or (
            offset == "reused" and x.nbytes >= _buffers.min_bytes())
        assert _buffers.reused(got[1]) == (streamed and grad_out is None)
        assert _kernels._streamed_calls() - before == streamed
        for r, g, what in zip(ref, got, ("loss", "grad", "lse")):
            np.testing.assert_array_equal(g, r, err_msg=f"{what}, gradient offset {offset}")
        if grad_out is not None:
            assert got[1] is grad_out
        del got   # a gradient of xentc's goes back to the buffer cache for "reused"


@pytest.mark.parametrize("task", ["sparse", "dense"])
def test_in_place_unchanged_by_threshold(threshold, task):
    """grad_out=logits never streams (its lines were just read), and stays correct."""
    x, labels, y = _logits(np.float32, 9, 1000)
    threshold(1 << 62)
    ref = _call(task, x.copy(), labels, y, None)
    threshold(0)
    xi = x.copy()
    before = _kernels._streamed_calls()
    got = _call(task, xi, labels, y, xi)
    assert _kernels._streamed_calls() == before
    assert got[1] is xi
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("task", ["sparse", "dense"])
def test_where_not_streamed(threshold, task):
    """A where= mask keeps the cached path (stream_scratch), with the same results."""
    x, labels, y = _logits(np.float64, 9, 1000)
    where = np.ones_like(x, dtype=bool)
    where[:, 1::7] = False
    where[np.arange(9), labels] = True
    kw = {"where": where}
    call = (lambda g: xentc.sparse_softmax_cross_entropy_with_logits(labels, x, grad_out=g, **kw))
    if task == "dense":
        call = (lambda g: xentc.softmax_cross_entropy_with_logits(y, x, grad_out=g, **kw))
    threshold(1 << 62)
    ref = call(_buffer(x.shape, np.float64, 1))
    threshold(0)
    before = _kernels._streamed_calls()
    got = call(_buffer(x.shape, np.float64, 1))
    assert _kernels._streamed_calls() == before
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(g, r)


def test_threshold_default():
    assert _kernels._stream_bytes() == 1 << 25
