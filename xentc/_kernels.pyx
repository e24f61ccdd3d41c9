# Design
# ------
# Kernels of xentc: they only compute.  Three layers, one direction:
#   1. Row kernels in C (_xentc_rows_impl.h, compiled per ISA by _xentc_rows*.c
#      and picked at import): the math of one row with a vectorised exp of our
#      own.  They are C rather than Cython `cdef inline` helpers because they
#      need vector types and per-ISA compilation, which Cython cannot express.
#   2. this file: `def` kernels taking validated C-contiguous (n_rows, n_classes)
#      memoryviews and preallocated outputs, looping over rows with prange and
#      calling the row kernels of the selected ISA.  They never allocate
#      results, never raise on data and never touch Python objects inside the
#      loop.  Each row is written by exactly one thread and no reduction
#      crosses rows, so results are bit-identical for any thread count.
#      Scanners look for bad labels and return the first bad row; the Python
#      layer formats the message and raises before anything of the caller's is
#      written (sparse_xent checks its labels itself, chunk by chunk, when it
#      writes only buffers of ours).
#   3. _api.py: validation, dtype policy, axis handling, allocation, dispatch.
#
# Kernel math, per row x (M = max x, z = x - M, s = sum of exp(z) without one
# max term, so that log1p(s) keeps tiny losses):
#   dense_xent:  loss = log1p(s) sum(y) - sum_{y_j != 0} y_j z_j,
#                grad = softmax(x) sum(y) - y
#   sparse_xent: loss = log1p(s) - z_label, grad = softmax(x) - onehot(label)
#   softmax = exp(z) / (1 + s), log_softmax = z - log1p(s),
#   logsumexp = M + log1p(s)
#   score:       the sparse (or, with dense labels y, the dense) loss, the
#                confidence max softmax = 1 / (1 + s) and the label's rank
#                #{j : x_j > x_label} + #{j < label : x_j == x_label} (top-k
#                hit: rank < k), all from the
#                read that finds M and s; nothing N x C is written

import os

from libc.stdint cimport (int8_t, int16_t, int32_t, int64_t,
                          uint8_t, uint16_t, uint32_t, uint64_t)
from cython cimport floating
from cython.parallel cimport prange

cdef extern from "_xentc_omp.h" nogil:
    int XENTC_OPENMP
    int xentc_omp_max_threads()

