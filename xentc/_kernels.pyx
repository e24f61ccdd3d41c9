# Design
# ------
# Kernels of xentc: they only compute.  Three layers, one direction:
#   1. _rows.pxd: the math of one row (max shift, log1p of the non-max terms,
#      0 * log 0 = 0); see its header for the formulas.
#   2. this file: `def` kernels taking validated C-contiguous (n_rows, n_classes)
#      memoryviews and preallocated outputs, looping over rows with prange.
#      They never allocate results, never raise on data and never touch Python
#      objects inside the loop.  Each row is written by exactly one thread and
#      no reduction crosses rows, so results are bit-identical for any thread
#      count.  Scanners look for bad labels and return the first bad row; the
#      Python layer formats the message and raises before anything is written.
#   3. _api.py: validation, dtype policy, axis handling, allocation, dispatch.
#
# Kernel math, per row x (z = x - max x, s = sum of exp(z) without the max term):
#   dense_xent:  loss = log1p(s) sum(y) - sum_{y_j != 0} y_j z_j,
#                grad = softmax(x) sum(y) - y
#   sparse_xent: loss = log1p(s) - z_label, grad = softmax(x) - onehot(label)
#   softmax = exp(z) / (1 + s), log_softmax = z - log1p(s),
#   logsumexp = max + log1p(s)

from libc.math cimport fabs
from libc.stdint cimport (int8_t, int16_t, int32_t, int64_t,
                          uint8_t, uint16_t, uint32_t, uint64_t)
from cython cimport floating
from cython.parallel cimport prange, parallel, threadid

from xentc._rows cimport (dense_row, sparse_row, softmax_row, log_softmax_row,
                          logsumexp_row)

cdef extern from "_xentc_omp.h" nogil:
    int XENTC_OPENMP
    int xentc_omp_max_threads()


ctypedef fused index_t:
    int32_t
    int64_t

ctypedef fused any_int:
    int8_t
    int16_t
    int32_t
    int64_t
    uint8_t
    uint16_t
    uint32_t
    uint64_t

# Below this many elements per thread, starting a thread costs more than it saves.
cdef Py_ssize_t MIN_ELEMENTS_PER_THREAD = 1 << 15


def openmp_enabled():
    """True when the extension was compiled with OpenMP."""
    return bool(XENTC_OPENMP)


def max_threads():
    """OpenMP's default team size (OMP_NUM_THREADS, omp_set_num_threads); 1 without OpenMP."""
    return xentc_omp_max_threads()


cdef inline int team_size(int n_threads, Py_ssize_t n_rows, Py_ssize_t n_cols) noexcept nogil:
    """Threads worth starting for n_rows x n_cols elements (at least 1)."""
    cdef Py_ssize_t by_work = (n_rows * n_cols) // MIN_ELEMENTS_PER_THREAD
    cdef Py_ssize_t t = n_threads
    if by_work < t:
        t = by_work
    if n_rows < t:
        t = n_rows
    return <int>t if t > 1 else 1


def dense_xent(const floating[:, ::1] logits, const floating[:, ::1] labels,
               floating[::1] loss, floating[:, ::1] grad, int n_threads):
    """loss[i] and (unless grad is None) grad[i, :] for dense labels; grad may be logits."""
    cdef Py_ssize_t i, n_rows = logits.shape[0], n = logits.shape[1]
    cdef int nt = team_size(n_threads, n_rows, n)
    cdef bint with_grad = grad is not None
    if n_rows == 0:
        return
    for i in prange(n_rows, schedule='static', nogil=True, num_threads=nt):
        loss[i] = dense_row(&logits[i, 0], &labels[i, 0],
                            &grad[i, 0] if with_grad else NULL, n)


def sparse_xent(const floating[:, ::1] logits, const index_t[::1] labels,
                floating[::1] loss, floating[:, ::1] grad, int n_threads):
    """loss[i] and (unless grad is None) grad[i, :] for class indices (checked
    to lie in [0, n_classes) by the caller); grad may be logits."""
    cdef Py_ssize_t i, n_rows = logits.shape[0], n = logits.shape[1]
    cdef int nt = team_size(n_threads, n_rows, n)
    cdef bint with_grad = grad is not None
    if n_rows == 0:
        return
    for i in prange(n_rows, schedule='static', nogil=True, num_threads=nt):
        loss[i] = sparse_row(&logits[i, 0], <Py_ssize_t>labels[i],
                             &grad[i, 0] if with_grad else NULL, n)


