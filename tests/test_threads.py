"""Threads: bit-identical results for every num_threads, concurrent callers, the GIL,
and OMP_NUM_THREADS / threadpoolctl as the default team size."""
import dataclasses
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import reference
import xentc
from conftest import F32, F64, assert_close

# big enough that every thread count below really starts threads
N_ROWS, N_CLASSES = 4000, 300
THREAD_COUNTS = [1, 2, 3, 7, None]


def make_inputs(dtype, n=N_ROWS, c=N_CLASSES, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, c)) * 5).astype(dtype)
    x[rng.random((n, c)) < 0.01] = -np.inf
    x[17, 3] = np.nan
    x[n // 2] = -np.inf
    x[n // 3, c // 2] = np.inf
    y = rng.random((n, c)).astype(dtype)
    y /= y.sum(axis=1, keepdims=True, dtype=np.float64).astype(dtype)
    labels = rng.integers(0, c, size=n)
    return x, y, labels


def run_all(x, y, labels, num_threads):
    loss, grad = xentc.softmax_cross_entropy_with_logits(
        y, x, return_grad=True, validate_labels=False, num_threads=num_threads)
    sloss, sgrad = xentc.sparse_softmax_cross_entropy_with_logits(
        labels, x, return_grad=True, num_threads=num_threads)
    return {
        "dense loss": loss, "dense grad": grad, "sparse loss": sloss, "sparse grad": sgrad,
        "softmax": xentc.softmax(x, num_threads=num_threads),
        "log_softmax": xentc.log_softmax(x, num_threads=num_threads),
        "logsumexp": xentc.logsumexp(x, num_threads=num_threads),
        "logsumexp axis 0": xentc.logsumexp(x, axis=0, num_threads=num_threads),
        "softmax axis 0": xentc.softmax(x, axis=0, num_threads=num_threads),
    }


# (rows, classes): few classes (several rows per SIMD vector), one block, several blocks
SHAPES = [(50000, 7), (30000, 32), (4000, 300), (60, 20000)]


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{c}" for n, c in SHAPES])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_results_are_bit_identical_for_every_thread_count(dtype, shape):
    x, y, labels = make_inputs(dtype, *shape)
    base = run_all(x, y, labels, 1)
    for nt in THREAD_COUNTS[1:]:
        got = run_all(x, y, labels, nt)
        for name, value in got.items():
            assert np.array_equal(value, base[name], equal_nan=True), f"{name}, num_threads={nt}"
    # and the single-thread results are right
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    ref_loss, ref_grad = reference.dense_xent(y64, x64)
    assert_close(base["dense loss"], ref_loss, dtype, reference.error_scale_dense_loss(y64, x64))
    assert_close(base["dense grad"], ref_grad, dtype, reference.error_scale_dense_grad(y64, x64))
    assert_close(base["logsumexp"], reference.logsumexp(x64), dtype, reference.error_scale_logsumexp(x64))


def test_in_place_is_bit_identical_for_every_thread_count():
    x0, y, labels = make_inputs(F32, seed=1)
    expected = None
    for nt in THREAD_COUNTS:
        x = x0.copy()
        loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(labels, x, grad_out=x, num_threads=nt)
        if expected is None:
            expected = (loss, x.copy())
        assert np.array_equal(loss, expected[0], equal_nan=True)
        assert np.array_equal(x, expected[1], equal_nan=True)


def test_threadpoolctl_limits_do_not_change_results():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    x, y, labels = make_inputs(F64, seed=2)
    base = run_all(x, y, labels, None)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        limited = run_all(x, y, labels, None)
    for name in base:
        assert np.array_equal(base[name], limited[name], equal_nan=True), name


def test_concurrent_calls_from_python_threads():
    # 8 Python threads, each with its own shapes, dtypes, functions and num_threads
    rng = np.random.default_rng(3)
    tasks = []
    shapes = [(4000, 300), (1000, 77), (257, 1000), (5, 3), (3000, 2, 50), (1, 100000), (0, 4), (64, 1)]
    for i, shape in enumerate(shapes):
        dtype = [F32, F64][i % 2]
        x = (rng.normal(size=shape) * 4).astype(dtype)
        labels = rng.integers(0, shape[-1], size=shape[:-1])
        y = np.zeros(shape, dtype)
        np.put_along_axis(y, labels[..., None], 1, axis=-1)
        nt = [1, 2, 3, 7, None, 2, 3, 1][i]
        calls = [
            lambda x=x, y=y, nt=nt: xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True,
                                                                            num_threads=nt),
            lambda x=x, labels=labels, nt=nt: xentc.sparse_softmax_cross_entropy_with_logits(
                labels, x, return_grad=True, num_threads=nt),
            lambda x=x, nt=nt: (xentc.softmax(x, num_threads=nt),),
            lambda x=x, nt=nt: (xentc.log_softmax(x, num_threads=nt),),
            lambda x=x, nt=nt: (xentc.logsumexp(x, num_threads=nt),),
        ]
        # what a single-threaded, serial call gives
        expected = [
            xentc.softmax_cross_entropy_with_logits(y, x, return_grad=True, num_threads=1),
            xentc.sparse_softmax_cross_entropy_with_logits(labels, x, return_grad=True, num_threads=1),
            (xentc.softmax(x, num_threads=1),),
            (xentc.log_softmax(x, num_threads=1),),
            (xentc.logsumexp(x, num_threads=1),),
        ]
        # and the serial results are right
        assert_close(expected[1][0], reference.sparse_xent(labels, x.astype(np.float64))[0], dtype,
                     reference.error_scale_sparse_loss(labels, x.astype(np.float64)))
        tasks.append((calls, expected))

    barrier = threading.Barrier(len(tasks))

    def worker(task):
        calls, expected = task
        barrier.wait()
        for _ in range(4):
            for call, exp in zip(calls, expected):
                got = call()
                for g, e in zip(got, exp):
                    if not np.array_equal(g, e):
                        return False
        return True

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        results = list(pool.map(worker, tasks))
    assert all(results), results


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp", "dense", "sparse"])
def test_kernels_release_the_gil(name):
    # A Python thread ticking every half millisecond must keep ticking while a
    # long single-threaded kernel runs; if the kernel held the GIL, the ticks
    # would stop for the whole call.  Outputs are written in place and inputs
    # are C-contiguous float64, so the call does little besides the kernel.
    # Several attempts, so that a busy machine does not make it fail; an
    # implementation holding the GIL fails all of them.
    n, c = 1000, 16000
    rng = np.random.default_rng(4)
    x = rng.normal(size=(n, c))
    labels = rng.integers(0, c, size=n)
    y = None
    if name == "dense":
        y = np.zeros((n, c))
        y[np.arange(n), labels] = 1
    call = {
        "softmax": lambda: xentc.softmax(x, out=x, num_threads=1),
        "log_softmax": lambda: xentc.log_softmax(x, out=x, num_threads=1),
        "logsumexp": lambda: xentc.logsumexp(x, num_threads=1),
        "dense": lambda: xentc.softmax_cross_entropy_with_logits(y, x, grad_out=x, num_threads=1),
        "sparse": lambda: xentc.sparse_softmax_cross_entropy_with_logits(labels, x, grad_out=x,
                                                                         num_threads=1),
    }[name]
    call()  # warm up
    attempts = []
    for _ in range(5):
        ticks = []
        stop = threading.Event()

        def ticker():
            while not stop.is_set():
                ticks.append(time.perf_counter())
                time.sleep(0.0005)

        t = threading.Thread(target=ticker)
        t.start()
        time.sleep(0.01)
        t0 = time.perf_counter()
        call()
        t1 = time.perf_counter()
        time.sleep(0.01)
        stop.set()
        t.join()
        edges = [t0] + [s for s in ticks if t0 <= s <= t1] + [t1]
        max_gap = max(b - a for a, b in zip(edges, edges[1:]))
        attempts.append((round(t1 - t0, 4), round(max_gap, 4)))
        if t1 - t0 > 0.005 and max_gap < 0.5 * (t1 - t0):
            return
    pytest.fail(f"the GIL seems held: (duration, longest gap without a tick) per attempt: {attempts}")


# --------------------------------------------------------------------------
# num_threads=None: OpenMP's default team, set by OMP_NUM_THREADS or threadpoolctl.
# Observed from the outside: libgomp keeps its worker threads alive after a
# parallel region, so the process's thread count grows by (team size - 1).
# --------------------------------------------------------------------------

THREAD_PROBE = textwrap.dedent("""
    import os, sys
    import numpy as np
    import xentc

    def n_threads():
        return len(os.listdir("/proc/self/task"))

    x = np.zeros((4000, 300))
    mode = sys.argv[1]
    before = n_threads()
    if mode == "default":
        xentc.softmax(x)
    elif mode == "explicit3":
        xentc.softmax(x, num_threads=3)
    elif mode == "threadpoolctl1":
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=1, user_api="openmp"):
            xentc.softmax_cross_entropy_with_logits(np.full(x.shape, 1 / 300), x)
    print(n_threads() - before)
""")


def _extra_threads(mode, omp_num_threads):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(omp_num_threads)
    env.pop("OMP_THREAD_LIMIT", None)
    env.pop("OMP_DYNAMIC", None)
    res = subprocess.run([sys.executable, "-P", "-c", THREAD_PROBE, mode], env=env,
                         capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir())
    assert res.returncode == 0, res.stderr
    return int(res.stdout.strip().splitlines()[-1])


needs_linux_openmp = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not xentc.openmp_enabled(),
    reason="counts OpenMP worker threads in /proc/self/task (Linux, OpenMP build)")


