"""`xentc.score`: loss, perplexity, accuracy, top-k accuracy and calibration of
model outputs, streamed over row batches so that memory-mapped logits larger
than memory can be scored.

The Python layer here opens like every other xentc function (`_api._Rows`, but
without materialising the rows: only the checks and the metadata), checks
integer labels once over the whole array (N values, not N x C), and then walks
the rows in batches of `batch_rows` (a view of a memory map when its layout
allows, else a copy of that batch only).  Each batch goes through one fused
kernel (`_kernels.score`): loss, confidence (max softmax) and the rank of the
label's logit per row, in one read of the logits.  The per-row results of a
batch are reduced at once to sums and counts (`_Sums`), which add exactly
across batches and across Dask chunks (`xentc.dask.score`): the loss sum, the
hits per k, and per confidence bin the number of rows, the sum of confidences
and the number of correct rows.
"""
import dataclasses
import math
import numbers
import operator
import sys

import numpy as np

from . import _kernels
from ._api import (
    _asarray,
    _c_aligned,
    _check_flag,
    _check_sparse_shape,
    _label_rtol,
    _raise_invalid_labels,
    _resolve_num_threads,
    _Rows,
    _sparse_labels,
)

__all__ = ["ScoreResult", "score"]

#: equal-width confidence bins of the expected calibration error
ECE_BINS = 15
_EDGES = np.linspace(0.0, 1.0, ECE_BINS + 1)
#: bytes of batch input the automatic batch size aims at
MEMORY_BUDGET = 256 << 20


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    """What :func:`xentc.score` returns.

    Attributes
    ----------
    rows : int
        The number of rows scored.
    mean_loss : float
        The mean cross-entropy (NaN with no rows, or when a row's softmax is
        undefined: a NaN logit, or every logit ``-inf``).
    perplexity : float
        ``exp(mean_loss)``.
    accuracy : float
        Top-1 accuracy: the fraction of rows whose argmax (the first maximum,
        as ``np.argmax``) is the label.
    top_k_accuracy : dict
        ``{k: fraction of rows whose label is among the first k classes when
        the row is sorted by decreasing logit, ties by class index}`` for each
        requested k.
    expected_calibration_error : float
        ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over 15 equal-width
        bins ``(b/15, (b+1)/15]`` of the confidence (the largest softmax
        probability); NaN when a row's confidence is undefined.
    loss_sum : float
        The sum of the row losses.

    Examples
    --------
    >>> import xentc
    >>> r = xentc.score([[2.0, 0.0], [0.0, 1.0]], [0, 0], top_k=(1,))
    >>> r.rows, r.accuracy, r.top_k_accuracy
    (2, 0.5, {1: 0.5})
    >>> sorted(r.to_dict())[:3]
    ['accuracy', 'expected_calibration_error', 'loss_sum']
    """

    rows: int
    mean_loss: float
    perplexity: float
    accuracy: float
    top_k_accuracy: dict
    expected_calibration_error: float
    loss_sum: float

    def to_dict(self):
        """The fields as a plain dict (JSON-ready; top-k keys stay integers)."""
        d = dataclasses.asdict(self)
        d["top_k_accuracy"] = dict(self.top_k_accuracy)
        return d