cdef extern from "_xentc_rows.h" nogil:
    ctypedef struct xentc_rows_table:
        const char *name
        void (*dense_f32)(const float *x, const float *y, float *loss, float *g,
                          Py_ssize_t nrows, Py_ssize_t n, double rtol, int8_t *invalid,
                          float *lse, const uint8_t *mask, Py_ssize_t mstride, int stream) noexcept nogil
        void (*dense_f64)(const double *x, const double *y, double *loss, double *g,
                          Py_ssize_t nrows, Py_ssize_t n, double rtol, int8_t *invalid,
                          double *lse, const uint8_t *mask, Py_ssize_t mstride, int stream) noexcept nogil
        void (*sparse_f32)(const float *x, const int64_t *labels, float *loss, float *g,
                           Py_ssize_t nrows, Py_ssize_t n, float *lse, const uint8_t *mask,
                           Py_ssize_t mstride, int stream) noexcept nogil
        void (*sparse_f64)(const double *x, const int64_t *labels, double *loss, double *g,
                           Py_ssize_t nrows, Py_ssize_t n, double *lse, const uint8_t *mask,
                           Py_ssize_t mstride, int stream) noexcept nogil
        void (*softmax_f32)(const float *x, float *p, Py_ssize_t nrows, Py_ssize_t n,
                            const uint8_t *mask, Py_ssize_t mstride) noexcept nogil
        void (*softmax_f64)(const double *x, double *p, Py_ssize_t nrows, Py_ssize_t n,
                            const uint8_t *mask, Py_ssize_t mstride) noexcept nogil
        void (*log_softmax_f32)(const float *x, float *p, Py_ssize_t nrows, Py_ssize_t n,
                                const uint8_t *mask, Py_ssize_t mstride) noexcept nogil
        void (*log_softmax_f64)(const double *x, double *p, Py_ssize_t nrows, Py_ssize_t n,
                                const uint8_t *mask, Py_ssize_t mstride) noexcept nogil
        void (*logsumexp_f32)(const float *x, float *out, Py_ssize_t nrows, Py_ssize_t n,
                              const uint8_t *mask, Py_ssize_t mstride) noexcept nogil
        void (*logsumexp_f64)(const double *x, double *out, Py_ssize_t nrows, Py_ssize_t n,
                              const uint8_t *mask, Py_ssize_t mstride) noexcept nogil
        void (*class_f32)(const float *x, const int64_t *labels, float *loss, float *g, Py_ssize_t nrows,
                          Py_ssize_t n, const float *w, double eps, double gscale) noexcept nogil
        void (*class_f64)(const double *x, const int64_t *labels, double *loss, double *g, Py_ssize_t nrows,
                          Py_ssize_t n, const double *w, double eps, double gscale) noexcept nogil
        void (*prob_f32)(const float *x, const float *t, float *loss, float *g, Py_ssize_t nrows,
                         Py_ssize_t n, const float *w, double eps, double gscale) noexcept nogil
        void (*prob_f64)(const double *x, const double *t, double *loss, double *g, Py_ssize_t nrows,
                         Py_ssize_t n, const double *w, double eps, double gscale) noexcept nogil
        void (*check_f32)(const float *y, int8_t *invalid, Py_ssize_t nrows, Py_ssize_t n,
                          double rtol) noexcept nogil
        void (*check_f64)(const double *y, int8_t *invalid, Py_ssize_t nrows, Py_ssize_t n,
                          double rtol) noexcept nogil
        void (*score_f32)(const float *x, const int64_t *labels, const float *y, float *loss,
                          float *lse, double *pmax, int64_t *rank, Py_ssize_t nrows, Py_ssize_t n,
                          double rtol, int8_t *invalid) noexcept nogil
        void (*score_f64)(const double *x, const int64_t *labels, const double *y, double *loss,
                          double *lse, double *pmax, int64_t *rank, Py_ssize_t nrows, Py_ssize_t n,
                          double rtol, int8_t *invalid) noexcept nogil
        Py_ssize_t (*first_bad_label)(const int64_t *labels, Py_ssize_t n,
                                      Py_ssize_t n_classes) noexcept nogil
        void (*exp_f32)(const float *x, float *y, Py_ssize_t n) noexcept nogil
        void (*exp_f64)(const double *x, double *y, Py_ssize_t n) noexcept nogil
        void (*exp_sum_f32)(const float *x, float *y, Py_ssize_t n) noexcept nogil
        void (*exp_sum_f64)(const double *x, double *y, Py_ssize_t n) noexcept nogil
    const xentc_rows_table *xentc_rows
    int xentc_select_isa(const char *request)
    const char *xentc_available_isas()


def available_isas():
    """The SIMD paths this build and CPU can run, best last."""
    return tuple(xentc_available_isas().decode().split(","))


def select_isa(str request):
    """Use SIMD path `request` ("auto", "baseline", "avx2", "avx512").

    Not thread-safe: it is called once at import, from XENTC_ISA.
    """
    if xentc_select_isa(request.encode()) != 0:
        raise ValueError(
            f"SIMD path {request!r} is not available on this CPU and build; "
            f"choose one of {('auto',) + available_isas()}"
        )
    return isa()


def isa():
    """The SIMD path in use."""
    return xentc_rows.name.decode()


select_isa(os.environ.get("XENTC_ISA", "auto").strip().lower() or "auto")


def exp(floating[::1] x, floating[::1] out):
    """out = exp(x) with the vectorised exp of the SIMD path in use (for tests)."""
    if out.shape[0] != x.shape[0]:
        raise ValueError(f"out must have x's length {x.shape[0]}, got {out.shape[0]}")
    if x.shape[0] == 0:
        return
    if floating is float:
        xentc_rows.exp_f32(&x[0], &out[0], x.shape[0])
    else:
        xentc_rows.exp_f64(&x[0], &out[0], x.shape[0])