@needs_linux_openmp
@pytest.mark.parametrize("omp_num_threads", [1, 3])
def test_default_num_threads_follows_omp_num_threads(omp_num_threads):
    assert _extra_threads("default", omp_num_threads) == omp_num_threads - 1


@needs_linux_openmp
def test_explicit_num_threads_overrides_omp_num_threads():
    assert _extra_threads("explicit3", 1) == 2


@needs_linux_openmp
def test_default_num_threads_follows_threadpoolctl():
    pytest.importorskip("threadpoolctl")
    assert _extra_threads("threadpoolctl1", 3) == 0


# --------------------------------------------------------------------------
# Eight Python threads, each calling a different public function on its own
# shape with num_threads 1 or 2, against the same calls made serially first.
# --------------------------------------------------------------------------

def _as_tuple(result):
    if isinstance(result, xentc.ScoreResult):
        return tuple(sorted(dataclasses.asdict(result).items()))
    return result if isinstance(result, tuple) else (result,)


def _same(got, expected):
    got, expected = _as_tuple(got), _as_tuple(expected)
    if len(got) != len(expected):
        return False
    for g, e in zip(got, expected):
        if isinstance(e, np.ndarray) or isinstance(g, np.ndarray):
            g, e = np.asarray(g), np.asarray(e)
            if g.dtype != e.dtype or not np.array_equal(g, e, equal_nan=True):
                return False
        elif g != e:
            return False
    return True


