"""PyTorch-style `cross_entropy`: class weights, ignore_index, reductions and
label smoothing, computed inside the kernels in one pass (no N x C temporaries).

The Python layer validates and normalises exactly as the rest of xentc
(`_api._Rows`), computes the reduction's denominator (an O(N) pass over the
targets), and hands the kernel the gradient's scale so that the gradient of the
*reduced* loss is written directly, in place when asked.
"""
import numbers

import numpy as np

from . import _kernels
from ._api import (
    _asarray,
    _c_aligned,
    _check_flag,
    _check_no_overlap,
    _check_output,
    _resolve_num_threads,
    _Rows,
    _rows_output,
)

_REDUCTIONS = ("none", "sum", "mean")
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def _class_targets(target, lg, ignore_index, weight):
    """Flat int64 class indices for the kernel (-1 for ignored rows), checked to
    lie in [0, C) or equal ignore_index, and the "mean" denominator: the number
    of counted rows, or the sum of their class weights."""
    if target.shape != lg.batch_shape:
        raise ValueError(
            "class-index target must have the shape of logits without the class axis "
            f"(axis {lg.axis}), got target.shape={target.shape} and logits.shape={lg.arr.shape}"
        )
    flat = _c_aligned(target, dtype=target.dtype.newbyteorder("=")).reshape(-1)
    labels = np.empty(flat.shape, np.int64)
    bad, denominator = _kernels.class_targets(flat, lg.n_classes, ignore_index, labels, weight)
    if bad >= 0:
        where = ", ".join(str(int(i)) for i in np.unravel_index(bad, target.shape))
        name = f"target[{where}]" if target.ndim else "target"
        raise ValueError(
            f"{name} = {flat[bad].item()} is outside the valid range [0, {lg.n_classes}) "
            f"and is not ignore_index={ignore_index}"
        )
    return labels, denominator


