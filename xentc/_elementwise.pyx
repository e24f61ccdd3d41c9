# Design
# ------
# Kernels of xentc's elementwise and probability-space losses (xentc/_binary.py
# is their Python layer).  Same three layers as xentc/_kernels.pyx:
#   1. `cdef inline ... noexcept nogil` helpers on a contiguous run of elements
#      or one row: the math, with scalar libm exp / log1p / log (the float
#      versions for float32), no Python objects;
#   2. `def` kernels taking validated C-contiguous memoryviews and preallocated
#      outputs, looping with prange over fixed-size chunks of elements (or over
#      rows).  The chunking depends on the data only, never on the thread
#      count, and every output element is written by exactly one thread from
#      its own inputs, so results are bit-identical for any number of threads.
#      They never allocate results, never raise on data, and skip the team
#      when the work is too small to pay for starting threads;
#   3. scanners that find the first invalid probability (element or row); the
#      Python layer formats the message and raises before anything is written.
#
# Kernel math (x logit, z label, q positive-class weight, 1 when absent):
#   sp(t) = log(1 + exp(t)) = max(t, 0) + log1p(exp(-|t|))       (softplus)
#   sigmoid_xent:  loss = q z sp(-x) + (1 - z) sp(x)
#     which is TensorFlow's max(x, 0) - x z + log1p(exp(-|x|)) for q = 1 and
#     (1 - z) x + (1 + (q - 1) z) (log1p(exp(-|x|)) + max(-x, 0)) otherwise
#     (sp(x) = x + sp(-x)).  Written as two weighted softplus terms:
#       * for labels in [0, 1] and q >= 0 both terms are >= 0, so nothing
#         cancels: x = -20, z = 0 keeps its 2.06e-9 in float32, and a soft
#         label near 1 costs (1 - z) x + ... (1 - z exact for z in [0.5, 2])
#         where max(x, 0) - x z subtracts two nearly equal numbers
#         (x = 20, z = 0.999: 20 - 19.98);
#       * a term whose weight is exactly 0 is skipped (0 * inf = 0, like
#         xentc's 0 * log 0 = 0): x = -inf, z = 0 and x = +inf, z = 1 give 0;
#       * a NaN logit gives NaN even when both weights are 0.
#   d loss / d x = (1 - z) sigmoid(x) - q z sigmoid(-x)
#     (sp'(t) = sigmoid(t)); with e = exp(-|x|), sigmoid(|x|) = 1 / (1 + e)
#     and sigmoid(-|x|) = e / (1 + e), so sigmoid(-20) = 2.06e-9 in float32
#     and the label-1 gradient -sigmoid(-x) of a confident logit is not the
#     0 that sigmoid(x) - 1 rounds to.  One exp per element serves both.
#   binary_xent_probs:      p = clip(o, eps, 1 - eps),
#                           loss = -(t log p + (1 - t) log1p(-p))  (0-weight terms skipped)
#   categorical_xent_probs: per row, s = sum(o) (accumulated in double),
#                           p = clip(o / s, eps, 1 - eps), loss = -sum_{t != 0} t log p
#   The clip bounds are eps and 1 - eps rounded to the computation dtype, as
#   Keras's np.clip with Python-float bounds does (1 - 1e-7 is 0.99999988 in
#   float32).

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, expf, fabs, fabsf, log, log1p, log1pf, logf
from libc.stdint cimport int64_t

cdef extern from "_xentc_omp.h" nogil:
    int XENTC_OPENMP

# Elements per prange iteration: a function of nothing but this constant, so
# the partition never depends on the thread count.
cdef Py_ssize_t CHUNK = 1 << 13
# Below this many elements per thread, starting a thread costs more than it
# saves (an element costs an exp and a log1p, several times a softmax element).
cdef Py_ssize_t MIN_ELEMENTS_PER_THREAD = 1 << 14


def openmp_enabled():
    """True when this extension was compiled with OpenMP."""
    return bool(XENTC_OPENMP)


cdef inline int team_size(int n_threads, Py_ssize_t n_items, Py_ssize_t work) noexcept nogil:
    """Threads worth starting for n_items prange iterations of `work` elements in all."""
    cdef Py_ssize_t t = n_threads
    cdef Py_ssize_t by_work = work // MIN_ELEMENTS_PER_THREAD
    if by_work < t:
        t = by_work
    if n_items < t:
        t = n_items
    return <int>t if t > 1 else 1


# libm in the precision of the fused type: float32 stays float32 (expf, log1pf)
cdef inline floating _exp(floating v) noexcept nogil:
    if floating is float:
        return expf(v)
    else:
        return exp(v)


cdef inline floating _log1p(floating v) noexcept nogil:
    if floating is float:
        return log1pf(v)
    else:
        return log1p(v)


