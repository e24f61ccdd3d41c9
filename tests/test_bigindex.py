"""64-bit indexing: a row of more than 2**31 elements, and rows whose offset
i * C passes 2**31 elements.

Every index, row offset and count in the kernels must be 64-bit (ptrdiff_t,
Py_ssize_t, int64_t): an `int` offset would wrap at 2**31 elements and read or
write the wrong memory, and a `long` count is 32 bits on Windows.  These cases
put what they check past 2**31: the row's max, the label's logit and the
gradient entries in a single row of 2**31 + 3 float32 logits; the rows
starting past element 2**31 in multi-row arrays, reached once through the C
row loop (x + i * n) and once through the Cython kernels' chunk offsets.

Memory: each case holds one float32 array of 8.6 to 9.2 GB, dropped (del +
gc) when it ends.  The arrays are np.zeros, and Linux backs pages that are
only read by its shared zero page, so only the in-place gradient makes its
8.6 GB resident; the check below still asks for the whole array plus a 1.5 GB
margin in MemAvailable.  A case skips when that is short, unless
XENTC_REQUIRE_BIGMEM=1 (CI sets it) turns the skip into a failure.  Marked
`bigmem`: deselect with `-m "not bigmem"`.

Expected values are exact float64 numbers from the multiset of values in a
row ({value: count}, see _lse), not from xentc.
"""
import gc
import math
import os
import sys

import numpy as np
import pytest

import xentc
from conftest import F32, assert_close

pytestmark = pytest.mark.bigmem

K = 2**31
N_ROW = K + 3             # one row: indices K, K + 1, K + 2 lie past 2**31
C16 = 143_165_577         # 16 rows of C16: row 15 starts at 15 * C16 = 2**31 + 7
MARGIN = 1.5e9            # bytes kept free besides the array


def _mem_available():
    """MemAvailable of /proc/meminfo in bytes, or None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _require_memory(nbytes):
    """Skip (or fail, with XENTC_REQUIRE_BIGMEM=1) unless nbytes + MARGIN are available."""
    need = nbytes + MARGIN
    avail = _mem_available()
    if sys.maxsize > 2**32 and avail is not None and avail >= need:
        return
    have = "unknown (no /proc/meminfo)" if avail is None else f"{avail / 1e9:.1f} GB"
    reason = (f"needs {nbytes / 1e9:.1f} GB for its array + {MARGIN / 1e9:.1f} GB margin = "
              f"{need / 1e9:.1f} GB of MemAvailable, have {have}")
    if sys.maxsize <= 2**32:
        reason = "needs a 64-bit Python"
    if os.environ.get("XENTC_REQUIRE_BIGMEM") == "1":
        pytest.fail(f"{reason} (XENTC_REQUIRE_BIGMEM=1 makes this a failure)", pytrace=False)
    pytest.skip(f"{reason} (set XENTC_REQUIRE_BIGMEM=1 to make this a failure)")


@pytest.fixture
def zeros32():
    """make(shape): np.zeros(shape, float32) after the memory check; dropped when the test ends."""
    held = []

    def make(shape):
        _require_memory(math.prod(shape) * 4)
        held.append(np.zeros(shape, np.float32))
        return held[-1]

    yield make
    held.clear()
    gc.collect()


def _lse(parts):
    """log(sum of count * exp(value)) over {value: count}, in float64."""
    m = max(parts)
    return m + math.log(math.fsum(c * math.exp(v - m) for v, c in parts.items()))


def test_long_row_sparse_loss_lse_and_grad_in_place(zeros32):
    """One row of 2**31 + 3 logits, 0 but for three values; the max and the
    label's logit lie past 2**31.  The gradient overwrites the logits."""
    x = zeros32((1, N_ROW))
    label = N_ROW - 1                    # the last element, index 2**31 + 2
    x[0, 1] = -2.0
    x[0, K + 1] = 1.5                    # the max
    x[0, label] = 0.75
    lse = _lse({0.0: N_ROW - 3, -2.0: 1, 1.5: 1, 0.75: 1})

    loss, grad, got_lse = xentc.sparse_softmax_cross_entropy_with_logits(
        np.array([label]), x, grad_out=x, return_lse=True, num_threads=2)
    assert grad is x
    assert_close(loss, [lse - 0.75], F32, what="loss")
    assert_close(got_lse, [lse], F32, what="lse")

    at = np.array([0, 1, K - 1, K, K + 1, K + 2])
    logit = np.array([0.0, -2.0, 0.0, 0.0, 1.5, 0.75])
    assert_close(grad[0, at], np.exp(logit - lse) - (at == label), F32,
                 what=f"gradient at {at.tolist()}")
    # softmax sums to 1 and the one-hot takes 1: the sum is 0 up to the float32
    # rounding of the 2**31 equal entries (a few ulps of their total, 1); a
    # stretch of the row left unwritten or written twice would show here
    total = np.add.reduce(grad.reshape(-1), dtype=np.float64)
    assert abs(total) <= 1e-6, f"the gradient sums to {total!r}, not 0"


