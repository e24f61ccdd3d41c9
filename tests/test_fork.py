"""Fork safety: a child forked after the parent ran an OpenMP parallel region must not hang.

GNU OpenMP (libgomp) keeps its worker threads alive after a parallel region; a forked child
inherits the team's bookkeeping but none of the threads, and some libgomp versions and
other runtimes then wait forever for them in the child's first parallel region.  The script
runs in a subprocess with a timeout, so a hang fails this test instead of hanging pytest.
"""
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest
from conftest import SANITIZED

import xentc

# Under ASan (.ci/run's sanitizer stage, XENTC_SANITIZED=1) every fork also copies the page
# tables of ASan's shadow memory, and the script took 76 s on a loaded 2-core machine, so a
# hang is only declared after longer there.
HANG_TIMEOUT = 300 if SANITIZED else 60

needs_fork = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")

FORK_SCRIPT = textwrap.dedent("""
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np
    import xentc

    N, C = 4096, 1000   # far above the work threshold: num_threads=2 starts a team of 2

    def inputs(seed):
        rng = np.random.default_rng(seed)
        x = (rng.normal(size=(N, C)) * 3).astype(np.float32)
        labels = rng.integers(0, C, size=N)
        return labels, x

    def compute(seed):
        labels, x = inputs(seed)
        loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(
            labels, x, return_grad=True, num_threads=2)
        sm = xentc.softmax(x, num_threads=2)
        return loss, grad, sm

    if __name__ == "__main__":
        # the parent runs parallel regions with 2 threads before forking
        expected = {seed: compute(seed) for seed in range(3)}
        # and the parent's results do not depend on the thread count
        for seed in range(3):
            labels, x = inputs(seed)
            one = xentc.sparse_softmax_cross_entropy_with_logits(
                labels, x, return_grad=True, num_threads=1)
            assert np.array_equal(one[0], expected[seed][0])
            assert np.array_equal(one[1], expected[seed][1])

        def check(results, where):
            for seed, got in zip(seeds, results):
                for name, g, e in zip(("loss", "grad", "softmax"), got, expected[seed]):
                    assert g.dtype == e.dtype and g.shape == e.shape, (where, seed, name)
                    assert np.array_equal(g, e), (where, seed, name)

        seeds = [0, 1, 2, 0, 1, 2]   # a few calls in each of the 2 workers
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            check(pool.map(compute, seeds, chunksize=1), "multiprocessing.Pool")
        with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as ex:
            check(list(ex.map(compute, seeds)), "ProcessPoolExecutor")
        # the parent still works after its children are gone
        check([compute(s) for s in seeds], "parent after fork")
        print("ok")
""")


@needs_fork
def test_forked_children_after_parallel_region_do_not_hang():
    # Popen in a session of its own rather than subprocess.run: on a hang the
    # forked workers must be killed too, not left behind as orphans spinning
    # in libgomp.
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "fork_script.py")
        with open(path, "w") as f:
            f.write(FORK_SCRIPT)
        proc = subprocess.Popen([sys.executable, "-P", path], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=d, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=HANG_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"forked children hung (no result within {HANG_TIMEOUT} s); stderr: {err!r}")
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1] == "ok", out