def cross_entropy(logits, target, *, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, axis=-1, return_grad=False, grad_out=None, num_threads=None):
    """Cross-entropy with the semantics and numbers of ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores, the classes along `axis` (PyTorch's layout is ``axis=1``).
    target : array_like
        Integer class indices of the shape of `logits` without `axis` (any
        integer dtype), or class probabilities of the shape of `logits` (a
        real floating dtype).
    weight : array_like, optional
        Class weights of shape ``(C,)``.
    ignore_index : int, default -100
        Class-index targets equal to it are ignored: loss 0, zero gradient,
        and they do not count in the mean. A 64-bit signed integer, as in
        PyTorch (a negative one never equals an unsigned target).
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides the sum by the sum of ``weight[target]`` over counted
        rows (class indices; their number without weights) or by the number of
        rows (probabilities), as PyTorch does.
    label_smoothing : float in [0, 1], default 0
        Mixes the target with the uniform distribution: ``(1 - eps) target +
        eps / C``; for class indices computed without materialising one-hot rows.
    axis : int, default -1
        The class axis.
    return_grad : bool, default False
        Also return the gradient of the *reduced* loss with respect to `logits`.
    grad_out : ndarray, optional
        C-contiguous writeable array like `logits` for the gradient; may be
        `logits` itself (in place). Implies ``return_grad=True``.
    num_threads : int, optional
        OpenMP threads; None uses OpenMP's default.

    Returns
    -------
    loss : scalar or ndarray
        A scalar for "mean" and "sum"; the per-row losses (shape of `logits`
        without `axis`) for "none".
    grad : ndarray
        Only when `return_grad` or `grad_out`.

    Raises
    ------
    ValueError
        A class index outside ``[0, C)`` that is not `ignore_index` (naming
        it, its position and the range), shapes that do not match, a `weight`
        of the wrong shape, `label_smoothing` outside [0, 1], an unknown
        `reduction`, an `ignore_index` outside int64, or a bad `grad_out`.
    TypeError
        A target that is neither integer nor real floating, non-real logits.

    Notes
    -----
    A "mean" with no counted row (every target ignored, or a zero total
    weight) returns 0.0 and a zero gradient; PyTorch returns NaN and Keras 0.
    A term whose weight is exactly 0 (a class weight 0, or the label term
    with ``label_smoothing=1``) adds nothing even when its logit makes it
    infinite (``0 * log 0 = 0``); PyTorch returns NaN.
    For "none" the returned gradient is that of the sum of the row losses.

    Examples
    --------
    >>> import numpy as np, xentc
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    >>> round(float(xentc.cross_entropy(logits, [0, 2])), 6)
    0.168117
    >>> round(float(xentc.cross_entropy(logits, [0, -100], label_smoothing=0.1)), 6)
    0.391311
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got reduction={reduction!r}")
    if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(f"label_smoothing must be a real number, got {label_smoothing!r}")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got label_smoothing={eps}")
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}")
    ignore_index = int(ignore_index)
    if not _INT64_MIN <= ignore_index <= _INT64_MAX:  # as PyTorch's, an int64
        raise ValueError(
            f"ignore_index must be a 64-bit signed integer, in [{_INT64_MIN}, {_INT64_MAX}], "
            f"got ignore_index={ignore_index}"
        )
    return_grad = _check_flag("return_grad", return_grad) or grad_out is not None
    n_threads = _resolve_num_threads(num_threads)

    lg = _Rows("logits", logits, axis)
    n_rows, n_classes = lg.rows.shape
    tgt = _asarray("target", target)
    if tgt.dtype.kind in "iu":
        labels = probs = None  # after the weights: their sum over counted rows is the denominator
    elif tgt.dtype.kind == "f":
        if tgt.shape != lg.arr.shape:
            raise ValueError(
                "probability target must have the shape of logits, got "
                f"target.shape={tgt.shape} and logits.shape={lg.arr.shape}"
            )
        probs = _Rows("target", tgt, lg.axis, cdtype=lg.cdtype)
        labels = None
    else:
        raise TypeError(
            "target must hold integer class indices or real class probabilities, "
            f"got target.dtype={tgt.dtype}"
        )

    w = w_arr = None
    if weight is not None:
        w = w_arr = _asarray("weight", weight)
        if w.dtype.kind not in "biuf":
            raise TypeError(f"weight must be real numbers, got weight.dtype={w.dtype}")
        if w.shape != (n_classes,):
            raise ValueError(
                f"weight must have shape ({n_classes},) (one per class), got weight.shape={w.shape}"
            )
        w = _c_aligned(w, dtype=lg.cdtype)
    elif eps > 0:
        w = np.ones(n_classes, lg.cdtype)  # the smoothing term needs sum_c w_c (lse - x_c)

    if grad_out is not None:
        _check_output("grad_out", grad_out, lg.arr.shape, lg.rdtype)
        # weight too: the kernel reads it (a view when it has the computation dtype) for every row
        _check_no_overlap("grad_out", grad_out, [("logits", lg.arr, True), ("target", tgt, False),
                                                 ("weight", w_arr, False)])

    # the denominator of "mean", before anything is computed
    if probs is None:
        labels, denominator = _class_targets(tgt, lg, ignore_index, w if weight is not None else None)
    else:
        denominator = float(n_rows)
    if reduction == "mean":
        gscale = 1.0 / denominator if denominator != 0 else 0.0
    else:
        gscale = 1.0

    loss = np.empty(n_rows, lg.cdtype)
    grad, finish_grad = _rows_output(grad_out, lg) if return_grad else (None, None)
    if labels is not None:
        _kernels.class_xent(lg.rows, labels, loss, grad, w, eps, gscale, n_threads)
    else:
        _kernels.prob_xent(lg.rows, probs.rows, loss, grad, w, eps, gscale, n_threads)

    if reduction == "none":
        with np.errstate(over="ignore"):  # float16 results beyond its range are inf
            result = loss.reshape(lg.batch_shape).astype(lg.rdtype, copy=False)
        result = result[()] if result.ndim == 0 else result
    else:
        total = float(np.sum(loss, dtype=np.float64))
        if reduction == "mean":
            total = total / denominator if denominator != 0 else 0.0
        with np.errstate(over="ignore"):
            result = lg.rdtype.type(total)
    if return_grad:
        return result, finish_grad()
    return result
