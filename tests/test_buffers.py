"""The buffer cache (xentc/_buffers.pyx): large results xentc allocates reuse the memory of
results the caller has dropped.

What must hold: a result's memory is reused only once nothing references it (not the
result, not any view of it); a reused buffer gives bitwise the results of fresh memory
(including the streaming stores it enables); the cache never holds more than its capacity
or 8 blocks; it can be turned off, emptied, and sized from the environment; bad sizes are
refused with a message naming the argument, the value and the valid range.
"""
import concurrent.futures
import gc
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import skip_if_sanitized

import xentc
from xentc import _buffers, _kernels

MIN = _buffers.min_bytes()     # 4 MiB: smaller results come from NumPy
C = 1000


@pytest.fixture(autouse=True)
def fresh_cache():
    """Every test starts with an empty cache at the default capacity, and leaves it so."""
    gc.collect()
    old = xentc.set_buffer_cache(1 << 30)
    xentc.empty_buffer_cache()
    yield
    gc.collect()
    xentc.set_buffer_cache(old)
    xentc.empty_buffer_cache()


def _info():
    return xentc.show_config(file=False)["buffer_cache"]


def _data(n_rows, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n_rows, C)) * 4).astype(dtype)
    labels = rng.integers(0, C, n_rows)
    return x, labels


def _rows_for(nbytes, dtype=np.float32):
    return -(-nbytes // (C * np.dtype(dtype).itemsize))


def _grad(x, labels):
    return xentc.sparse_softmax_cross_entropy_with_logits(labels, x, return_grad=True)[1]


def _fresh_grad(x, labels):
    """The gradient in memory from NumPy (cache off), for comparison."""
    old = xentc.set_buffer_cache(0)
    try:
        return _grad(x, labels)
    finally:
        xentc.set_buffer_cache(old)


def test_a_dropped_result_is_reused_and_gives_the_same_bits():
    x, labels = _data(_rows_for(MIN) + 3)
    expected = _fresh_grad(x, labels)
    g = _grad(x, labels)
    assert _buffers.block_of(g) is not None and not _buffers.reused(g)
    address = g.ctypes.data
    np.testing.assert_array_equal(g, expected)
    g[...] = np.nan                     # stale values: the next result must overwrite them all
    del g
    assert _info()["held_blocks"] == 1
    reused_before = _info()["reused_results"]
    g = _grad(x, labels)
    assert _buffers.reused(g) and g.ctypes.data == address
    assert _info()["held_blocks"] == 0 and _info()["reused_results"] == reused_before + 1
    np.testing.assert_array_equal(g, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["sparse", "dense", "dense-unchecked"])
def test_reused_memory_streams_and_gives_the_same_bits(dtype, kind):
    """A reused buffer is written with streaming stores (threshold 0 here: every size)."""
    x, labels = _data(_rows_for(MIN, dtype) + 1, dtype, seed=1)
    x[0] = -np.inf
    x[1, 5] = np.nan
    x[2, ::2] -= 1000
    y = np.zeros_like(x)
    y[np.arange(len(x)), labels] = 0.75
    y[np.arange(len(x)), (labels + 1) % C] = 0.25

    def grad():
        if kind == "sparse":
            return _grad(x, labels)
        return xentc.softmax_cross_entropy_with_logits(
            y, x, return_grad=True, validate_labels=kind == "dense")[1]

    old = xentc.set_buffer_cache(0)
    expected = grad()
    xentc.set_buffer_cache(old)
    threshold = _kernels._stream_bytes(0)
    try:
        grad()       # a first result, from fresh memory, dropped at once
        before = _kernels._streamed_calls()
        g = grad()
        assert _buffers.reused(g)
        assert _kernels._streamed_calls() == before + 1
    finally:
        _kernels._stream_bytes(threshold)
    np.testing.assert_array_equal(g, expected)


def _at_offset(a, offset):
    """A copy of a whose data starts `offset` bytes past a 64-byte boundary."""
    raw = np.empty(a.nbytes + 64, np.uint8)
    start = (offset - raw.ctypes.data) % 64
    view = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    view[...] = a
    assert view.ctypes.data % 64 == offset
    return view


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_dense_gradient_starts_as_far_past_a_cache_line_as_the_labels(dtype):
    # (see _buffers: the output pass's loads of the labels are then aligned
    # where its streaming stores are); a reused block at another offset than
    # before, and results the same as in NumPy's memory
    x, labels = _data(_rows_for(MIN, dtype) + 2, dtype, seed=5)
    y = np.zeros_like(x)
    y[np.arange(len(x)), labels] = 1

    def grad(y):
        return xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True)[1]

    old = xentc.set_buffer_cache(0)
    expected = grad(y)
    xentc.set_buffer_cache(old)
    size = np.dtype(dtype).itemsize
    reused_before = _info()["reused_results"]
    offsets = [16, 0, 48, 8, 32, 64 - size]   # 64 - size: the last one, into a block of the same size
    for i, offset in enumerate(offsets):
        y_at = _at_offset(y, offset)
        g = grad(y_at)
        assert _buffers.block_of(g) is not None and _buffers.reused(g) == (i > 0)
        assert g.ctypes.data % 64 == offset - offset % size   # within the item size
        np.testing.assert_array_equal(g, expected)
        g[...] = np.nan
        del g
    assert _info()["reused_results"] == reused_before + len(offsets) - 1
    # the sparse gradient, whose pass reads no labels row, starts on a line
    g = _grad(_at_offset(x, 16), labels)
    assert _buffers.block_of(g) is not None and g.ctypes.data % 64 == 0


