# Row helpers: the math of one row of C logits, shared by every kernel.
#
# Every helper works on raw pointers to one contiguous row and never touches
# Python objects, so kernels call them inside prange without the GIL.
#
# The core idea (used by all softmax-family kernels):
#   m = max_j x_j, attained first at index k, and z_j = x_j - m (so z_k = 0).
#   s = sum_{j != k} exp(z_j)                      (the max term, exp(0) = 1, left out)
#   logsumexp(x) = m + log(1 + s) = m + log1p(s)
#   softmax_j    = exp(z_j) / (1 + s)
#   log_softmax_j = z_j - log1p(s)
# Shifting by the max makes every exp() <= 1, so nothing overflows and a row of
# [1, 2, 3] + 1e6 gives the same result as [1, 2, 3].  Leaving the max term out
# of the sum and taking log1p keeps tiny losses: for a confident-correct row
# (logit 10 for the true class, -10 for nine others) s = 9 exp(-20) = 1.855e-8,
# and log1p(s) returns it, while log(1 + s) rounds to log(1) = 0 in float32
# (which is what TensorFlow and PyTorch return).  Treating z_k as exactly 0
# (instead of computing x_k - m) also gives the right limit when x_k = +inf.
#
# Sums are accumulated in double, also for float32 rows: a single float32
# accumulator loses about 7e-4 relative over 10**7 classes; double keeps the
# float32 result within 1e-6 of a float64 reference.

from libc.math cimport exp, expf, log1p, NAN, INFINITY

cimport cython
from cython cimport floating


cdef inline floating exp_t(floating v) noexcept nogil:
    """exp in the precision of the data: expf for float32, exp for float64."""
    if floating is float:
        return expf(v)
    else:
        return exp(v)


cdef inline floating row_max(const floating* x, Py_ssize_t n,
                             Py_ssize_t* argmax) noexcept nogil:
    """Largest of x[0:n] (n >= 1) and the index of its first occurrence.

    Returns NaN when the row holds a NaN, so that callers can make the whole
    row NaN with one test (a NaN would otherwise be skipped by `>`).
    """
    cdef Py_ssize_t j, k = 0
    cdef floating m = x[0], v
    if m != m:
        argmax[0] = 0
        return m
    for j in range(1, n):
        v = x[j]
        if v > m:
            m = v
            k = j
        elif v != v:
            argmax[0] = j
            return v
    argmax[0] = k
    return m


cdef inline bint row_undefined(floating m) noexcept nogil:
    """True when softmax of the row is undefined: a NaN, or every logit -inf
    (0 / 0); such rows get NaN losses, gradients and probabilities."""
    return m != m or m == -INFINITY


cdef inline double row_sum_exp(const floating* x, Py_ssize_t n, floating m,
                               Py_ssize_t k, floating* e) noexcept nogil:
    """s = sum_{j != k} exp(x_j - m), accumulated in double.

    When e is not NULL it receives e_j = exp(x_j - m), with e_k = 1 exactly;
    e may be x itself (each x_j is read before e_j is written).
    """
    cdef Py_ssize_t j
    cdef double s = 0.0
    cdef floating ej
    if e == NULL:
        for j in range(k):
            s += exp_t(x[j] - m)
        for j in range(k + 1, n):
            s += exp_t(x[j] - m)
    else:
        for j in range(k):
            ej = exp_t(x[j] - m)
            e[j] = ej
            s += ej
        for j in range(k + 1, n):
            ej = exp_t(x[j] - m)
            e[j] = ej
            s += ej
        e[k] = 1
    return s


cdef inline void row_fill(floating* out, Py_ssize_t n, floating value) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        out[j] = value