def _mixed_calls():
    """(name, call(num_threads), num_threads used in the thread, check of the serial result)."""
    rng = np.random.default_rng(5)

    def logits(shape, dtype):
        return (rng.normal(size=shape) * 4).astype(dtype)

    def probs(shape, dtype, axis=-1):
        p = rng.random(shape)
        return (p / p.sum(axis=axis, keepdims=True)).astype(dtype)

    x0, l0 = logits((3000, 500), F32), rng.integers(0, 500, size=3000)
    x1, y1 = logits((700, 1000), F64), probs((700, 1000), F64)
    x2, t2 = logits((64, 30, 50), F32), rng.integers(0, 30, size=(64, 50))
    t2[rng.random(t2.shape) < 0.1] = -1
    w2 = rng.random(30).astype(F32) + 0.5
    x3, y3 = logits((2000, 100), F64), probs((2000, 100), F64)
    x4 = logits((50000, 7), F32)
    x5 = logits((300, 2000), F64)
    x6, l6 = logits((5000, 300), F32), rng.integers(0, 300, size=5000)
    x7, y7 = logits((1000, 64), F64), probs((1000, 64), F64)

    def check_sparse(res):
        ref = reference.sparse_xent(l0, x0.astype(np.float64))
        assert_close(res[0], ref[0], F32, reference.error_scale_sparse_loss(l0, x0.astype(np.float64)))

    def check_dense(res):
        assert_close(res[0], reference.dense_xent(y1, x1)[0], F64, reference.error_scale_dense_loss(y1, x1))

    def check_ce(res):
        ref = reference.cross_entropy(x2.astype(np.float64), t2, weight=w2.astype(np.float64),
                                      ignore_index=-1, reduction="none", label_smoothing=0.1, axis=1)
        ref_loss = ref[0] if isinstance(ref, tuple) else ref
        np.testing.assert_allclose(res[0], ref_loss, rtol=1e-4, atol=1e-5)

    def check_ce_sum(res):
        ref = reference.cross_entropy(x3, y3, reduction="sum")
        np.testing.assert_allclose(res, ref[0] if isinstance(ref, tuple) else ref, rtol=1e-10)

    def check_softmax(x, axis, dtype, rtol):
        return lambda res: np.testing.assert_allclose(
            res, reference.softmax(x.astype(np.float64), axis=axis), rtol=rtol, atol=1e-7)

    def check_score(x, labels, top_k):
        def check(res):
            ref = reference.score(x.astype(np.float64), labels, top_k=top_k)
            assert res.rows == ref["rows"]
            np.testing.assert_allclose(res.mean_loss, ref["mean_loss"], rtol=1e-5)
            assert res.accuracy == ref["accuracy"]
            assert res.top_k_accuracy == ref["top_k_accuracy"]
        return check

    return [
        ("sparse", lambda nt: xentc.sparse_softmax_cross_entropy_with_logits(
            l0, x0, return_grad=True, num_threads=nt), 2, check_sparse),
        ("dense", lambda nt: xentc.softmax_cross_entropy_with_logits(
            y1, x1, return_grad=True, num_threads=nt), 1, check_dense),
        ("cross_entropy options", lambda nt: xentc.cross_entropy(
            x2, t2, weight=w2, ignore_index=-1, reduction="none", label_smoothing=0.1, axis=1,
            return_grad=True, num_threads=nt), 2, check_ce),
        ("cross_entropy probabilities", lambda nt: xentc.cross_entropy(
            x3, y3, reduction="sum", num_threads=nt), 1, check_ce_sum),
        ("softmax", lambda nt: xentc.softmax(x4, num_threads=nt), 2, check_softmax(x4, -1, F32, 1e-5)),
        ("softmax axis 0", lambda nt: xentc.softmax(x5, axis=0, num_threads=nt), 1,
         check_softmax(x5, 0, F64, 1e-12)),
        ("score sparse", lambda nt: xentc.score(x6, l6, top_k=(1, 5), num_threads=nt), 2,
         check_score(x6, l6, (1, 5))),
        ("score dense", lambda nt: xentc.score(x7, y7, top_k=(1, 3), batch_rows=128, num_threads=nt), 1,
         check_score(x7, y7, (1, 3))),
    ]