cdef inline floating _log(floating v) noexcept nogil:
    if floating is float:
        return logf(v)
    else:
        return log(v)


cdef inline floating _fabs(floating v) noexcept nogil:
    if floating is float:
        return fabsf(v)
    else:
        return fabs(v)


# --------------------------------------------------------------------------
# sigmoid cross-entropy with logits
# --------------------------------------------------------------------------

cdef inline void _sigmoid_run(const floating *x, const floating *z, const floating *q,
                              Py_ssize_t q_step, floating *loss, floating *grad,
                              Py_ssize_t n) noexcept nogil:
    """loss[k] (and grad[k] unless grad is NULL) for n consecutive elements;
    q[k * q_step] is the positive weight of element k (q NULL: weight 1).
    grad may be x itself: x[k] is read before grad[k] is written."""
    cdef Py_ssize_t k
    cdef floating xk, a, b, e, l, sp_neg, sp_pos, acc, r
    cdef double ad
    for k in range(n):
        xk = x[k]
        b = 1 - z[k]                                 # weight of sp(x), the "label 0" term
        # weight of sp(-x), the "label 1" term; in double for the loss, where a
        # product of two small float32 weights that rounds to 0 still counts
        # (a denormal label with pos_weight 0.5 at x = -inf gives +inf, not 0)
        ad = <double>z[k] * q[k * q_step] if q != NULL else z[k]
        a = <floating>ad
        e = _exp(-_fabs(xk))                         # in (0, 1]: never overflows
        l = _log1p(e)
        if xk > 0:
            sp_pos = xk + l                          # sp(x)  = max(x, 0) + log1p(e)
            sp_neg = l                               # sp(-x) = max(-x, 0) + log1p(e)
        else:
            sp_pos = l
            sp_neg = l - xk
        acc = 0
        if ad != 0:                                  # 0 * sp(-x) is 0 even at x = -inf
            acc = <floating>(ad * sp_neg)
        if b != 0:                                   # 0 * sp(x) is 0 even at x = +inf
            acc = acc + b * sp_pos
        if xk != xk:                                 # NaN logit: NaN whatever the weights
            acc = xk
        if grad != NULL:
            r = 1 / (1 + e)                          # sigmoid(|x|); e r = sigmoid(-|x|)
            if xk > 0:                               # (1 - z) sigmoid(x) - q z sigmoid(-x)
                grad[k] = b * r - a * (e * r)
            else:
                grad[k] = b * (e * r) - a * r
        loss[k] = acc


