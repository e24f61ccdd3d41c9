"""Leaks: thousands of calls of every public function, success and error paths, in a fresh
process, must not grow its resident memory.

A leaked reference to an input or output (a memoryview acquired in a kernel and never
released, an exception holding a frame that holds the arrays) grows the process by the
size of the arrays per call; a few thousand calls make that many megabytes.  The RSS is
read from /proc/self/statm after a warm-up and at the end, in a subprocess so the test
suite's own allocations do not blur it.
"""
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest
from conftest import skip_if_sanitized

LEAK_SCRIPT = textwrap.dedent("""
    import gc
    import os
    import sys

    import numpy as np
    import xentc

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 100)).astype(np.float32)
    x64 = x.astype(np.float64)
    labels = rng.integers(0, 100, size=64)
    bad_labels = labels.copy()
    bad_labels[3] = 100
    y = rng.random((64, 100))
    y /= y.sum(axis=1, keepdims=True)
    p = xentc.softmax(x64)
    b = (rng.random((64, 100)) < 0.5).astype(np.float64)
    grad_out = np.empty_like(x)
    out = np.empty(64, np.float32)

    def expect(exc, f, *args, **kw):
        try:
            f(*args, **kw)
        except exc:
            return
        raise AssertionError(f"{f.__name__} did not raise {exc.__name__}")

    def one_round():
        # success paths
        xentc.sparse_softmax_cross_entropy_with_logits(labels, x, return_grad=True, num_threads=2)
        xentc.sparse_softmax_cross_entropy_with_logits(labels, x, out=out, grad_out=grad_out)
        xentc.softmax_cross_entropy_with_logits(y, x64, return_grad=True)
        xentc.softmax(x)
        xentc.log_softmax(x64, axis=0)
        xentc.logsumexp(x)
        xentc.cross_entropy(x, labels, weight=np.ones(100, np.float32), label_smoothing=0.1,
                            return_grad=True)
        xentc.cross_entropy(x64, y, reduction="none")
        xentc.sigmoid_cross_entropy_with_logits(b, x64, return_grad=True)
        xentc.categorical_crossentropy(y, p)
        xentc.binary_crossentropy(b, xentc.softmax(x64), from_logits=False)
        xentc.score(x, labels, top_k=(1, 3))
        # error paths: data checks in the kernels, argument checks in Python
        expect(ValueError, xentc.sparse_softmax_cross_entropy_with_logits, bad_labels, x,
               return_grad=True)
        expect(ValueError, xentc.cross_entropy, x, bad_labels)
        expect(ValueError, xentc.softmax_cross_entropy_with_logits, x64, y)  # logits as labels
        expect(ValueError, xentc.score, x, bad_labels)
        expect(ValueError, xentc.categorical_crossentropy, y, x64)            # not probabilities
        expect(ValueError, xentc.binary_crossentropy, b, x64 * 5)             # outside [0, 1]
        expect(ValueError, xentc.softmax, x, num_threads=0)
        expect(ValueError, xentc.sparse_softmax_cross_entropy_with_logits, labels, x,
               grad_out=np.empty((64, 99), np.float32))

    for _ in range(300):   # warm-up: caches, lazily imported modules, the OpenMP team
        one_round()
    gc.collect()
    before = rss()
    n = int(sys.argv[1])
    for _ in range(n):
        one_round()
    gc.collect()
    after = rss()
    print(before, after)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@skip_if_sanitized("ASan holds freed memory in quarantine (256 MB) and maps shadow memory, so "
                   "the RSS grows by ~140 MB over the 3000 rounds without any leak; the other CI "
                   "runs measure it")
def test_thousands_of_calls_do_not_grow_memory():
    n_rounds = 3000
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "leak_script.py")
        with open(path, "w") as f:
            f.write(LEAK_SCRIPT)
        res = subprocess.run([sys.executable, "-P", path, str(n_rounds)], capture_output=True,
                             text=True, timeout=120, cwd=d)
    assert res.returncode == 0, res.stderr
    before, after = map(int, res.stdout.split()[-2:])
    # the logits are 25 KB (float32) or 50 KB: leaking one array per round would be
    # 75 MB or more over 3000 rounds, leaking one small object per call about 6 MB
    growth = after - before
    assert growth < 4 << 20, f"RSS grew by {growth / 2**20:.1f} MB over {n_rounds} rounds"
