"""A plain float64 NumPy reference of xentc, kept out of the package.

Everything is computed in float64 on the inputs converted exactly to float64
(float16 and float32 values are exact in float64), row by row after moving the
class axis last.  No threads, no in-place tricks, no Cython: only the math,
written so that its own error is far below the tolerances the tests use.

Per row x, with m = max(x) attained first at index k, z = x - m (z_k = 0 and
every other maximum also exactly 0) and s = sum_{j != k} exp(z_j):

    logsumexp   = m + log1p(s)
    softmax     = exp(z) / (1 + s)
    log_softmax = z - log1p(s)
    dense loss  = sum_{j : y_j != 0} y_j (log1p(s) - z_j)      (0 * log 0 = 0)
    dense grad  = softmax * sum(y) - y
    sparse loss = log1p(s) - z_label
    sparse grad = softmax - onehot(label)

log1p of the non-max sum (rather than log of the full sum) keeps the tiny
losses of confident rows exactly, which the float32 tests need (9 exp(-20) is
below float32's epsilon but far above float64's).  At the max index the
gradient is written as (sum_{j != k} y_j - y_k s) / (1 + s), which is the same
number without the cancellation of softmax_k * sum(y) - y_k.

Special values (the semantics xentc documents):
  * a NaN anywhere in a row makes every result of that row NaN;
  * a row of only -inf: loss, grad, softmax and log_softmax NaN, logsumexp -inf;
  * a single +inf in a row takes all the probability (softmax one-hot there,
    logsumexp +inf, log_softmax 0 there and -inf elsewhere); rows with several
    +inf are not specified and the tests do not generate them;
  * a label exactly 0 contributes nothing to the dense loss, even on a -inf
    logit; a positive label on a -inf logit (finite max) gives +inf.

The `error_scale_*` functions return, per result element, the sum of the
magnitudes of the terms that make it up: the floating-point error of any
reasonable implementation is bounded by a few ulps of that scale (not of the
result, which may be small after cancellation with negative labels).
"""
import numpy as np

__all__ = [
    "as_rows",
    "dense_xent",
    "error_scale_dense_grad",
    "error_scale_dense_loss",
    "error_scale_log_softmax",
    "error_scale_logsumexp",
    "error_scale_sparse_loss",
    "log_softmax",
    "logsumexp",
    "softmax",
    "sparse_xent",
]


def as_rows(x, axis=-1):
    """(rows (n, C) float64, restore) where restore(per_row, like_rows) reshapes results back."""
    x = np.asarray(x)
    axis = axis % x.ndim
    moved = np.moveaxis(x, axis, -1)
    batch_shape = moved.shape[:-1]
    n_classes = moved.shape[-1]
    rows = np.array(moved, dtype=np.float64).reshape(-1, n_classes)

    def restore_rows(r):
        return np.moveaxis(r.reshape(moved.shape), -1, axis)

    def restore_loss(v):
        return v.reshape(batch_shape)

    return rows, restore_loss, restore_rows


def _row_parts(rows):
    """m, k, z, e = exp(z), s, bad (NaN row), empty (all -inf row) for (n, C) float64 rows."""
    n, c = rows.shape
    with np.errstate(all="ignore"):
        bad = np.isnan(rows).any(axis=1)
        safe = np.where(np.isnan(rows), 0.0, rows)
        k = np.argmax(safe, axis=1) if c else np.zeros(n, dtype=np.intp)
        m = safe[np.arange(n), k] if c else np.zeros(n)
        empty = (m == -np.inf) & ~bad
        # z_j = x_j - m, with every maximum exactly 0 (also when m = +inf)
        z = np.where(safe == m[:, None], 0.0, safe - m[:, None])
        e = np.exp(z)
        e_other = e.copy()
        e_other[np.arange(n), k] = 0.0
        s = e_other.sum(axis=1)
    return m, k, z, e, s, bad, empty


def logsumexp(x, axis=-1):
    rows, restore_loss, _ = as_rows(x, axis)
    m, _, _, _, s, bad, empty = _row_parts(rows)
    with np.errstate(all="ignore"):
        out = m + np.log1p(s)
    out[empty] = -np.inf
    out[bad] = np.nan
    return restore_loss(out)


def softmax(x, axis=-1):
    rows, _, restore_rows = as_rows(x, axis)
    _, _, _, e, s, bad, empty = _row_parts(rows)
    with np.errstate(all="ignore"):
        p = e / (1.0 + s)[:, None]
    p[bad | empty] = np.nan
    return restore_rows(p)