def test_eight_threads_calling_different_functions_match_serial_results():
    calls = _mixed_calls()
    assert len(calls) == 8
    # serially, one thread, before any concurrency; each checked against the reference
    expected = {}
    for name, call, _, check in calls:
        expected[name] = call(1)
        check(expected[name])
    barrier = threading.Barrier(len(calls))

    def worker(item):
        name, call, nt, _ = item
        barrier.wait()
        mismatches = []
        for i in range(3):
            if not _same(call(nt), expected[name]):
                mismatches.append(f"{name}, num_threads={nt}, repeat {i}")
        return mismatches

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        mismatches = [m for ms in pool.map(worker, calls) for m in ms]
    assert not mismatches, mismatches


def test_python_thread_keeps_counting_during_a_long_call():
    # A pure-Python counter runs in a second thread while this thread makes
    # a long single-threaded loss + gradient call.  With the GIL released in
    # the kernel the counter runs at about its solo rate for the whole call;
    # with the GIL held it could only run in the short Python parts between
    # kernels (a few switch intervals of 5 ms, under 15% of a call of 0.3 s
    # or more).  The pass mark, 30% of the solo rate measured just before,
    # leaves room for a busy machine, and any of several attempts may pass.
    n, c = 2048, 32000
    rng = np.random.default_rng(6)
    x = rng.normal(size=(n, c)).astype(F32)
    labels = rng.integers(0, c, size=n)
    loss_out = np.empty(n, F32)
    grad_out = np.empty_like(x)

    def call():
        xentc.sparse_softmax_cross_entropy_with_logits(labels, x, out=loss_out, grad_out=grad_out,
                                                       num_threads=1)

    call()  # warm up (page in the outputs)
    counter = [0]
    running = threading.Event()
    stop = threading.Event()

    def count():
        running.set()
        while not stop.is_set():
            counter[0] += 1

    attempts = []
    t = threading.Thread(target=count, daemon=True)
    t.start()
    try:
        running.wait()
        for _ in range(5):
            # the counter's rate with nothing else running
            c0, t0 = counter[0], time.perf_counter()
            time.sleep(0.1)
            solo_rate = (counter[0] - c0) / (time.perf_counter() - t0)
            # the counter during a few repeats of the call, at least 0.3 s in all
            c0, t0 = counter[0], time.perf_counter()
            repeats = 0
            while repeats < 3 or time.perf_counter() - t0 < 0.3:
                call()
                repeats += 1
            during, elapsed = counter[0] - c0, time.perf_counter() - t0
            share = during / (solo_rate * elapsed)
            attempts.append((repeats, round(elapsed, 3), during, round(share, 3)))
            if during > 1000 and share > 0.3:
                break
        else:
            pytest.fail("a Python thread barely ran during the call; the GIL seems held: "
                        f"(repeats, seconds, increments, share of the solo rate) per attempt: {attempts}")
    finally:
        stop.set()
        t.join()
    # and the call computed the right thing while the counter ran
    sub = slice(0, 64)
    x64 = x[sub].astype(np.float64)
    ref = reference.sparse_xent(labels[sub], x64)
    assert_close(loss_out[sub], ref[0], F32, reference.error_scale_sparse_loss(labels[sub], x64))