class _Sums:
    """Sums and counts of scored rows; `add` combines two exactly (integers) or
    as float64 sums (loss, confidence), whatever the batches or chunks were."""

    def __init__(self, ks):
        self.ks = tuple(ks)
        self.rows = 0
        self.loss_sum = 0.0
        self.hits = {k: 0 for k in (1,) + self.ks}
        self.undefined = 0  # rows whose confidence is NaN
        self.bin_rows = np.zeros(ECE_BINS, np.int64)
        self.bin_conf = np.zeros(ECE_BINS, np.float64)
        self.bin_correct = np.zeros(ECE_BINS, np.int64)

    @classmethod
    def of_rows(cls, ks, loss, pmax, rank):
        """Sums over per-row results of the score kernel."""
        s = cls(ks)
        s.rows = int(loss.shape[0])
        s.loss_sum = float(np.sum(loss, dtype=np.float64))
        for k in s.hits:
            s.hits[k] = int(np.count_nonzero(rank < k))
        conf = pmax.astype(np.float64, copy=False)
        correct = rank == 0
        nan = np.isnan(conf)
        s.undefined = int(np.count_nonzero(nan))
        if s.undefined:
            conf, correct = conf[~nan], correct[~nan]
        # bin b holds (b / 15, (b + 1) / 15]; the confidence is >= 1 / C > 0
        b = np.clip(np.searchsorted(_EDGES, conf, side="left") - 1, 0, ECE_BINS - 1)
        s.bin_rows = np.bincount(b, minlength=ECE_BINS).astype(np.int64)
        s.bin_conf = np.bincount(b, weights=conf, minlength=ECE_BINS)
        s.bin_correct = np.bincount(b[correct], minlength=ECE_BINS).astype(np.int64)
        return s

    def add(self, other):
        self.rows += other.rows
        self.loss_sum += other.loss_sum
        for k in self.hits:
            self.hits[k] += other.hits[k]
        self.undefined += other.undefined
        self.bin_rows = self.bin_rows + other.bin_rows
        self.bin_conf = self.bin_conf + other.bin_conf
        self.bin_correct = self.bin_correct + other.bin_correct
        return self

    def result(self):
        n = self.rows
        nan = float("nan")
        mean = self.loss_sum / n if n else nan
        with np.errstate(over="ignore"):
            perplexity = float(np.exp(mean))
        if n and not self.undefined:
            ece = float(np.sum(np.abs(self.bin_correct - self.bin_conf))) / n
        else:
            ece = nan
        return ScoreResult(
            rows=n,
            mean_loss=mean,
            perplexity=perplexity,
            accuracy=self.hits[1] / n if n else nan,
            top_k_accuracy={k: (self.hits[k] / n if n else nan) for k in self.ks},
            expected_calibration_error=ece,
            loss_sum=self.loss_sum,
        )


def _check_top_k(top_k):
    """top_k as a sorted tuple of distinct positive ints (one int is allowed)."""
    if isinstance(top_k, numbers.Integral) and not isinstance(top_k, (bool, np.bool_)):
        top_k = (top_k,)
    try:
        ks = list(top_k)
    except TypeError:
        raise TypeError(
            f"top_k must be a positive integer or a sequence of them, got {top_k!r}"
        ) from None
    for k in ks:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"top_k must hold positive integers, got top_k={top_k!r}")
    return tuple(sorted({int(k) for k in ks}))


def _check_batch_rows(batch_rows):
    if batch_rows is None:
        return None
    if isinstance(batch_rows, (bool, np.bool_)) or not isinstance(batch_rows, numbers.Integral):
        raise TypeError(f"batch_rows must be a positive integer or None, got {batch_rows!r}")
    n = operator.index(batch_rows)
    if n < 1:
        raise ValueError(f"batch_rows must be a positive integer or None, got batch_rows={n}")
    return n