def exp_sum(floating[::1] x, floating[::1] out):
    """out = exp(x) * 2**64 for x <= 0 (0 at and below about -132.05 for
    float32, -132.066 on AVX-512, and -753.1 for float64) with the exp the row
    kernels use for the terms of a row's sum (scaled by 2**64 so that the terms
    are normal numbers but for the last few above those bounds; for tests)."""
    if out.shape[0] != x.shape[0]:
        raise ValueError(f"out must have x's length {x.shape[0]}, got {out.shape[0]}")
    if x.shape[0] == 0:
        return
    if floating is float:
        xentc_rows.exp_sum_f32(&x[0], &out[0], x.shape[0])
    else:
        xentc_rows.exp_sum_f64(&x[0], &out[0], x.shape[0])


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

# A gradient the caller passed (grad_out, not the logits), or one of ours in
# memory from the buffer cache (_buffers.pyx), of at least this many bytes is
# written with streaming stores (see stream_scratch in _xentc_rows_impl.h): it
# would not stay in the cache anyway, and a smaller one may be read again while
# it is there.  Not a gradient of ours on fresh pages: the OS zeroes each on its
# first write, and streaming stores over those zeroed lines were no faster (C
# harness, 2-vCPU Xeon, float32 sparse loss+grad 8192 x 32000 on fresh pages,
# min per round: 0.53-0.72 ns/logit through the cache, 0.67-0.75 streamed).
# The caller (_api._streamable) says which it is.
cdef Py_ssize_t STREAM_BYTES = 1 << 25
cdef Py_ssize_t STREAMED_CALLS = 0   # calls that streamed (tests: that the path is taken)


def _streamed_calls():
    """How many dense_xent / sparse_xent calls wrote their gradient with streaming stores."""
    return STREAMED_CALLS


cdef void count_streamed() noexcept:
    global STREAMED_CALLS
    STREAMED_CALLS += 1


def _stream_bytes(Py_ssize_t value=-1):
    """The streaming threshold in bytes; with value >= 0, set it (tests: 0 streams every
    separate gradient) and return the previous one."""
    global STREAM_BYTES
    cdef Py_ssize_t old = STREAM_BYTES
    if value >= 0:
        STREAM_BYTES = value
    return old


cdef inline int streams(const void *x, const void *g, Py_ssize_t n_rows, Py_ssize_t n,
                        Py_ssize_t itemsize, bint with_mask) noexcept nogil:
    """Whether a caller's gradient g (NULL: none) of n_rows x n is written with streaming
    stores (as stream_scratch decides: not in place, without a mask, more than 32 classes)."""
    return (g != NULL and g != x and not with_mask and n > 32
            and n_rows * n * itemsize >= STREAM_BYTES)


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


cdef Py_ssize_t mask_stride(const uint8_t[:, ::1] mask, Py_ssize_t n_rows, Py_ssize_t n_cols) except -1:
    """Row stride of a where= mask: (n_rows, n_cols), or one row (1, n_cols) for all."""
    if mask is None:
        return 0
    if mask.shape[1] != n_cols or mask.shape[0] not in (1, n_rows):
        raise ValueError("mask must have shape (1 or n_rows, n_cols)")
    return 0 if mask.shape[0] == 1 else n_cols


cdef inline Py_ssize_t chunk_rows(Py_ssize_t n_cols) noexcept nogil:
    """Rows per prange iteration: about 16 K elements, a multiple of 16 rows
    (whole vector groups for the few-classes path), a function of n_cols only."""
    cdef Py_ssize_t rows = (1 << 14) // n_cols
    rows = (rows + 15) // 16 * 16
    return rows if rows > 16 else 16


