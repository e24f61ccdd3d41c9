"""The Python layer of xentc's sigmoid and probability-space losses.

``sigmoid_cross_entropy_with_logits`` (non-exclusive classes, elementwise, with
an optional positive-class weight), and Keras's ``categorical_crossentropy`` and
``binary_crossentropy`` on probabilities.  Same conventions as ``_api.py``,
whose helpers this module imports: the inputs are normalised through
``_api._Rows`` (``asarray`` -> dtype policy -> axis -> C-contiguous rows of the
computation dtype), outputs are checked before any work, data checks run as
nogil scanners in ``_elementwise.pyx`` and are turned into messages here,
before anything is written, and nothing loops over rows in Python.

dtype policy (as the rest of xentc): float32 and float64 are computed natively;
float16 is computed in float32 and returned as float16; integer and bool inputs
are computed and returned as float64; longdouble is computed and returned as
float64.  Labels, targets and ``pos_weight`` follow the computation dtype of
the logits / output.
"""
import numbers

import numpy as np

from . import _elementwise
from ._api import (
    _asarray,
    _c_aligned,
    _check_flag,
    _check_no_overlap,
    _check_output,
    _dtypes,
    _loss_output,
    _normalize_axis,
    _resolve_num_threads,
    _Rows,
    _rows_output,
    softmax_cross_entropy_with_logits,
)

__all__ = [
    "sigmoid_cross_entropy_with_logits",
    "categorical_crossentropy",
    "binary_crossentropy",
]

# |sum(row) - 1| above this: `output` is not a probability distribution.
# Loose enough for a float16 softmax over many classes (each term rounded by
# 2**-11 relative moves the sum by at most ~5e-4) and for the usual
# renormalisation slack; tight enough that logits (which sum to anything)
# are caught.
SUM_TOLERANCE = 1e-2

_CATEGORICAL_HINT = (
    "with from_logits=False, output must hold class probabilities (for instance the "
    "output of a softmax): non-negative, each row summing to 1 (within {tol:g}). If these "
    "numbers are logits (unnormalised scores), pass from_logits=True: Keras renormalises "
    "such rows silently, which turns logits passed as probabilities into a wrong loss "
    "with no warning."
)
_BINARY_HINT = (
    "with from_logits=False, output must hold probabilities in [0, 1] (for instance the "
    "output of a sigmoid). If these numbers are logits, pass from_logits=True: Keras clips "
    "them to [epsilon, 1 - epsilon] silently, which turns logits passed as probabilities "
    "into a wrong loss with no warning."
)


class _Elements:
    """An input of an elementwise loss seen as one flat C-contiguous array of
    the computation dtype, through ``_Rows`` (the class axis is the last one).

    arr:    numpy.asarray of what the user passed (original layout and dtype)
    shape:  arr.shape, the shape of the results
    rows:   the _Rows of arr as (n_rows, n_cols), n_cols = shape[-1]; a 0-d or
            empty input is seen as (size, 1), which _Rows accepts
    flat:   rows.rows.reshape(-1), the view handed to the kernels
    """

    def __init__(self, name, data, cdtype=None):
        self.name = name
        self.arr = _asarray(name, data)
        self.shape = self.arr.shape
        view = self.arr if self.arr.ndim and self.arr.size else self.arr.reshape(-1, 1)
        self.rows = _Rows(name, view, -1, cdtype)
        self.cdtype, self.rdtype = self.rows.cdtype, self.rows.rdtype
        self.flat = self.rows.rows.reshape(-1)
        self.size = self.flat.shape[0]

    def where(self, k):
        """'name[i, j]' for flat element k ('name' for a 0-d input)."""
        if not self.shape:
            return self.name
        idx = ", ".join(str(int(i)) for i in np.unravel_index(k, self.shape))
        return f"{self.name}[{idx}]"

    def result(self, flat):
        """A flat buffer of the computation dtype as the caller's result."""
        res = flat.reshape(self.shape)
        with np.errstate(over="ignore"):  # float16 results beyond its range are inf
            res = res.astype(self.rdtype, copy=False)
        return res[()] if res.ndim == 0 else res


