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
    "score",
    "score_rows",
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


# --------------------------------------------------------------------------
# sigmoid cross-entropy with logits and Keras's probability-space losses
# (xentc._binary), appended: float64, elementwise / row by row, no validation
#
#   sigmoid_xent:  a = q z, b = 1 - z (q = pos_weight, 1 when absent),
#                  loss = a softplus(-x) + b softplus(x), a term of weight
#                  exactly 0 left out (0 * inf = 0), NaN where x is NaN;
#                  grad = b sigmoid(x) - a sigmoid(-x).
#                  softplus is numpy.logaddexp(0, t) (NumPy's own stable
#                  log(1 + exp(t)), not the kernel's code).
#   categorical_crossentropy: p = clip(o / sum(o), lo, hi),
#                  loss = -sum_{t != 0} t log p
#   binary_crossentropy:      p = clip(o, lo, hi),
#                  loss = -(t log p + (1 - t) log1p(-p)), 0-weight terms left out
#   with lo, hi = epsilon and 1 - epsilon rounded to `clip_dtype`, the dtype
#   xentc computes in (as Keras's np.clip rounds its bounds to the data's dtype).
# --------------------------------------------------------------------------

__all__ += [
    "binary_crossentropy",
    "categorical_crossentropy",
    "error_scale_binary_crossentropy",
    "error_scale_categorical_crossentropy",
    "error_scale_sigmoid_grad",
    "error_scale_sigmoid_loss",
    "sigmoid_xent",
]


def _sigmoid_parts(labels, logits, pos_weight):
    x = np.array(logits, dtype=np.float64)
    z = np.array(labels, dtype=np.float64)
    assert x.shape == z.shape
    q = np.ones(x.shape) if pos_weight is None else np.broadcast_to(
        np.asarray(pos_weight, dtype=np.float64), x.shape)
    with np.errstate(all="ignore"):
        a, b = q * z, 1.0 - z
        sp_neg, sp_pos = np.logaddexp(0.0, -x), np.logaddexp(0.0, x)
        # sigmoid of both signs without overflow and without 1 - sigmoid
        e = np.exp(-np.abs(x))
        big, small = 1.0 / (1.0 + e), e / (1.0 + e)
        s_pos = np.where(x >= 0, big, small)
        s_neg = np.where(x >= 0, small, big)
    return x, a, b, sp_neg, sp_pos, s_pos, s_neg


def sigmoid_xent(labels, logits, pos_weight=None):
    """(loss, grad) of sigmoid cross-entropy, elementwise, the shape of logits."""
    x, a, b, sp_neg, sp_pos, s_pos, s_neg = _sigmoid_parts(labels, logits, pos_weight)
    with np.errstate(all="ignore"):
        loss = np.where(a != 0, a * sp_neg, 0.0) + np.where(b != 0, b * sp_pos, 0.0)
        loss = np.where(np.isnan(x), np.nan, loss)
        grad = b * s_pos - a * s_neg
    return loss, grad


def error_scale_sigmoid_loss(labels, logits, pos_weight=None):
    _, a, b, sp_neg, sp_pos, _, _ = _sigmoid_parts(labels, logits, pos_weight)
    with np.errstate(all="ignore"):
        return np.where(a != 0, np.abs(a) * sp_neg, 0.0) + np.where(b != 0, np.abs(b) * sp_pos, 0.0)


def error_scale_sigmoid_grad(labels, logits, pos_weight=None):
    _, a, b, _, _, s_pos, s_neg = _sigmoid_parts(labels, logits, pos_weight)
    with np.errstate(all="ignore"):
        return np.abs(b) * s_pos + np.abs(a) * s_neg


def _clip_bounds(epsilon, clip_dtype):
    t = np.dtype(clip_dtype).type
    return float(t(epsilon)), float(t(1.0 - epsilon))


def _categorical_p(target, output, axis, epsilon, clip_dtype):
    t, restore_loss, _ = as_rows(target, axis)
    o, _, _ = as_rows(output, axis)
    lo, hi = _clip_bounds(epsilon, clip_dtype)
    with np.errstate(all="ignore"):
        p = np.clip(o / o.sum(axis=1, keepdims=True), lo, hi)
    return t, p, restore_loss