def dense_xent(const floating[:, ::1] logits, const floating[:, ::1] labels,
               floating[::1] loss, floating[:, ::1] grad, int n_threads,
               double rtol=0.0, int8_t[::1] invalid=None, floating[::1] lse=None,
               const uint8_t[:, ::1] mask=None, bint stream=False):
    """loss[i] and (unless grad is None) grad[i, :] for dense labels; grad may be logits.

    With `invalid` (n_rows flags) the same pass also flags rows whose labels are
    not a distribution (a negative or NaN label, or a sum off 1 by more than rtol);
    with `lse` it writes each row's log-sum-exp; `mask` (where=) as in softmax.
    stream: grad is the caller's array or from the buffer cache (see STREAM_BYTES).
    """
    cdef Py_ssize_t n_rows = logits.shape[0], n = logits.shape[1]
    cdef Py_ssize_t c, r0, chunk = chunk_rows(n), n_chunks = (n_rows + chunk - 1) // chunk
    cdef int nt = team_size(n_threads, n_rows, n)
    cdef bint with_grad = grad is not None, with_check = invalid is not None
    cdef bint with_lse = lse is not None, with_mask = mask is not None
    cdef Py_ssize_t ms = mask_stride(mask, n_rows, n)
    cdef int sm
    if n_rows == 0:
        return
    sm = stream and streams(&logits[0, 0], &grad[0, 0] if with_grad else NULL, n_rows, n, logits.itemsize,
                            with_mask)
    if sm:
        count_streamed()
    for c in prange(n_chunks, schedule='static', nogil=True, num_threads=nt):
        r0 = c * chunk
        if floating is float:
            xentc_rows.dense_f32(&logits[r0, 0], &labels[r0, 0], &loss[r0],
                                 &grad[r0, 0] if with_grad else NULL, min(chunk, n_rows - r0), n,
                                 rtol, &invalid[r0] if with_check else NULL,
                                 &lse[r0] if with_lse else NULL,
                                 &mask[0, 0] + r0 * ms if with_mask else NULL, ms, sm)
        else:
            xentc_rows.dense_f64(&logits[r0, 0], &labels[r0, 0], &loss[r0],
                                 &grad[r0, 0] if with_grad else NULL, min(chunk, n_rows - r0), n,
                                 rtol, &invalid[r0] if with_check else NULL,
                                 &lse[r0] if with_lse else NULL,
                                 &mask[0, 0] + r0 * ms if with_mask else NULL, ms, sm)


def class_xent(const floating[:, ::1] logits, const int64_t[::1] labels, floating[::1] loss,
               floating[:, ::1] grad, const floating[::1] weight, double eps, double gscale,
               int n_threads):
    """PyTorch-style cross-entropy with class indices (labels[i] < 0: an ignored
    row), class weights (or None; required when eps > 0), label smoothing eps;
    the gradient (unless grad is None) is multiplied by gscale; grad may be logits."""
    cdef Py_ssize_t n_rows = logits.shape[0], n = logits.shape[1]
    cdef Py_ssize_t c, r0, chunk = chunk_rows(n), n_chunks = (n_rows + chunk - 1) // chunk
    cdef int nt = team_size(n_threads, n_rows, n)
    cdef bint with_grad = grad is not None, with_weight = weight is not None
    if n_rows == 0:
        return
    for c in prange(n_chunks, schedule='static', nogil=True, num_threads=nt):
        r0 = c * chunk
        if floating is float:
            xentc_rows.class_f32(&logits[r0, 0], &labels[r0], &loss[r0],
                                 &grad[r0, 0] if with_grad else NULL, min(chunk, n_rows - r0), n,
                                 &weight[0] if with_weight else NULL, eps, gscale)
        else:
            xentc_rows.class_f64(&logits[r0, 0], &labels[r0], &loss[r0],
                                 &grad[r0, 0] if with_grad else NULL, min(chunk, n_rows - r0), n,
                                 &weight[0] if with_weight else NULL, eps, gscale)


def prob_xent(const floating[:, ::1] logits, const floating[:, ::1] target, floating[::1] loss,
              floating[:, ::1] grad, const floating[::1] weight, double eps, double gscale,
              int n_threads):
    """PyTorch-style cross-entropy with class probabilities, class weights (or
    None; required when eps > 0) and label smoothing eps; the gradient (unless
    grad is None) is multiplied by gscale; grad may be logits."""
    cdef Py_ssize_t n_rows = logits.shape[0], n = logits.shape[1]
    cdef Py_ssize_t c, r0, chunk = chunk_rows(n), n_chunks = (n_rows + chunk - 1) // chunk
    cdef int nt = team_size(n_threads, n_rows, n)
    cdef bint with_grad = grad is not None, with_weight = weight is not None
    if n_rows == 0:
        return
    for c in prange(n_chunks, schedule='static', nogil=True, num_threads=nt):
        r0 = c * chunk
        if floating is float:
            xentc_rows.prob_f32(&logits[r0, 0], &target[r0, 0], &loss[r0],
                                &grad[r0, 0] if with_grad else NULL, min(chunk, n_rows - r0), n,
                                &weight[0] if with_weight else NULL, eps, gscale)
        else:
            xentc_rows.prob_f64(&logits[r0, 0], &target[r0, 0], &loss[r0],
                                &grad[r0, 0] if with_grad else NULL, min(chunk, n_rows - r0), n,
                                &weight[0] if with_weight else NULL, eps, gscale)