def _check_epsilon(epsilon):
    if isinstance(epsilon, (bool, np.bool_)) or not isinstance(epsilon, numbers.Real):
        raise TypeError(
            f"epsilon must be a real number in [0, 0.5], got {epsilon!r} of type "
            f"{type(epsilon).__name__}"
        )
    eps = float(epsilon)
    if not 0.0 <= eps <= 0.5:  # also NaN
        raise ValueError(f"epsilon must be in [0, 0.5], got epsilon={eps!r}")
    return eps


def _same_shape(a_name, a, b_name, b):
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape, got "
            f"{a_name}.shape={a.shape} and {b_name}.shape={b.shape}"
        )


def _pos_weight_layout(pos_weight, lg):
    """(q, q_offsets, q_row_stride, q_col_stride, n_cols, q_array) for the kernel.

    q is pos_weight converted to the computation dtype in its own (small)
    shape, never broadcast to the logits: the kernel sees the logits as flat
    rows of n_cols elements, and element (i, j) of them reads
    q[off_i + j * q_col_stride] with off_i = q_offsets[i] when offsets are
    given, else i * q_row_stride.  A (C,) weight is row stride 0, column
    stride 1; a scalar, a single run of stride 0; a weight shaped like the
    logits, a single run of stride 1.  Only a weight that varies along some
    leading axes but not others needs q_offsets (one int64 per row).
    """
    n = lg.size
    whole = max(n, 1)  # the whole array as one run of elements
    if pos_weight is None:
        return None, None, 0, 0, whole, None
    q = _asarray("pos_weight", pos_weight)
    _dtypes("pos_weight", q.dtype)  # TypeError for what is not real numbers
    shape = lg.shape
    try:
        broadcast = np.broadcast_shapes(q.shape, shape)
    except ValueError:
        broadcast = None
    if broadcast != shape:
        raise ValueError(
            "pos_weight must be broadcastable to the shape of logits, got "
            f"pos_weight.shape={q.shape} and logits.shape={shape}"
        )
    qc = _c_aligned(q, dtype=lg.cdtype)
    if qc.size == 1 or n == 0:
        return qc.reshape(-1), None, 0, 0, whole, q
    if qc.size == n:  # broadcastable and as large: the same elements in the same order
        return qc.reshape(-1), None, 0, 1, whole, q
    qn = qc.reshape((1,) * (len(shape) - qc.ndim) + qc.shape)
    n_cols = shape[-1]
    q_cols = qn.shape[-1]  # 1 or n_cols
    col_stride = 1 if q_cols == n_cols else 0
    lead, q_lead = shape[:-1], qn.shape[:-1]
    if all(d == 1 for d in q_lead):
        return qc.reshape(-1), None, 0, col_stride, n_cols, q
    if q_lead == lead:
        return qc.reshape(-1), None, q_cols, col_stride, n_cols, q
    starts = np.arange(0, qc.size, q_cols, dtype=np.int64).reshape(q_lead)
    offsets = np.ascontiguousarray(np.broadcast_to(starts, lead)).reshape(-1)
    return qc.reshape(-1), offsets, 0, col_stride, n_cols, q