def log_softmax(x, axis=-1):
    rows, _, restore_rows = as_rows(x, axis)
    _, _, z, _, s, bad, empty = _row_parts(rows)
    with np.errstate(all="ignore"):
        out = z - np.log1p(s)[:, None]
    out[bad | empty] = np.nan
    return restore_rows(out)


def dense_xent(labels, logits, axis=-1):
    """(loss, grad) for dense labels of the shape of logits (no validation of the labels)."""
    x, restore_loss, restore_rows = as_rows(logits, axis)
    y, _, _ = as_rows(labels, axis)
    assert x.shape == y.shape
    n = x.shape[0]
    _, k, z, e, s, bad, empty = _row_parts(x)
    with np.errstate(all="ignore"):
        l1p = np.log1p(s)
        terms = np.where(y != 0, y * (l1p[:, None] - z), 0.0)
        loss = terms.sum(axis=1)
        sy = y.sum(axis=1)
        p = e / (1.0 + s)[:, None]
        grad = p * sy[:, None] - y
        rows = np.arange(n)
        y_k = y[rows, k]
        grad[rows, k] = ((sy - y_k) - y_k * s) / (1.0 + s)
    undefined = bad | empty
    loss[undefined] = np.nan
    grad[undefined] = np.nan
    return restore_loss(loss), restore_rows(grad)


def sparse_xent(labels, logits):
    """(loss, grad) for integer labels of shape logits.shape[:-1], classes last."""
    x, restore_loss, restore_rows = as_rows(logits, -1)
    lab = np.asarray(labels).reshape(-1).astype(np.int64)
    n, c = x.shape
    assert lab.shape == (n,) and ((lab >= 0) & (lab < c)).all()
    _, k, z, e, s, bad, empty = _row_parts(x)
    rows = np.arange(n)
    with np.errstate(all="ignore"):
        loss = np.log1p(s) - z[rows, lab]
        grad = e / (1.0 + s)[:, None]
        grad[rows, lab] -= 1.0
        at_max = lab == k
        grad[rows[at_max], k[at_max]] = -s[at_max] / (1.0 + s[at_max])
    undefined = bad | empty
    loss[undefined] = np.nan
    grad[undefined] = np.nan
    return restore_loss(loss), restore_rows(grad)


# --------------------------------------------------------------------------
# error scales: the magnitude that rounding errors are proportional to
# --------------------------------------------------------------------------

def error_scale_logsumexp(x, axis=-1):
    rows, restore_loss, _ = as_rows(x, axis)
    m, _, _, _, s, _, _ = _row_parts(rows)
    with np.errstate(all="ignore"):
        return restore_loss(np.abs(m) + np.log1p(s))


def error_scale_log_softmax(x, axis=-1):
    rows, _, restore_rows = as_rows(x, axis)
    _, _, z, _, s, _, _ = _row_parts(rows)
    with np.errstate(all="ignore"):
        return restore_rows(np.abs(z) + np.log1p(s)[:, None])


def error_scale_sparse_loss(labels, logits):
    """log1p(s) + |z_label|: the terms of log1p(s) - z_label."""
    x, restore_loss, _ = as_rows(logits, -1)
    lab = np.asarray(labels).reshape(-1).astype(np.int64)
    _, _, z, _, s, _, _ = _row_parts(x)
    with np.errstate(all="ignore"):
        return restore_loss(np.log1p(s) + np.abs(z[np.arange(x.shape[0]), lab]))


def error_scale_dense_loss(labels, logits, axis=-1):
    x, restore_loss, _ = as_rows(logits, axis)
    y, _, _ = as_rows(labels, axis)
    _, _, z, _, s, _, _ = _row_parts(x)
    with np.errstate(all="ignore"):
        terms = np.where(y != 0, np.abs(y) * (np.log1p(s)[:, None] + np.abs(z)), 0.0)
        return restore_loss(terms.sum(axis=1))


def error_scale_dense_grad(labels, logits, axis=-1):
    x, _, restore_rows = as_rows(logits, axis)
    y, _, _ = as_rows(labels, axis)
    _, _, _, e, s, _, _ = _row_parts(x)
    with np.errstate(all="ignore"):
        p = e / (1.0 + s)[:, None]
        return restore_rows(p * np.abs(y).sum(axis=1)[:, None] + np.abs(y))