cdef inline void _sigmoid_chunk(const floating *x, const floating *z, const floating *q,
                                const int64_t *q_offsets, Py_ssize_t q_row_stride,
                                Py_ssize_t q_col_stride, Py_ssize_t n_cols,
                                floating *loss, floating *grad,
                                Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """Elements [start, stop) of the flat (n_rows, n_cols) arrays, split at row
    ends so that each run sees one row of the (broadcast) pos_weight."""
    cdef Py_ssize_t k = start, i, j, m
    cdef const floating *qk = NULL
    while k < stop:
        i = k // n_cols
        j = k - i * n_cols
        m = n_cols - j
        if m > stop - k:
            m = stop - k
        if q != NULL:
            qk = q + (q_offsets[i] if q_offsets != NULL else i * q_row_stride) + j * q_col_stride
        _sigmoid_run(x + k, z + k, qk, q_col_stride, loss + k,
                     grad + k if grad != NULL else NULL, m)
        k = k + m


def sigmoid_xent(const floating[::1] logits, const floating[::1] labels,
                 const floating[::1] pos_weight, const int64_t[::1] q_offsets,
                 Py_ssize_t q_row_stride, Py_ssize_t q_col_stride, Py_ssize_t n_cols,
                 floating[::1] loss, floating[::1] grad, int n_threads):
    """loss (and grad unless None) of sigmoid cross-entropy, elementwise.

    The flat arrays are (n_rows, n_cols) rows; element (i, j) has positive
    weight pos_weight[off_i + j * q_col_stride] with off_i = q_offsets[i]
    (when given) or i * q_row_stride: a (C,) weight broadcast over rows is
    q_row_stride = 0, q_col_stride = 1, and no N x C array is made for it.
    pos_weight None means weight 1.  grad and loss may be logits itself.
    """
    cdef Py_ssize_t n = logits.shape[0]
    cdef Py_ssize_t c, n_chunks = (n + CHUNK - 1) // CHUNK
    cdef int nt = team_size(n_threads, n_chunks, n)
    cdef const floating *qp = NULL
    cdef const int64_t *offp = NULL
    cdef floating *gp = NULL
    if n == 0:
        return
    if pos_weight is not None:
        qp = &pos_weight[0]
    if q_offsets is not None:
        offp = &q_offsets[0]
    if grad is not None:
        gp = &grad[0]
    for c in prange(n_chunks, schedule='static', nogil=True, num_threads=nt):
        _sigmoid_chunk(&logits[0], &labels[0], qp, offp, q_row_stride, q_col_stride, n_cols,
                       &loss[0], gp, c * CHUNK, min((c + 1) * CHUNK, n))


# --------------------------------------------------------------------------
# probability-space losses (Keras semantics)
# --------------------------------------------------------------------------

cdef inline floating _clip(floating p, floating lo, floating hi) noexcept nogil:
    """clip to [lo, hi]; NaN stays NaN (as numpy.clip)."""
    if p < lo:
        return lo
    if p > hi:
        return hi
    return p


cdef inline void _binary_run(const floating *t, const floating *o, floating lo, floating hi,
                             floating *loss, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    cdef floating p, a, b, acc
    for k in range(n):
        p = _clip(o[k], lo, hi)
        a = t[k]
        b = 1 - a
        acc = 0
        if a != 0:                          # 0 * log(0) = 0 (epsilon = 0)
            acc = a * _log(p)
        if b != 0:
            # log(1 - p) as log1p(-p): exact for small p, where Keras's
            # float32 log(1 - p) keeps only the rounding of 1 - p
            acc = acc + b * _log1p(-p)
        if p != p:
            acc = p
        loss[k] = -acc


def binary_xent_probs(const floating[::1] target, const floating[::1] output, double epsilon,
                      floating[::1] loss, int n_threads):
    """loss = -(t log p + (1 - t) log(1 - p)), p = clip(output, eps, 1 - eps), elementwise."""
    cdef Py_ssize_t n = output.shape[0]
    cdef Py_ssize_t c, start, n_chunks = (n + CHUNK - 1) // CHUNK
    cdef int nt = team_size(n_threads, n_chunks, n)
    cdef floating lo = <floating>epsilon, hi = <floating>(1.0 - epsilon)
    if n == 0:
        return
    for c in prange(n_chunks, schedule='static', nogil=True, num_threads=nt):
        start = c * CHUNK
        _binary_run(&target[start], &output[start], lo, hi, &loss[start],
                    min(CHUNK, n - start))


cdef inline floating _categorical_row(const floating *t, const floating *o, Py_ssize_t n,
                                      floating lo, floating hi) noexcept nogil:
    cdef Py_ssize_t j
    cdef double s = 0, acc = 0
    cdef floating p
    for j in range(n):
        s += o[j]
    for j in range(n):
        if t[j] != 0:                       # a 0 target contributes nothing (0 * log 0 = 0)
            p = _clip(<floating>(o[j] / s), lo, hi)
            acc += <double>t[j] * _log(p)
    return <floating>(-acc)


def categorical_xent_probs(const floating[:, ::1] target, const floating[:, ::1] output,
                           double epsilon, floating[::1] loss, int n_threads):
    """loss[i] = -sum_j target[i, j] log(clip(output[i, j] / sum(output[i]), eps, 1 - eps))."""
    cdef Py_ssize_t i, n_rows = output.shape[0], n = output.shape[1]
    cdef int nt = team_size(n_threads, n_rows, n_rows * n)
    cdef floating lo = <floating>epsilon, hi = <floating>(1.0 - epsilon)
    if n_rows == 0 or n == 0:
        return
    for i in prange(n_rows, schedule='static', nogil=True, num_threads=nt):
        loss[i] = _categorical_row(&target[i, 0], &output[i, 0], n, lo, hi)


# --------------------------------------------------------------------------
# scanners: the first invalid probability, or -1
# --------------------------------------------------------------------------

def first_outside(const floating[::1] values, double lo, double hi):
    """Index of the first element < lo or > hi (NaN is not flagged: it stays
    in its own result), or -1."""
    cdef Py_ssize_t k, bad = -1
    cdef double v
    with nogil:
        for k in range(values.shape[0]):
            v = values[k]
            if v < lo or v > hi:
                bad = k
                break
    return bad


def first_bad_distribution(const floating[:, ::1] values, double tol):
    """Index of the first row holding a negative value or whose sum (in double)
    is off 1 by more than tol, or -1.  A row whose sum is NaN is not flagged."""
    cdef Py_ssize_t i, j, bad = -1, n_rows = values.shape[0], n = values.shape[1]
    cdef double s
    cdef bint negative
    with nogil:
        for i in range(n_rows):
            s = 0
            negative = False
            for j in range(n):
                s += values[i, j]
                negative = negative | (values[i, j] < 0)
            if negative or fabs(s - 1.0) > tol:
                bad = i
                break
    return bad