def check_labels(const floating[:, ::1] labels, double rtol, int8_t[::1] invalid, int n_threads):
    """invalid[i] = 1 unless labels[i] is >= 0 everywhere and sums to 1 within rtol."""
    cdef Py_ssize_t n_rows = labels.shape[0], n = labels.shape[1]
    cdef Py_ssize_t c, r0, chunk = chunk_rows(n), n_chunks = (n_rows + chunk - 1) // chunk
    cdef int nt = team_size(n_threads, n_rows, n)
    if n_rows == 0:
        return
    for c in prange(n_chunks, schedule='static', nogil=True, num_threads=nt):
        r0 = c * chunk
        if floating is float:
            xentc_rows.check_f32(&labels[r0, 0], &invalid[r0], min(chunk, n_rows - r0), n, rtol)
        else:
            xentc_rows.check_f64(&labels[r0, 0], &invalid[r0], min(chunk, n_rows - r0), n, rtol)


def sparse_xent(const floating[:, ::1] logits, const int64_t[::1] labels,
                floating[::1] loss, floating[:, ::1] grad, int n_threads, floating[::1] lse=None,
                const uint8_t[:, ::1] mask=None, bint stream=False, bint check=False):
    """loss[i] and (unless grad is None) grad[i, :] for class indices; grad may be
    logits; with `lse` each row's log-sum-exp too; stream: grad is the caller's array
    or from the buffer cache (see STREAM_BYTES).

    Labels outside [0, n_classes): with `check`, each chunk of rows checks its own
    before its kernel runs and skips the kernel if one is (no label is then used
    to index a row), and the call returns the row of the first, or -1 (-2 if the
    labels changed while it ran: a chunk skipped, and no bad label found after);
    without, the caller has checked them (the call returns -1).  A chunk skipped leaves
    its rows of the outputs unwritten: the caller raises, and must not have given
    the kernel memory of its caller's to write (see _api's sparse call)."""
    cdef Py_ssize_t n_rows = logits.shape[0], n = logits.shape[1]
    cdef Py_ssize_t c, r0, nr, b, chunk = chunk_rows(n), n_chunks = (n_rows + chunk - 1) // chunk
    cdef int nt = team_size(n_threads, n_rows, n)
    cdef bint with_grad = grad is not None, with_lse = lse is not None, with_mask = mask is not None
    cdef Py_ssize_t ms = mask_stride(mask, n_rows, n)
    cdef int sm
    cdef Py_ssize_t bad_chunks = 0   # a sum reduction: prange has none for a min
    if n_rows == 0:
        return -1
    sm = stream and streams(&logits[0, 0], &grad[0, 0] if with_grad else NULL, n_rows, n, logits.itemsize,
                            with_mask)
    if sm:
        count_streamed()
    for c in prange(n_chunks, schedule='static', nogil=True, num_threads=nt):
        r0 = c * chunk
        nr = min(chunk, n_rows - r0)
        b = xentc_rows.first_bad_label(&labels[r0], nr, n) if check else -1
        if b >= 0:
            bad_chunks += 1
        elif floating is float:
            xentc_rows.sparse_f32(&logits[r0, 0], &labels[r0], &loss[r0],
                                  &grad[r0, 0] if with_grad else NULL, nr, n,
                                  &lse[r0] if with_lse else NULL,
                                  &mask[0, 0] + r0 * ms if with_mask else NULL, ms, sm)
        else:
            xentc_rows.sparse_f64(&logits[r0, 0], &labels[r0], &loss[r0],
                                  &grad[r0, 0] if with_grad else NULL, nr, n,
                                  &lse[r0] if with_lse else NULL,
                                  &mask[0, 0] + r0 * ms if with_mask else NULL, ms, sm)
    if not bad_chunks:
        return -1
    b = xentc_rows.first_bad_label(&labels[0], n_rows, n)
    return b if b >= 0 else -2   # -2: a chunk saw a bad label the scan no longer finds