def auto_batch_rows(n_classes, itemsize, dense=False, budget=MEMORY_BUDGET):
    """Rows per batch so that a batch's inputs (and copies of them) take about `budget` bytes."""
    per_row = n_classes * itemsize * (2 if dense else 1) + 32  # + the per-row results
    return max(1, budget // per_row)


class _Labels:
    """The labels of a score call: integer class indices (`flat`, int64,
    checked) or dense probabilities (`dense`, a metadata-only _Rows)."""

    def __init__(self, labels, lg, check_values=True):
        lab = _asarray("labels", labels)
        self.flat = self.dense = None
        if lab.dtype.kind in "iu":
            if check_values:
                _, self.flat = _sparse_labels(lab, lg)  # N values: checked once, before any batch
            else:  # metadata only (xentc.dask: each chunk checks its own values)
                _check_sparse_shape(lab, lg)
        elif lab.dtype.kind == "f":
            if lab.shape != lg.arr.shape:
                raise ValueError(
                    "labels and logits must have the same shape (or labels the shape of logits "
                    f"without its class axis, for class indices), got labels.shape={lab.shape} "
                    f"and logits.shape={lg.arr.shape}"
                )
            self.dense = _Rows("labels", lab, lg.axis, cdtype=lg.cdtype, materialize=False)
            self.rtol = _label_rtol(lg.cdtype, lab.dtype)
        else:
            raise TypeError(
                "labels must hold integer class indices or real class probabilities, "
                f"got labels.dtype={lab.dtype}"
            )


def _flat_rows(moved, n_classes):
    """moved (..., C) as an (n_rows, C) view when its leading axes collapse without a copy, else None."""
    try:
        return moved.reshape(-1, n_classes, copy=False)
    except ValueError:
        return None
    except TypeError:  # NumPy 2.0: no copy= keyword
        return moved.reshape(-1, n_classes) if moved.flags.c_contiguous else None


def _take(flat, moved, batch_shape, r0, r1):
    """Rows [r0, r1) of moved in C order: a slice of the flat view, or a gather of those rows only."""
    if flat is not None:
        return flat[r0:r1]
    return moved[np.unravel_index(np.arange(r0, r1), batch_shape)]


class _BatchNames:
    """For _raise_invalid_labels: the rows of one batch, named by their index in the whole array."""

    def __init__(self, rows, index):
        self.rows = rows
        self.index = index


def score_rows(x, flat, dense, ks, n_threads, rtol=0.0, names=None):
    """_Sums of C-contiguous rows x (computation dtype) with class indices `flat`
    (int64, in range) or dense label rows `dense` (validated in the kernel's pass)."""
    n = x.shape[0]
    loss = np.empty(n, x.dtype)
    pmax = np.empty(n, np.float64)  # the confidence in double: ECE bins it
    rank = np.empty(n, np.int64)
    invalid = None
    if dense is not None:
        flat = np.argmax(dense, axis=1).astype(np.int64, copy=False)  # the first max
        invalid = np.zeros(n, np.int8)
    _kernels.score(x, flat, dense, loss, pmax, rank, n_threads, None, rtol, invalid)
    if invalid is not None:
        if names is None:  # rows named by their index in x
            names = _BatchNames(dense, lambda row, col=None: f"{row}, {':' if col is None else col}")
        _raise_invalid_labels(names, invalid, rtol)
    return _Sums.of_rows(ks, loss, pmax, rank)


def _progress_bar(total, enabled):
    """A tqdm bar on stderr (None when not enabled or tqdm is not installed)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="rows", unit_scale=True, file=sys.stderr, desc="xentc score",
                leave=False, dynamic_ncols=True)


def score(logits, labels, *, axis=-1, top_k=(1, 5), batch_rows=None, num_threads=None,
          progress=False):
    """Score model outputs: mean loss, perplexity, accuracy, top-k accuracy and calibration.

    The rows are processed in batches, so `logits` may be a ``numpy.memmap``
    far larger than memory: the extra memory is bounded by one batch, never
    ``N x C``. Each batch runs one fused kernel that computes each row's loss,
    its confidence (the largest softmax probability) and the rank of the
    label's logit in one read of the logits.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores, the classes along `axis`, any number of leading
        dimensions (rows); float32 and float64 computed natively, float16 in
        float32, integers in float64.
    labels : array_like
        Integer class indices in ``[0, C)`` of the shape of `logits` without
        `axis`, or class probabilities of the shape of `logits` (each row
        non-negative and summing to 1; the class for accuracy is the row's
        argmax, the first one on ties).
    axis : int, default -1
        The class axis.
    top_k : int or sequence of int, default (1, 5)
        The k of the top-k accuracies reported (k may exceed C).
    batch_rows : int, optional
        Rows per batch; None chooses it from a budget of about 256 MB of
        batch input.
    num_threads : int, optional
        OpenMP threads per batch; None uses OpenMP's default.
    progress : bool, default False
        Show a progress bar on stderr (needs tqdm: ``pip install xentc[progress]``;
        without it no bar is shown).

    Returns
    -------
    ScoreResult
        ``rows``, ``mean_loss``, ``perplexity``, ``accuracy``,
        ``top_k_accuracy``, ``expected_calibration_error`` and ``loss_sum``.

    Raises
    ------
    ValueError
        A class index outside ``[0, C)`` (checked over all labels before any
        batch), dense labels that are not distributions (raised at the batch
        holding the first bad row, naming it), shapes that do not match,
        ``C == 0``, a bad `top_k` or `batch_rows`.
    numpy.exceptions.AxisError
        `axis` is out of range.
    TypeError
        Labels that are neither integer nor real, logits that are not real numbers.

    Notes
    -----
    The rank of a row is the label's place when the row is sorted by
    decreasing logit with ties broken by class index (a stable sort: the
    logits strictly greater, plus the equal ones at lower indices); top-k is a
    hit when the rank is below k.  So top-1 agrees with ``np.argmax``, and a
    row of equal logits is a hit only for label 0, not for every label. A row
    whose softmax is undefined (a NaN logit, or every logit ``-inf``) counts
    as a miss and makes `mean_loss`, `perplexity` and the calibration error
    NaN. With no rows, every mean is NaN.

    Examples
    --------
    >>> import numpy as np, xentc
    >>> logits = np.array([[3.0, 1.0, 0.0], [0.5, 2.0, 0.0], [0.0, 0.0, 4.0]])
    >>> r = xentc.score(logits, [0, 0, 2], top_k=(1, 2))
    >>> r.rows, round(r.accuracy, 4), r.top_k_accuracy
    (3, 0.6667, {1: 0.6666666666666666, 2: 1.0})
    >>> round(r.mean_loss, 4), round(r.perplexity, 4)
    (0.6707, 1.9557)
    """
    ks = _check_top_k(top_k)
    batch_rows = _check_batch_rows(batch_rows)
    progress = _check_flag("progress", progress)
    n_threads = _resolve_num_threads(num_threads)
    lg = _Rows("logits", logits, axis, materialize=False)  # checks and metadata, no N x C copy
    lab = _Labels(labels, lg)
    n_rows, n_classes = math.prod(lg.batch_shape), lg.n_classes
    if batch_rows is None:
        batch_rows = auto_batch_rows(n_classes, lg.cdtype.itemsize, lab.dense is not None)
    x_flat = _flat_rows(lg.moved, n_classes)
    y_flat = _flat_rows(lab.dense.moved, n_classes) if lab.dense is not None else None

    total = _Sums(ks)
    bar = _progress_bar(n_rows, progress)
    try:
        for r0 in range(0, n_rows, batch_rows):
            r1 = min(n_rows, r0 + batch_rows)
            x = _c_aligned(_take(x_flat, lg.moved, lg.batch_shape, r0, r1), dtype=lg.cdtype)
            if lab.dense is None:
                part = score_rows(x, lab.flat[r0:r1], None, ks, n_threads)
            else:
                y = _c_aligned(_take(y_flat, lab.dense.moved, lg.batch_shape, r0, r1),
                               dtype=lg.cdtype)
                names = _BatchNames(y, lambda row, col=None, r0=r0: lab.dense.index(r0 + row, col))
                part = score_rows(x, None, y, ks, n_threads, lab.rtol, names)
            total.add(part)
            if bar is not None:
                bar.update(r1 - r0)
    finally:
        if bar is not None:
            bar.close()
    return total.result()