def softmax(const floating[:, ::1] logits, floating[:, ::1] out, int n_threads):
    """out[i, :] = softmax(logits[i, :]); out may be logits."""
    cdef Py_ssize_t i, n_rows = logits.shape[0], n = logits.shape[1]
    cdef int nt = team_size(n_threads, n_rows, n)
    if n_rows == 0:
        return
    for i in prange(n_rows, schedule='static', nogil=True, num_threads=nt):
        softmax_row(&logits[i, 0], &out[i, 0], n)


def log_softmax(const floating[:, ::1] logits, floating[:, ::1] out, int n_threads):
    """out[i, :] = log_softmax(logits[i, :]); out may be logits."""
    cdef Py_ssize_t i, n_rows = logits.shape[0], n = logits.shape[1]
    cdef int nt = team_size(n_threads, n_rows, n)
    if n_rows == 0:
        return
    for i in prange(n_rows, schedule='static', nogil=True, num_threads=nt):
        log_softmax_row(&logits[i, 0], &out[i, 0], n)


def logsumexp(const floating[:, ::1] logits, floating[::1] out, int n_threads):
    """out[i] = log(sum(exp(logits[i, :])))."""
    cdef Py_ssize_t i, n_rows = logits.shape[0], n = logits.shape[1]
    cdef int nt = team_size(n_threads, n_rows, n)
    if n_rows == 0:
        return
    for i in prange(n_rows, schedule='static', nogil=True, num_threads=nt):
        out[i] = logsumexp_row(&logits[i, 0], n)


def first_label_out_of_range(const any_int[::1] labels, Py_ssize_t n_classes):
    """Index of the first label outside [0, n_classes), or -1."""
    cdef Py_ssize_t i, bad = -1
    cdef any_int v
    with nogil:
        for i in range(labels.shape[0]):
            v = labels[i]
            # v < 0 is always false for unsigned types; the unsigned comparison
            # is then exact for uint64 values above the int64 range too.
            if v < 0 or <uint64_t>v >= <uint64_t>n_classes:
                bad = i
                break
    return bad


cdef inline Py_ssize_t first_bad_label(const floating* y, Py_ssize_t n,
                                       double rtol) noexcept nogil:
    """-1 if y is a probability row: every y_j >= 0 (not NaN) and |sum - 1| <= rtol.
    Otherwise the index of the first negative or NaN label, or n for a bad sum."""
    cdef Py_ssize_t j
    cdef double total = 0.0
    for j in range(n):
        if not (y[j] >= 0):
            return j
        total += y[j]
    if not (fabs(total - 1.0) <= rtol):
        return n
    return -1


def first_invalid_label_row(const floating[:, ::1] labels, double rtol, int n_threads):
    """(row, col) of the first row that is not a probability distribution:
    col is the first negative or NaN label of that row, or n_classes when only
    the row's sum is off by more than rtol.  (-1, -1) when every row is valid.

    Rows are split into one contiguous block per thread; each block reports its
    first bad row and the smallest block with one wins, so the answer does not
    depend on the thread count.
    """
    cdef Py_ssize_t n_rows = labels.shape[0], n = labels.shape[1]
    cdef int nt = team_size(n_threads, n_rows, n)
    cdef Py_ssize_t b, i, col, block = (n_rows + nt - 1) // nt if n_rows else 0
    cdef Py_ssize_t[64] bad_row
    cdef Py_ssize_t[64] bad_col
    if nt > 64:
        nt = 64
        block = (n_rows + nt - 1) // nt
    for b in range(nt):
        bad_row[b] = -1
        bad_col[b] = -1
    if n_rows == 0:
        return -1, -1
    for b in prange(nt, schedule='static', chunksize=1, nogil=True, num_threads=nt):
        for i in range(b * block, min((b + 1) * block, n_rows)):
            col = first_bad_label(&labels[i, 0], n, rtol)
            if col >= 0:
                bad_row[b] = i
                bad_col[b] = col
                break
    for b in range(nt):
        if bad_row[b] >= 0:
            return bad_row[b], bad_col[b]
    return -1, -1