def categorical_crossentropy(target, output, axis=-1, epsilon=1e-7, clip_dtype=np.float64):
    """Keras's loss on probabilities (from_logits=False), one value per row."""
    t, p, restore_loss = _categorical_p(target, output, axis, epsilon, clip_dtype)
    with np.errstate(all="ignore"):
        loss = -np.where(t != 0, t * np.log(p), 0.0).sum(axis=1)
    return restore_loss(loss)


def error_scale_categorical_crossentropy(target, output, axis=-1, epsilon=1e-7,
                                         clip_dtype=np.float64):
    """sum |t| (|log p| + 1): p = o / sum(o) is rounded once to the computation
    dtype before its log, an absolute error of an ulp of 1 in log p."""
    t, p, restore_loss = _categorical_p(target, output, axis, epsilon, clip_dtype)
    with np.errstate(all="ignore"):
        return restore_loss(np.where(t != 0, np.abs(t) * (np.abs(np.log(p)) + 1.0), 0.0).sum(axis=1))


def _binary_parts(target, output, epsilon, clip_dtype):
    t = np.array(target, dtype=np.float64)
    o = np.array(output, dtype=np.float64)
    assert t.shape == o.shape
    lo, hi = _clip_bounds(epsilon, clip_dtype)
    with np.errstate(all="ignore"):
        p = np.clip(o, lo, hi)
        return t, 1.0 - t, np.log(p), np.log1p(-p)


def binary_crossentropy(target, output, epsilon=1e-7, clip_dtype=np.float64):
    """Keras's elementwise binary cross-entropy on probabilities (from_logits=False)."""
    a, b, log_p, log_q = _binary_parts(target, output, epsilon, clip_dtype)
    with np.errstate(all="ignore"):
        loss = -(np.where(a != 0, a * log_p, 0.0) + np.where(b != 0, b * log_q, 0.0))
        return np.where(np.isnan(log_p), np.nan, loss)


def error_scale_binary_crossentropy(target, output, epsilon=1e-7, clip_dtype=np.float64):
    a, b, log_p, log_q = _binary_parts(target, output, epsilon, clip_dtype)
    with np.errstate(all="ignore"):
        return np.where(a != 0, np.abs(a * log_p), 0.0) + np.where(b != 0, np.abs(b * log_q), 0.0)


# --------------------------------------------------------------------------
# PyTorch's cross_entropy (nll_loss of log_softmax plus aten's label-smoothing term)
# --------------------------------------------------------------------------