def score(const floating[:, ::1] logits, const int64_t[::1] labels, const floating[:, ::1] dense,
          floating[::1] loss, double[::1] pmax, int64_t[::1] rank, int n_threads,
          floating[::1] lse=None, double rtol=0.0, int8_t[::1] invalid=None):
    """Per row: loss, max probability pmax and the rank of the label's logit
    (logits strictly greater, plus equal ones at lower indices), in one read
    of the logits; pmax in float64 for either dtype.

    labels: class indices in [0, n_classes) (checked by the caller); with
    `dense` (dense labels, or None) the loss is the dense cross-entropy and
    labels must hold each dense row's argmax.  `invalid` (dense only) flags
    rows whose labels are not a distribution within rtol; `lse` receives each
    row's log-sum-exp.  Undefined rows (NaN, all -inf) get NaN loss and pmax
    and rank INT64_MAX (a miss for every k).
    """
    cdef Py_ssize_t n_rows = logits.shape[0], n = logits.shape[1]
    cdef Py_ssize_t c, r0, chunk = chunk_rows(n), n_chunks = (n_rows + chunk - 1) // chunk
    cdef int nt = team_size(n_threads, n_rows, n)
    cdef bint with_dense = dense is not None, with_lse = lse is not None
    cdef bint with_check = invalid is not None
    if n_rows == 0:
        return
    for c in prange(n_chunks, schedule='static', nogil=True, num_threads=nt):
        r0 = c * chunk
        if floating is float:
            xentc_rows.score_f32(&logits[r0, 0], &labels[r0], &dense[r0, 0] if with_dense else NULL,
                                 &loss[r0], &lse[r0] if with_lse else NULL, &pmax[r0], &rank[r0],
                                 min(chunk, n_rows - r0), n, rtol,
                                 &invalid[r0] if with_check else NULL)
        else:
            xentc_rows.score_f64(&logits[r0, 0], &labels[r0], &dense[r0, 0] if with_dense else NULL,
                                 &loss[r0], &lse[r0] if with_lse else NULL, &pmax[r0], &rank[r0],
                                 min(chunk, n_rows - r0), n, rtol,
                                 &invalid[r0] if with_check else NULL)


def softmax(const floating[:, ::1] logits, floating[:, ::1] out, int n_threads,
            const uint8_t[:, ::1] mask=None):
    """out[i, :] = softmax(logits[i, :]) over the classes `mask` includes
    (None: all; one row broadcasts); out may be logits."""
    cdef Py_ssize_t n_rows = logits.shape[0], n = logits.shape[1]
    cdef Py_ssize_t c, r0, chunk = chunk_rows(n), n_chunks = (n_rows + chunk - 1) // chunk
    cdef Py_ssize_t ms = mask_stride(mask, n_rows, n)
    cdef int nt = team_size(n_threads, n_rows, n)
    cdef bint with_mask = mask is not None
    if n_rows == 0:
        return
    for c in prange(n_chunks, schedule='static', nogil=True, num_threads=nt):
        r0 = c * chunk
        if floating is float:
            xentc_rows.softmax_f32(&logits[r0, 0], &out[r0, 0], min(chunk, n_rows - r0), n,
                                  &mask[0, 0] + r0 * ms if with_mask else NULL, ms)
        else:
            xentc_rows.softmax_f64(&logits[r0, 0], &out[r0, 0], min(chunk, n_rows - r0), n,
                                  &mask[0, 0] + r0 * ms if with_mask else NULL, ms)