def test_empty_like_rounds_the_offset_down_to_the_item_size():
    like = _at_offset(np.zeros(10, np.float32), 36)
    for dtype, expected in [(np.float32, 36), (np.float64, 32), (np.complex128, 32)]:
        a = _buffers.empty((MIN // np.dtype(dtype).itemsize + 1,), dtype, like)
        assert a.ctypes.data % 64 == expected and a.flags.writeable and a.flags.c_contiguous
    assert _buffers.empty((MIN // 4 + 1,), np.float32).ctypes.data % 64 == 0


def test_memory_under_a_live_view_is_never_reused():
    x, labels = _data(_rows_for(MIN))
    g = _grad(x, labels)
    row = g[7]                      # a view outlives the result
    col = g[:, 3:5].T
    kept_row, kept_col = row.copy(), col.copy()
    del g
    gc.collect()
    assert _info()["held_blocks"] == 0
    x2, labels2 = _data(len(x), seed=5)
    g2 = _grad(x2, labels2)         # the same size: would take the memory if it were free
    assert not _buffers.reused(g2)
    assert not np.shares_memory(g2, row) and not np.shares_memory(g2, col)
    np.testing.assert_array_equal(row, kept_row)
    np.testing.assert_array_equal(col, kept_col)
    del row
    assert _info()["held_blocks"] == 0   # col still holds it
    del col
    assert _info()["held_blocks"] == 1


def test_small_results_and_the_caller_s_arrays_do_not_use_the_cache():
    x, labels = _data(_rows_for(MIN) - 1)       # just under 4 MiB
    g = _grad(x, labels)
    assert _buffers.block_of(g) is None
    x, labels = _data(_rows_for(MIN))
    out = np.empty_like(x)
    _, g = xentc.sparse_softmax_cross_entropy_with_logits(labels, x, grad_out=out)
    assert g is out
    del g, out
    assert _info()["held_blocks"] == 0


def test_softmax_and_log_softmax_results_use_it_too():
    x, _ = _data(_rows_for(MIN))
    expected = xentc.log_softmax(x.astype(np.float64)).astype(np.float32)
    xentc.softmax(x)     # dropped at once
    p = xentc.log_softmax(x)
    assert _buffers.reused(p)
    np.testing.assert_allclose(p, expected, rtol=2e-6, atol=2e-6)


def test_capacity_bounds_what_is_held_oldest_first():
    x, labels = _data(_rows_for(MIN))
    nbytes = x.nbytes
    xentc.set_buffer_cache(3 * nbytes)
    grads = [_grad(x, labels) for _ in range(5)]
    addresses = [g.ctypes.data for g in grads]
    for i in range(5):
        grads[i] = None                         # dropped in order 0..4: 0 and 1 are evicted
    info = _info()
    assert info["held_blocks"] == 3 and info["held_bytes"] == 3 * nbytes
    g = _grad(x, labels)
    assert g.ctypes.data == addresses[2]        # the oldest of equal fits
    xentc.set_buffer_cache(nbytes - 1)
    assert _info()["held_blocks"] == 0          # lowering the capacity frees what no longer fits
    del g                                       # larger than the capacity: never held
    assert _info()["held_bytes"] == 0


def test_at_most_eight_blocks():
    x, labels = _data(_rows_for(MIN))
    grads = [_grad(x, labels) for _ in range(10)]
    del grads
    assert _info()["held_blocks"] == 8


def test_a_much_larger_block_is_not_taken_for_a_small_result():
    big_x, big_labels = _data(3 * _rows_for(MIN))
    _grad(big_x, big_labels)                     # dropped at once
    x, labels = _data(_rows_for(MIN))
    g = _grad(x, labels)                         # 3x the size: more than twice, not taken
    assert not _buffers.reused(g) and _info()["held_blocks"] == 1


def test_off_and_empty():
    x, labels = _data(_rows_for(MIN))
    _grad(x, labels)
    held = _info()["held_bytes"]
    assert held >= x.nbytes
    assert xentc.empty_buffer_cache() == held
    assert _info()["held_bytes"] == 0 and xentc.empty_buffer_cache() == 0
    _grad(x, labels)
    assert xentc.set_buffer_cache(0) == 1 << 30
    assert _info() == {"max_bytes": 0, "held_bytes": 0, "held_blocks": 0,
                       "reused_results": _info()["reused_results"]}
    g = _grad(x, labels)
    assert _buffers.block_of(g) is None         # off: NumPy's memory
    del g
    assert _info()["held_blocks"] == 0


def test_python_threads_sharing_the_cache_get_their_own_results():
    n_rows = _rows_for(MIN)
    inputs = [_data(n_rows, seed=s) for s in range(6)]
    expected = [_fresh_grad(x, labels) for x, labels in inputs]

    def work(i):
        for _ in range(8):
            g = _grad(*inputs[i % 6])
            if not np.array_equal(g, expected[i % 6]):
                return False
        return True

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(12)))
    assert _info()["reused_results"] > 0


@pytest.mark.parametrize("value, exc, message", [
    (-1, ValueError, r"max_bytes must be in \[0, 9223372036854775807\] bytes, got -1"),
    (2**63, ValueError, r"max_bytes must be in \[0, 9223372036854775807\] bytes, got 9223"),
    (1.5, TypeError, r"max_bytes must be an integer number of bytes >= 0, got 1.5 of type float"),
    (True, TypeError, r"max_bytes must be an integer number of bytes >= 0, got True"),
    ("1000", TypeError, r"got '1000' of type str"),
    (None, TypeError, r"got None of type NoneType"),
])
def test_bad_capacity_is_refused_and_changes_nothing(value, exc, message):
    if sys.maxsize < 2**63 - 1:
        pytest.skip("the messages name a 64-bit range")
    before = _info()["max_bytes"]
    with pytest.raises(exc, match=message):
        xentc.set_buffer_cache(value)
    assert _info()["max_bytes"] == before


def test_numpy_integers_are_accepted():
    assert xentc.set_buffer_cache(np.int64(5 << 20)) == 1 << 30
    assert _info()["max_bytes"] == 5 << 20


def _run(code, **env):
    return subprocess.run([sys.executable, "-P", "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_the_environment_sets_the_capacity():
    res = _run("import xentc; print(xentc.show_config(file=False)['buffer_cache']['max_bytes'])",
               XENTC_BUFFER_CACHE=" 12345 ")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "12345"


@pytest.mark.parametrize("value", ["-5", "1GB", "2.5", "99999999999999999999"])
def test_a_bad_environment_value_fails_the_import_with_its_name(value):
    res = _run("import xentc", XENTC_BUFFER_CACHE=value)
    assert res.returncode != 0
    assert ("ValueError: the environment variable XENTC_BUFFER_CACHE must be a whole number of "
            f"bytes in [0, 9223372036854775807], got {value!r}") in res.stderr


def test_an_empty_environment_value_means_the_default():
    res = _run("import xentc; print(xentc.show_config(file=False)['buffer_cache']['max_bytes'])",
               XENTC_BUFFER_CACHE=" ")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(1 << 30)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@skip_if_sanitized("ASan holds freed memory in quarantine, so the RSS grows by some 50 MB over "
                   "the 300 steps whatever the cache does; the other CI runs measure it")
def test_a_training_loop_holds_one_gradient_not_one_per_step():
    """300 steps of a 16 MiB gradient, each dropped at the next step: the process grows by
    about one gradient (the one held), not by the steps; with the cache off, the same."""
    script = """
        import gc, os, sys
        import numpy as np
        import xentc

        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        x = np.random.default_rng(0).standard_normal((4096, 1000)).astype(np.float32)
        labels = np.arange(4096) % 1000
        grad = None
        for step in range(300):
            if step == 10:
                gc.collect()
                before = rss()
            loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(labels, x, return_grad=True)
            x -= 0.01 * grad
        gc.collect()
        print(before, rss(), xentc.show_config(file=False)["buffer_cache"]["reused_results"])
    """
    res = _run(script)
    assert res.returncode == 0, res.stderr
    before, after, reused = map(int, res.stdout.split())
    assert after - before < 8 << 20, f"RSS grew by {(after - before) / 2**20:.1f} MiB"
    assert reused >= 290


def _poison(nbytes):
    """Leave a dropped block of nbytes full of NaN in the cache."""
    block = _buffers.empty((nbytes // 4,), np.float32)
    block[...] = np.nan
    del block
    assert _info()["held_blocks"] == 1


N_ROWS = _rows_for(MIN) + 5


def _poison_cases():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((N_ROWS, C)) * 3).astype(np.float32)
    x[4, 5:] = -np.inf
    labels = rng.integers(0, C, N_ROWS)
    ignored = labels.copy()
    ignored[::3] = -100
    y = rng.random((N_ROWS, C)).astype(np.float32)
    y /= y.sum(axis=1, keepdims=True)
    where = rng.random((N_ROWS, C)) < 0.7
    b = (rng.random((N_ROWS, C)) < 0.3).astype(np.float32)
    return {
        "sparse": lambda: xentc.sparse_softmax_cross_entropy_with_logits(labels, x,
                                                                          return_grad=True),
        "sparse-where": lambda: xentc.sparse_softmax_cross_entropy_with_logits(
            labels, x, return_grad=True, where=where),
        "dense": lambda: xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True),
        "cross_entropy-ignore": lambda: xentc.cross_entropy(x, ignored, return_grad=True,
                                                            label_smoothing=0.1),
        "cross_entropy-probs": lambda: xentc.cross_entropy(x, y, return_grad=True,
                                                           reduction="sum"),
        "sigmoid": lambda: xentc.sigmoid_cross_entropy_with_logits(b, x, return_grad=True),
        "softmax-where": lambda: xentc.softmax(x, where=where),
    }


@pytest.mark.parametrize("case", sorted(_poison_cases()))
def test_every_large_result_overwrites_a_reused_block_whole(case):
    """Fresh pages come zeroed; a reused block holds the last result's values.  A block of
    NaN left in the cache must not show through anywhere in the next result."""
    call = _poison_cases()[case]
    old = xentc.set_buffer_cache(0)
    expected = call()
    xentc.set_buffer_cache(old)
    _poison(N_ROWS * C * 4)
    reused_before = _info()["reused_results"]
    got = call()
    assert _info()["reused_results"] == reused_before + 1, "the poisoned block was not used"
    for e, g in zip(expected if isinstance(expected, tuple) else (expected,),
                    got if isinstance(got, tuple) else (got,)):
        np.testing.assert_array_equal(g, e)


def test_the_caller_cannot_release_the_memory():
    """The array's base is the block itself, not a memoryview of it: memoryview.release()
    would free the memory into the cache while the array still pointed at it."""
    x, labels = _data(_rows_for(MIN))
    g = _grad(x, labels)
    base = g.base
    while isinstance(base, np.ndarray):
        base = base.base
    assert type(base) is _buffers.Block             # not a memoryview: nothing to release
    with pytest.raises(BufferError, match="empty xentc buffer block"):
        memoryview(_buffers.Block())


def test_results_larger_than_the_capacity_are_numpy_s():
    x, labels = _data(_rows_for(2 * MIN))
    xentc.set_buffer_cache(x.nbytes - 1)
    g = _grad(x, labels)
    assert _buffers.block_of(g) is None


@pytest.mark.parametrize("make", [lambda x: x.T.copy(), lambda x: x.astype(np.float16)],
                         ids=["axis0", "float16"])
def test_results_written_into_a_copy_of_the_logits_do_not_use_it(make):
    """When the logits must be copied (class axis not last, float16), the result is written
    into that copy, which is NumPy's."""
    x, _ = _data(_rows_for(MIN))
    xs = make(x)
    _poison(x.nbytes)
    p = xentc.log_softmax(xs, axis=0 if xs.shape[0] == C else -1)
    assert _buffers.block_of(p) is None and _info()["held_blocks"] == 1
    assert np.isfinite(p).all()