cdef inline floating dense_row(const floating* x, const floating* y,
                               floating* g, Py_ssize_t n) noexcept nogil:
    """Loss of one row with dense labels y; the gradient into g unless NULL.

    loss = sum_j y_j (logsumexp(x) - x_j) = log1p(s) * sum_j y_j - sum_j y_j z_j
    Both terms are >= 0 for y >= 0 (z_j <= 0), so nothing cancels.  A term with
    y_j == 0 is skipped, so 0 * log(0) = 0: a masked logit (-inf) with label 0
    contributes nothing, where y_j * z_j would give 0 * -inf = NaN.

    grad_j = softmax_j * sum(y) - y_j: the derivative of the loss as written,
    also when the labels do not sum to 1.  At the max index k,
        softmax_k * sum(y) - y_k = (sum_{j != k} y_j - y_k s) / (1 + s)
    keeps the tiny gradient of a confident-correct row (-s / (1 + s)) that
    1 / (1 + s) - 1 would round to 0.  g may alias x (in place).
    """
    cdef Py_ssize_t j, k
    cdef floating m = row_max(x, n, &k)
    cdef floating z, yj, yk = y[k]
    cdef double s = 0.0, y_other = 0.0, yz = 0.0, ej, sy, inv
    if row_undefined(m):
        if g != NULL:
            row_fill(g, n, <floating>NAN)
        return <floating>NAN
    # one pass over x and y: the exp-sum, the label sums and the stored exps
    for j in range(n):
        if j == k:
            continue
        z = x[j] - m
        ej = exp_t(z)
        s += ej
        yj = y[j]
        y_other += yj
        if yj != 0:
            yz += yj * z
        if g != NULL:
            g[j] = <floating>ej
    sy = y_other + yk
    if g != NULL:
        inv = 1.0 / (1.0 + s)
        for j in range(n):
            if j != k:
                g[j] = <floating>(g[j] * inv * sy - y[j])
        g[k] = <floating>((y_other - yk * s) * inv)
    return <floating>(log1p(s) * sy - yz)


cdef inline floating sparse_row(const floating* x, Py_ssize_t label,
                                floating* g, Py_ssize_t n) noexcept nogil:
    """Loss of one row whose true class is `label` (0 <= label < n).

    loss = logsumexp(x) - x_label = log1p(s) - z_label, with z_k = 0 at the max.
    grad = softmax - onehot(label); when label == k its entry is
    1 / (1 + s) - 1 = -s / (1 + s), computed in that form so that it does not
    round to 0.  g may alias x (in place).
    """
    cdef Py_ssize_t j, k
    cdef floating m = row_max(x, n, &k)
    cdef double s, inv, z_label
    if row_undefined(m):
        if g != NULL:
            row_fill(g, n, <floating>NAN)
        return <floating>NAN
    z_label = 0.0 if label == k else <double>(x[label] - m)
    s = row_sum_exp(x, n, m, k, g)
    if g != NULL:
        inv = 1.0 / (1.0 + s)
        for j in range(n):
            g[j] = <floating>(g[j] * inv)
        if label == k:
            g[k] = <floating>(-s * inv)
        else:
            g[label] = <floating>(g[label] - 1)
    return <floating>(log1p(s) - z_label)


cdef inline void softmax_row(const floating* x, floating* p, Py_ssize_t n) noexcept nogil:
    """p_j = exp(z_j) / (1 + s); p may alias x."""
    cdef Py_ssize_t j, k
    cdef floating m = row_max(x, n, &k)
    cdef double inv
    if row_undefined(m):
        row_fill(p, n, <floating>NAN)
        return
    inv = 1.0 / (1.0 + row_sum_exp(x, n, m, k, p))
    for j in range(n):
        p[j] = <floating>(p[j] * inv)


cdef inline void log_softmax_row(const floating* x, floating* out, Py_ssize_t n) noexcept nogil:
    """out_j = z_j - log1p(s), with z_k = 0 exactly; out may alias x."""
    cdef Py_ssize_t j, k
    cdef floating m = row_max(x, n, &k)
    cdef double lse
    if row_undefined(m):
        row_fill(out, n, <floating>NAN)
        return
    lse = log1p(row_sum_exp(x, n, m, k, NULL))
    for j in range(n):
        if j != k:
            out[j] = <floating>((x[j] - m) - lse)
    out[k] = <floating>(-lse)


cdef inline floating logsumexp_row(const floating* x, Py_ssize_t n) noexcept nogil:
    """m + log1p(s); -inf for a row of -inf, +inf when the max is +inf."""
    cdef Py_ssize_t k
    cdef floating m = row_max(x, n, &k)
    if m != m or m == INFINITY or m == -INFINITY:
        return m
    return <floating>(m + log1p(row_sum_exp(x, n, m, k, NULL)))