def sigmoid_cross_entropy_with_logits(labels, logits, *, pos_weight=None, return_grad=False,
                                      grad_out=None, num_threads=None):
    """Sigmoid cross-entropy between labels and logits, element by element.

    For non-exclusive classes (each element an independent yes/no):
    ``loss = -(z log(sigmoid(x)) + (1 - z) log(1 - sigmoid(x)))`` with
    ``x = logits`` and ``z = labels``, computed stably as TensorFlow's
    ``max(x, 0) - x z + log1p(exp(-|x|))``. With `pos_weight` ``q``, the
    positive term is weighted: ``loss = -(q z log(sigmoid(x)) + (1 - z)
    log(1 - sigmoid(x)))``, i.e. ``(1 - z) x + (1 + (q - 1) z) (log1p(exp(-|x|))
    + max(-x, 0))`` as in ``tf.nn.weighted_cross_entropy_with_logits``.

    Parameters
    ----------
    labels : array_like
        The same shape as `logits`; any real float or integer dtype. Usually
        0 or 1 (or soft labels in [0, 1]); any real value is computed.
    logits : array_like
        Unnormalised scores, any shape (0-d too); float32 and float64 are
        computed natively, float16 in float32, integers in float64.
    pos_weight : array_like, optional
        Weight of the positive (label 1) term, broadcastable to the shape of
        `logits`, typically one per class of shape ``(C,)``. It is read in
        place by the kernel, never broadcast to the logits' size.
    return_grad : bool, default False
        Also return the gradient of ``loss.sum()`` with respect to `logits`.
    grad_out : ndarray, optional
        C-contiguous, writeable array of the shape and result dtype of
        `logits` that receives the gradient; may be `logits` itself (in
        place). Returned as the same object. Implies ``return_grad=True``.
    num_threads : int, optional
        OpenMP threads; None uses OpenMP's default (``OMP_NUM_THREADS``,
        threadpoolctl). Results are bit-identical for every value.

    Returns
    -------
    loss : ndarray or scalar
        The shape of `logits` (a scalar for 0-d input).
    grad : ndarray
        Only when `return_grad` or `grad_out`: ``sigmoid(x) - z`` without
        `pos_weight`, ``(1 - z) sigmoid(x) - q z sigmoid(-x)`` with it.

    Raises
    ------
    ValueError
        `labels` and `logits` differ in shape, `pos_weight` is not
        broadcastable to the shape of `logits`, or `grad_out` has the wrong
        shape, dtype or layout, is read-only or overlaps `labels` or
        `pos_weight`.
    TypeError
        An input that is not real floating-point or integer numbers, or a
        flag that is not a bool.

    Notes
    -----
    The loss is computed as ``q z softplus(-x) + (1 - z) softplus(x)``: for
    labels in [0, 1] both terms are non-negative, so nothing cancels, and a
    term whose weight is exactly 0 is skipped, the ``0 * log 0 = 0`` rule of
    xentc. Hence:

    * tiny losses survive in float32: ``x = -20, z = 0`` gives 2.0611537e-09
      (PyTorch's ``binary_cross_entropy_with_logits`` returns 0 there), and the
      gradient ``sigmoid(-20) = 2.06e-09`` and, for ``x = 20, z = 1``,
      ``-sigmoid(-20)`` (``sigmoid(x) - 1`` rounds to 0 in float32);
    * ``x = -inf`` with ``z = 0`` and ``x = +inf`` with ``z = 1`` give loss and
      gradient 0 (TensorFlow's formula gives NaN: ``0 * inf``); a wrong
      infinite logit gives ``+inf``;
    * a NaN logit or label gives NaN in its own element only.

    TensorFlow's ``weighted_cross_entropy_with_logits`` and PyTorch's
    ``BCEWithLogitsLoss(pos_weight=...)`` compute the same function (PyTorch
    also averages unless ``reduction='none'``); neither validates the labels,
    and neither does this function. TensorFlow's weighted gradient is wrong at
    exactly ``x = 0`` (it differentiates ``abs`` and ``relu`` with slope 0
    there: ``1 - z`` instead of ``(1 - z) / 2 - q z / 2``); PyTorch's float32
    gradient for ``x = 20, z = 1`` is 0.

    Examples
    --------
    >>> import numpy as np, xentc
    >>> xentc.sigmoid_cross_entropy_with_logits([1.0, 0.0, 0.0], [2.0, -1.0, -20.0])
    array([1.26928011e-01, 3.13261688e-01, 2.06115362e-09])
    >>> x = np.array([[-20.0, 20.0]], dtype=np.float32)
    >>> loss, grad = xentc.sigmoid_cross_entropy_with_logits(
    ...     np.array([[0, 1]]), x, pos_weight=[1.0, 3.0], return_grad=True)
    >>> print(loss, grad)
    [[2.0611537e-09 6.1834609e-09]] [[ 2.0611537e-09 -6.1834609e-09]]
    """
    return_grad = _check_flag("return_grad", return_grad) or grad_out is not None
    n_threads = _resolve_num_threads(num_threads)
    lg = _Elements("logits", logits)
    lab = _asarray("labels", labels)
    _same_shape("labels", lab, "logits", lg.arr)
    lb = _Elements("labels", lab, cdtype=lg.cdtype)
    q, q_offsets, q_row_stride, q_col_stride, n_cols, q_arr = _pos_weight_layout(pos_weight, lg)
    if grad_out is not None:
        _check_output("grad_out", grad_out, lg.shape, lg.rdtype)
        _check_no_overlap("grad_out", grad_out, [("logits", lg.arr, True), ("labels", lb.arr, False),
                                                 ("pos_weight", q_arr, False)])
    if return_grad:
        # grad_out seen as the (n_rows, n_cols) rows of the logits (a view:
        # it is C-contiguous); the kernel writes into it directly when it has
        # the computation dtype, else into a buffer copied in by finish()
        rows_out = None if grad_out is None else grad_out.reshape(lg.rows.moved_shape)
        grad, finish_grad = _rows_output(rows_out, lg.rows)
        grad = grad.reshape(-1)
        # the loss may not go into our copy of the logits: the gradient may
        loss = np.empty(lg.size, lg.cdtype)
    else:
        grad = None
        loss = lg.flat if lg.rows.owned else np.empty(lg.size, lg.cdtype)
    _elementwise.sigmoid_xent(lg.flat, lb.flat, q, q_offsets, q_row_stride, q_col_stride, n_cols,
                              loss, grad, n_threads)
    loss = lg.result(loss)
    if not return_grad:
        return loss
    g = finish_grad()
    if grad_out is not None:
        return loss, grad_out
    return loss, lg.result(g.reshape(-1))