def test_long_row_ties_and_rank_score(zeros32):
    """The max (0) tied by 2**31 + 1 elements, one of them the label at the
    end: the tie count and the label's rank (2**31: the ties before it) pass
    2**31, counted in xentc.score's one read of the row."""
    x = zeros32((1, N_ROW))
    label = N_ROW - 1
    x[0, 1] = -2.0
    x[0, K + 1] = -1.5
    lse = _lse({0.0: N_ROW - 2, -2.0: 1, -1.5: 1})
    rank = N_ROW - 3                     # the zeros before the label: 2**31

    r = xentc.score(x, np.array([label]), top_k=(rank, rank + 1), num_threads=2)
    assert r.rows == 1
    assert_close(np.float32(r.loss_sum), lse, F32, what="loss")   # a float32 loss, widened
    assert r.accuracy == 0.0
    assert r.top_k_accuracy == {rank: 0.0, rank + 1: 1.0}, "the label's rank is not 2**31"
    # one row, a miss: ECE = its confidence, 1 / (1 + s) = exp(-lse) here (in float64)
    assert r.expected_calibration_error == pytest.approx(math.exp(-lse), rel=1e-9)


def test_row_offset_past_2_31_in_the_row_loop(zeros32):
    """16 rows of C16: the Cython kernel hands all 16 (one chunk) to the C row
    loop, which computes row 15's offset 15 * C16 = 2**31 + 7 itself."""
    x = zeros32((16, C16))
    rows = np.arange(16)
    cols = C16 - 1 - 5 * rows            # one value per row, near its end
    vals = 0.125 * (rows + 1)
    x[rows, cols] = vals
    odd = rows % 2 == 1                  # odd rows: the label is that value (the max);
    labels = np.where(odd, cols, rows * (C16 // 16))   # even rows: a 0 along the row

    loss, lse = xentc.sparse_softmax_cross_entropy_with_logits(
        labels, x, return_lse=True, num_threads=2)
    ref_lse = np.array([_lse({0.0: C16 - 1, v: 1}) for v in vals])
    assert_close(lse, ref_lse, F32, what="lse")
    assert_close(loss, ref_lse - np.where(odd, vals, 0.0), F32, what="loss")


def test_row_offsets_past_2_31_across_threads(zeros32):
    """2.2 million rows of 1000: the Cython kernels' chunk offsets pass 2**31
    (in the second thread's half), checked on logsumexp for every row."""
    n_rows, c = 2_200_000, 1000
    x = zeros32((n_rows, c))
    first_past = K // c + 1              # the first row that starts past 2**31
    special = {0: 1.0, first_past - 1: 2.0, first_past: 3.0, n_rows - 1: 4.0}
    for i, v in special.items():
        x[i, K % c if i == first_past - 1 else c - 1] = v   # row first_past - 1: element 2**31 itself

    got = xentc.logsumexp(x, num_threads=2)
    ref = np.full(n_rows, _lse({0.0: c}))
    for i, v in special.items():
        ref[i] = _lse({0.0: c - 1, v: 1})
    assert_close(got, ref, F32, what="logsumexp per row")