def log_softmax(const floating[:, ::1] logits, floating[:, ::1] out, int n_threads,
                const uint8_t[:, ::1] mask=None):
    """out[i, :] = log_softmax(logits[i, :]) over the classes `mask` includes; out may be logits."""
    cdef Py_ssize_t n_rows = logits.shape[0], n = logits.shape[1]
    cdef Py_ssize_t c, r0, chunk = chunk_rows(n), n_chunks = (n_rows + chunk - 1) // chunk
    cdef Py_ssize_t ms = mask_stride(mask, n_rows, n)
    cdef int nt = team_size(n_threads, n_rows, n)
    cdef bint with_mask = mask is not None
    if n_rows == 0:
        return
    for c in prange(n_chunks, schedule='static', nogil=True, num_threads=nt):
        r0 = c * chunk
        if floating is float:
            xentc_rows.log_softmax_f32(&logits[r0, 0], &out[r0, 0], min(chunk, n_rows - r0), n,
                                  &mask[0, 0] + r0 * ms if with_mask else NULL, ms)
        else:
            xentc_rows.log_softmax_f64(&logits[r0, 0], &out[r0, 0], min(chunk, n_rows - r0), n,
                                  &mask[0, 0] + r0 * ms if with_mask else NULL, ms)


def logsumexp(const floating[:, ::1] logits, floating[::1] out, int n_threads,
              const uint8_t[:, ::1] mask=None):
    """out[i] = log(sum(exp(logits[i, :]))) over the classes `mask` includes."""
    cdef Py_ssize_t n_rows = logits.shape[0], n = logits.shape[1]
    cdef Py_ssize_t c, r0, chunk = chunk_rows(n), n_chunks = (n_rows + chunk - 1) // chunk
    cdef Py_ssize_t ms = mask_stride(mask, n_rows, n)
    cdef int nt = team_size(n_threads, n_rows, n)
    cdef bint with_mask = mask is not None
    if n_rows == 0:
        return
    for c in prange(n_chunks, schedule='static', nogil=True, num_threads=nt):
        r0 = c * chunk
        if floating is float:
            xentc_rows.logsumexp_f32(&logits[r0, 0], &out[r0], min(chunk, n_rows - r0), n,
                                  &mask[0, 0] + r0 * ms if with_mask else NULL, ms)
        else:
            xentc_rows.logsumexp_f64(&logits[r0, 0], &out[r0], min(chunk, n_rows - r0), n,
                                  &mask[0, 0] + r0 * ms if with_mask else NULL, ms)


def class_targets(const any_int[::1] labels, Py_ssize_t n_classes, int64_t ignore,
                  int64_t[::1] out, const floating[::1] weight):
    """One pass over class-index targets: out[i] = labels[i], or -1 where it
    equals `ignore`; returns (index of the first label outside [0, n_classes)
    that is not `ignore`, or -1; the number of counted rows, or with `weight`
    the sum of weight[label] over them, in double)."""
    cdef Py_ssize_t i, bad = -1
    cdef any_int v
    cdef double total = 0.0
    cdef bint with_weight = weight is not None
    with nogil:
        for i in range(labels.shape[0]):
            v = labels[i]
            # equal to `ignore` as numbers (a uint64 never equals a negative one)
            if (v < 0) == (ignore < 0) and <int64_t>v == ignore:
                out[i] = -1
                continue
            if v < 0 or <uint64_t>v >= <uint64_t>n_classes:
                bad = i
                break
            out[i] = <int64_t>v
            total += weight[<Py_ssize_t>v] if with_weight else 1.0
    return bad, total


def first_label_out_of_range(const any_int[::1] labels, Py_ssize_t n_classes,
                             bint has_ignore=False, int64_t ignore=0):
    """Index of the first label outside [0, n_classes) (and, with has_ignore,
    not equal to `ignore`), or -1."""
    cdef Py_ssize_t i, bad = -1
    cdef any_int v
    with nogil:
        for i in range(labels.shape[0]):
            v = labels[i]
            # v < 0 is always false for unsigned types; the unsigned comparison
            # is then exact for uint64 values above the int64 range too.
            if v < 0 or <uint64_t>v >= <uint64_t>n_classes:
                # equal to `ignore` as numbers (a uint64 never equals a negative one)
                if has_ignore and (v < 0) == (ignore < 0) and <int64_t>v == ignore:
                    continue
                bad = i
                break
    return bad