def _keras_arguments(target, output, from_logits, epsilon, num_threads):
    """The checks both Keras-style losses open with: flags, epsilon, threads,
    real dtypes and equal shapes of target and output."""
    from_logits = _check_flag("from_logits", from_logits)
    eps = _check_epsilon(epsilon)
    n_threads = _resolve_num_threads(num_threads)
    out_arr, t_arr = _asarray("output", output), _asarray("target", target)
    _dtypes("output", out_arr.dtype)
    _dtypes("target", t_arr.dtype)
    _same_shape("target", t_arr, "output", out_arr)
    return from_logits, eps, n_threads, t_arr, out_arr


def categorical_crossentropy(target, output, *, from_logits=False, axis=-1, epsilon=1e-7,
                             num_threads=None):
    """Keras's categorical cross-entropy, row by row, with a check of `output`.

    With ``from_logits=False`` (Keras's default), `output` holds class
    probabilities: each row is renormalised to sum to 1, clipped to
    ``[epsilon, 1 - epsilon]``, and ``loss = -sum(target * log(output), axis)``.
    With ``from_logits=True``, ``loss = -sum(target * log_softmax(output), axis)``
    (:func:`softmax_cross_entropy_with_logits` without label validation).

    Parameters
    ----------
    target : array_like
        Class probabilities (one-hot or soft), the shape of `output`; any real
        float or integer dtype. Not validated (as in Keras).
    output : array_like
        Probabilities (``from_logits=False``) or logits, at least 1-d; float32
        and float64 computed natively, float16 in float32, integers in float64.
    from_logits : bool, default False
        Whether `output` holds logits rather than probabilities.
    axis : int, default -1
        The class axis.
    epsilon : float, default 1e-7
        Probabilities are clipped to ``[epsilon, 1 - epsilon]`` (both bounds
        rounded to the computation dtype, as Keras's ``np.clip`` does); Keras's
        ``backend.epsilon()`` is 1e-7. Must be in [0, 0.5]. Not used with
        ``from_logits=True``.
    num_threads : int, optional
        OpenMP threads; None uses OpenMP's default. Results are bit-identical
        for every value.

    Returns
    -------
    ndarray or scalar
        The shape of `output` without `axis` (a scalar for 1-d input).

    Raises
    ------
    ValueError
        With ``from_logits=False``: a negative value in `output`, or a row of
        `output` whose sum is off 1 by more than 1e-2 (``SUM_TOLERANCE``),
        naming the element or row, what the row sums to, and that logits were
        probably passed as probabilities. Also: `target` and `output` differ
        in shape, `output` is 0-d or has no classes along `axis`, or `epsilon`
        is outside [0, 0.5].
    numpy.exceptions.AxisError
        `axis` is out of range.
    TypeError
        An input that is not real floating-point or integer numbers, a flag
        that is not a bool, an `epsilon` that is not a real number.

    Notes
    -----
    Keras renormalises any row, so logits passed as probabilities (with the
    default ``from_logits=False``) give a finite, wrong loss with no warning;
    here a row that is not a distribution within the tolerance raises, and a
    row within it is renormalised exactly as Keras does, so the numbers match
    Keras's. NaN in `output` is not an error: it makes its own row NaN. A
    ``target`` of exactly 0 contributes nothing even with ``epsilon=0`` (Keras
    gives NaN for ``0 * log 0`` there). The renormalising sum is accumulated in
    double. ``tf.keras.losses.CategoricalCrossentropy`` and
    ``keras.losses.categorical_crossentropy`` compute the same per-row loss
    (the former then averages); PyTorch's ``CrossEntropyLoss`` takes logits,
    i.e. ``from_logits=True``.

    Examples
    --------
    >>> import xentc
    >>> target = [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]
    >>> xentc.categorical_crossentropy(target, [[0.7, 0.1, 0.1, 0.1], [0.73, 0.26, 0.005, 0.005]])
    array([0.35667494, 0.31471074])
    >>> print(f"{xentc.categorical_crossentropy([0.0, 1.0], [2.0, 3.0], from_logits=True):.12f}")
    0.313261687518
    """
    from_logits, eps, n_threads, t_arr, out_arr = _keras_arguments(
        target, output, from_logits, epsilon, num_threads)
    if out_arr.ndim == 0:
        raise ValueError("output must have at least one dimension (the classes), got a 0-d array")
    ax = _normalize_axis(axis, out_arr.ndim, "output")
    if out_arr.shape[ax] == 0:
        raise ValueError(
            f"output has 0 classes along axis {ax} (output.shape={out_arr.shape}): "
            "cross-entropy over an empty set of classes is undefined"
        )
    if from_logits:
        return softmax_cross_entropy_with_logits(t_arr, out_arr, ax, validate_labels=False,
                                                 num_threads=n_threads)
    lg = _Rows("output", out_arr, ax)
    lt = _Rows("target", t_arr, ax, cdtype=lg.cdtype)
    bad = _elementwise.first_bad_distribution(lg.rows, SUM_TOLERANCE)
    if bad >= 0:
        _raise_not_a_distribution(lg, bad)
    loss, finish = _loss_output(None, lg)
    _elementwise.categorical_xent_probs(lt.rows, lg.rows, eps, loss, n_threads)
    return finish()