def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean",
                      label_smoothing=0.0, axis=-1):
    """float64 reference; returns (loss, per-row losses) as PyTorch defines them."""
    x = np.moveaxis(np.asarray(logits, np.float64), axis, -1)
    c = x.shape[-1]
    m = x.max(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        logp = x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    eps = label_smoothing
    t = np.asarray(target)
    if t.dtype.kind in "iu":
        keep = t != ignore_index
        safe = np.where(keep, t, 0).astype(np.int64)
        nll = -np.take_along_axis(logp, safe[..., None], -1)[..., 0] * w[safe]
        smooth = -(logp * w).sum(-1)
        rows = np.where(keep, (1 - eps) * nll + eps / c * smooth, 0.0)
        denominator = w[safe][keep].sum()
    else:
        tt = np.moveaxis(np.asarray(t, np.float64), axis, -1) * (1 - eps) + eps / c
        with np.errstate(invalid="ignore"):
            rows = -(np.where(tt * w != 0, tt * w * logp, 0.0)).sum(-1)
        denominator = rows.size
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / denominator if denominator != 0 else 0.0


# --------------------------------------------------------------------------
# where= masks, optax's semantics
# --------------------------------------------------------------------------

def masked_softmax_parts(x, w):
    """float64 (log_softmax, softmax, lse) over the included classes (numpy, rows last)."""
    x = np.asarray(x, np.float64)
    w = np.broadcast_to(w, x.shape)
    xm = np.where(w, x, -np.inf)
    m = xm.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(w, np.exp(xm - m), 0.0)
        s = e.sum(-1, keepdims=True)
        lse = np.log(s) + m
        logp = np.where(w, xm - lse, -np.inf)
        # an included NaN poisons its row's included classes
        p = np.where(w, np.where(s > 0, e / s, np.where(np.isnan(s), np.nan, 0.0)), 0.0)
    return logp, p, lse[..., 0]


def masked_dense(y, x, w):
    logp, p, _ = masked_softmax_parts(x, w)
    w = np.broadcast_to(w, x.shape)
    yw = np.where(w, y, 0.0)
    with np.errstate(invalid="ignore"):
        loss = -np.where(yw != 0, yw * logp, 0.0).sum(-1)
    grad = np.where(w, p * yw.sum(-1, keepdims=True) - yw, 0.0)
    return loss, grad


def masked_sparse(labels, x, w):
    logp, p, lse = masked_softmax_parts(x, w)
    w = np.broadcast_to(w, x.shape)
    none = ~w.any(-1)
    xl = np.take_along_axis(np.asarray(x, np.float64), labels[:, None], -1)[:, 0]
    loss = np.where(none, 0.0, lse - xl)
    grad = p - np.where(w, np.eye(x.shape[-1])[labels], 0.0)
    grad[np.eye(x.shape[-1], dtype=bool)[labels] & ~w] = -1   # optax: the label's own logit, gradient -1
    grad[none] = 0
    return loss, grad


# --------------------------------------------------------------------------
# scoring (xentc.score): loss, perplexity, accuracy, top-k, calibration
# --------------------------------------------------------------------------

def score_rows(logits, labels, axis=-1):
    """Per row (loss, class, confidence, sorted logits descending) in float64.

    Integer labels: the sparse loss; real labels: the dense loss and the class
    is the row's first argmax.  Confidence is the largest softmax probability.
    """
    x, _, _ = as_rows(logits, axis)
    lab = np.asarray(labels)
    if lab.dtype.kind == "f":
        loss = np.asarray(dense_xent(lab, logits, axis)[0], np.float64).reshape(-1)
        cls = np.argmax(as_rows(lab, axis)[0], axis=1)
    else:
        cls = lab.reshape(-1).astype(np.int64)
        loss = np.asarray(sparse_xent(cls, x)[0], np.float64).reshape(-1)
    conf = softmax(x).max(axis=1)
    return loss, cls, conf, -np.sort(-x, axis=1)


def score(logits, labels, axis=-1, top_k=(1, 5), bins=15):
    """xentc.score's numbers as a dict, from plain definitions.

    A top-k hit: the label is among the first k classes of a stable sort of
    the row by decreasing logit (ties by class index; always a hit when
    k >= C for a defined row).
    ECE: sum over bins (b/bins, (b+1)/bins] of |correct_b - sum of conf_b| / N.
    """
    loss, cls, conf, _ = score_rows(logits, labels, axis)
    x, _, _ = as_rows(logits, axis)
    n = x.shape[0]
    undefined = np.isnan(conf)

    order = np.argsort(-x, axis=1, kind="stable")  # NaN rows: undefined, never a hit
    place = np.argmax(order == cls[:, None], axis=1)

    def hits(k):
        return (place < k) & ~undefined

    correct = hits(1)
    ece = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if inside.any():
            ece += abs(correct[inside].sum() - conf[inside].sum()) / n
    mean = loss.mean() if n else np.nan
    return {
        "rows": n,
        "loss_sum": loss.sum(),
        "mean_loss": mean,
        "perplexity": np.exp(mean),
        "accuracy": correct.mean() if n else np.nan,
        "top_k_accuracy": {k: (hits(k).mean() if n else np.nan) for k in top_k},
        "expected_calibration_error": np.nan if undefined.any() or not n else ece,
    }


# --------------------------------------------------------------------------
# where= with special values (tests/test_fuzz.py): excluded classes are set to
# -inf, so they drop out of the softmax with the semantics above (a NaN or a
# +inf under the mask is ignored; a row whose included logits are all -inf or
# hold a NaN is undefined), and their dense labels to 0.  An excluded class
# then has probability 0, log-probability -inf and gradient 0, whatever its
# row; a row with no class included has loss 0, gradient 0, softmax 0, and
# log_softmax and logsumexp -inf.  For integer labels the label's own logit is
# used even when its class is excluded (optax): loss = logsumexp over the
# included classes - x_label, gradient -1 there.
# --------------------------------------------------------------------------

__all__ += [
    "error_scale_where_sparse_loss",
    "where_dense_xent",
    "where_log_softmax",
    "where_logsumexp",
    "where_softmax",
    "where_sparse_xent",
]


def _where_parts(x, where, axis):
    """(x with the excluded classes -inf, the mask broadcast to x, rows with no class included)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.broadcast_to(np.asarray(where, dtype=bool), x.shape)
    return np.where(w, x, -np.inf), w, ~w.any(axis=axis)


def where_logsumexp(x, where, axis=-1):
    xs, _, _ = _where_parts(x, where, axis)
    return logsumexp(xs, axis)  # a row with nothing included: all -inf, so -inf


def where_softmax(x, where, axis=-1):
    xs, w, _ = _where_parts(x, where, axis)
    p = softmax(xs, axis)
    p[~w] = 0.0
    return p


def where_log_softmax(x, where, axis=-1):
    xs, w, _ = _where_parts(x, where, axis)
    out = log_softmax(xs, axis)
    out[~w] = -np.inf
    return out


def where_dense_xent(labels, x, where, axis=-1):
    xs, w, none = _where_parts(x, where, axis)
    ys = np.where(w, np.asarray(labels, dtype=np.float64), 0.0)
    loss, grad = dense_xent(ys, xs, axis)
    loss = np.array(loss, dtype=np.float64)
    loss[none] = 0.0
    grad[~w] = 0.0
    return loss, grad


def where_sparse_xent(labels, x, where):
    """(loss, grad) for integer labels with a where= mask, classes last."""
    xs, w, none = _where_parts(x, where, -1)
    loss, grad = sparse_xent(labels, xs)
    rows, restore_loss, restore_rows = as_rows(xs, -1)
    n, c = rows.shape
    lab = np.asarray(labels).reshape(-1).astype(np.int64)
    wr = w.reshape(n, c)
    g = grad.reshape(n, c).copy()
    g[~wr] = 0.0
    excluded = ~wr[np.arange(n), lab]
    g[np.arange(n)[excluded], lab[excluded]] = -1.0
    m, _, _, _, s, bad, empty = _row_parts(rows)
    x_label = np.asarray(x, dtype=np.float64).reshape(n, c)[np.arange(n), lab]
    with np.errstate(all="ignore"):
        own = np.log1p(s) - (x_label - m)  # logsumexp of the included classes - x_label
        # (an excluded +inf label in a row whose included max is +inf: inf - inf, NaN)
    lo = np.array(loss, dtype=np.float64).reshape(n)
    lo[excluded] = own[excluded]
    lo[bad | empty] = np.nan
    none = none.reshape(n)
    lo[none] = 0.0
    g[none] = 0.0
    return restore_loss(lo), restore_rows(g)


def error_scale_where_sparse_loss(labels, x, where):
    """log1p(s) + |x_label - m| over the included classes (the terms of the loss)."""
    xs, _, _ = _where_parts(x, where, -1)
    rows, restore_loss, _ = as_rows(xs, -1)
    n, c = rows.shape
    lab = np.asarray(labels).reshape(-1).astype(np.int64)
    m, _, _, _, s, _, _ = _row_parts(rows)
    x_label = np.asarray(x, dtype=np.float64).reshape(n, c)[np.arange(n), lab]
    with np.errstate(all="ignore"):
        return restore_loss(np.log1p(s) + np.abs(np.where(x_label == m, 0.0, x_label - m)))