def _raise_not_a_distribution(lg, row):
    p = lg.rows[row]
    hint = _CATEGORICAL_HINT.format(tol=SUM_TOLERANCE)
    negative = np.flatnonzero(p < 0)
    if negative.size:
        col = int(negative[0])
        raise ValueError(f"output[{lg.index(row, col)}] = {p[col].item()!r} is negative; {hint}")
    total = float(np.sum(p, dtype=np.float64))
    raise ValueError(f"output[{lg.index(row)}] sums to {total:.7g}, not 1; {hint}")


def binary_crossentropy(target, output, *, from_logits=False, epsilon=1e-7, num_threads=None):
    """Keras's binary cross-entropy, element by element, with a check of `output`.

    With ``from_logits=False`` (Keras's default), `output` holds probabilities:
    they are clipped to ``p = clip(output, epsilon, 1 - epsilon)`` and
    ``loss = -(target log(p) + (1 - target) log(1 - p))``. With
    ``from_logits=True`` this is :func:`sigmoid_cross_entropy_with_logits`.
    No mean is taken (``keras.ops.binary_crossentropy``, not the
    ``keras.losses`` function, which averages over the last axis).

    Parameters
    ----------
    target : array_like
        The shape of `output`; any real float or integer dtype, usually 0 or 1.
        Not validated (as in Keras).
    output : array_like
        Probabilities in [0, 1] (``from_logits=False``) or logits, any shape;
        float32 and float64 computed natively, float16 in float32, integers in
        float64.
    from_logits : bool, default False
        Whether `output` holds logits rather than probabilities.
    epsilon : float, default 1e-7
        Probabilities are clipped to ``[epsilon, 1 - epsilon]`` (bounds rounded
        to the computation dtype, as Keras's ``np.clip`` does). Must be in
        [0, 0.5]. Not used with ``from_logits=True``.
    num_threads : int, optional
        OpenMP threads; None uses OpenMP's default. Results are bit-identical
        for every value.

    Returns
    -------
    ndarray or scalar
        The shape of `output` (a scalar for 0-d input).

    Raises
    ------
    ValueError
        With ``from_logits=False``: a value of `output` outside [0, 1], naming
        the element and its value, and that logits were probably passed as
        probabilities. Also: `target` and `output` differ in shape, or
        `epsilon` is outside [0, 0.5].
    TypeError
        An input that is not real floating-point or integer numbers, a flag
        that is not a bool, an `epsilon` that is not a real number.

    Notes
    -----
    Keras clips any value, so logits passed as probabilities give a finite,
    wrong loss with no warning; here a value outside [0, 1] raises. NaN in
    `output` is not an error: it makes its own element NaN. ``log(1 - p)`` is
    computed as ``log1p(-p)``, exact where Keras's float32 ``log(1 - p)``
    keeps only the rounding of ``1 - p`` (``p = 1e-7``: 1.0000000e-07 instead
    of Keras's 1.1920929e-07). A term whose weight (``target`` or
    ``1 - target``) is exactly 0 is skipped, so ``epsilon=0`` gives 0, not NaN,
    for a right answer at probability 0 or 1. With ``from_logits=True``,
    Keras's TensorFlow, PyTorch and JAX backends compute the exact logits form
    as here, but its NumPy backend applies a sigmoid and then the clip, which
    caps the loss at about 16.1; PyTorch's ``binary_cross_entropy`` clamps
    ``log`` at -100 instead of clipping the probability.

    Examples
    --------
    >>> import xentc
    >>> # the seed-003 answer: ~0.67 and ~0.72 for the two predictions (summed)
    >>> print(xentc.binary_crossentropy([1, 0, 0, 0], [0.7, 0.1, 0.1, 0.1]).sum().round(4))
    0.6728
    >>> print(xentc.binary_crossentropy([1, 0, 0, 0], [0.73, 0.26, 0.05, 0.05]).sum().round(4))
    0.7184
    """
    from_logits, eps, n_threads, t_arr, out_arr = _keras_arguments(
        target, output, from_logits, epsilon, num_threads)
    if from_logits:
        return sigmoid_cross_entropy_with_logits(t_arr, out_arr, num_threads=n_threads)
    el = _Elements("output", out_arr)
    et = _Elements("target", t_arr, cdtype=el.cdtype)
    bad = _elementwise.first_outside(el.flat, 0.0, 1.0)
    if bad >= 0:
        raise ValueError(f"{el.where(bad)} = {el.flat[bad].item()!r} is outside [0, 1]; {_BINARY_HINT}")
    loss = el.flat if el.rows.owned else np.empty(el.size, el.cdtype)
    _elementwise.binary_xent_probs(et.flat, el.flat, eps, loss, n_threads)
    return el.result(loss)
