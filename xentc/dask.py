"""xentc on Dask arrays: the losses and `score` chunk by chunk, on one machine
or a ``dask.distributed`` cluster.

Needs Dask (``pip install "xentc[dask]"``); ``import xentc`` never imports it.

Every function takes Dask arrays (or anything ``dask.array.asarray`` takes)
chunked along rows: the class axis is rechunked to one chunk (a row is never
split), the leading axes may be chunked any way.  Arguments, shapes and dtypes
are checked when the graph is built, with the messages of the NumPy functions;
label values are checked by each chunk when it is computed (the message then
names the chunk).  Results are lazy: per-row losses are Dask arrays, reductions
0-d Dask arrays, and `score` a ``dask.delayed`` object.  Reductions add per-chunk
sums and counts (never means of means), so they equal the in-memory results up
to the order of the float64 sums.
"""
import math

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "xentc.dask needs Dask: install it with `pip install \"xentc[dask]\"` "
        "(dask[array,distributed])"
    ) from exc

from . import _api, _cross_entropy, _score
from ._api import _Rows, _check_flag, _resolve_num_threads

__all__ = [
    "cross_entropy",
    "read_npy",
    "score",
    "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits",
]


def _meta(a):
    """A zero-stride NumPy stand-in of dask array `a` (its shape and dtype, no
    memory), so the NumPy layer's checks and messages apply at graph time."""
    return np.broadcast_to(np.zeros((), a.dtype), a.shape)


def _prepare(logits, axis):
    """(checked metadata, logits with the class axis last in one chunk)."""
    x = da.asarray(logits)
    lg = _Rows("logits", _meta(x), axis, materialize=False)
    x = da.moveaxis(x, lg.axis, -1)
    return lg, x.rechunk({x.ndim - 1: -1})


def _sparse_like(labels, lg, x):
    """Integer labels checked against the logits (shape, dtype), chunked like
    the rows of x, with a trailing axis of 1 so that map_blocks lines them up."""
    lab = da.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class indices, got labels.dtype={lab.dtype}")
    _api._check_sparse_shape(_meta(lab), lg)
    return lab.rechunk(x.chunks[:-1])[..., None]


def _dense_like(labels, lg, x, name="labels"):
    """Dense labels of the logits' shape, class axis last, chunked like x."""
    lab = da.asarray(labels)
    if lab.shape != lg.arr.shape:
        raise ValueError(
            f"{name} and logits must have the same shape, got "
            f"{name}.shape={lab.shape} and logits.shape={lg.arr.shape}"
        )
    _Rows(name, _meta(lab), lg.axis, cdtype=lg.cdtype, materialize=False)
    return da.moveaxis(lab, lg.axis, -1).rechunk(x.chunks)


def _located(fn):
    """Run a block function; a ValueError from its data names the block."""

    def run(*args, block_info=None, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            loc = block_info[0]["array-location"][:-1] if block_info else []
            where = ", ".join(f"{a}:{b}" for a, b in loc)
            raise ValueError(
                f"{exc} (indices within the Dask chunk at [{where}], class axis last)"
            ) from None

    return run


def _per_row(fn, x, lab, dtype):
    """A lazy per-row result of fn(x_block, label_block) over aligned blocks."""
    return da.map_blocks(_located(fn), x, lab, drop_axis=x.ndim - 1, dtype=dtype,
                         meta=np.empty((0,) * (x.ndim - 1), dtype))


def softmax_cross_entropy_with_logits(labels, logits, axis=-1, *, validate_labels=True,
                                      num_threads=None):
    """Lazy :func:`xentc.softmax_cross_entropy_with_logits` loss of Dask arrays.

    Parameters
    ----------
    labels, logits : dask.array.Array or array_like
        As for the NumPy function; `labels` is rechunked like `logits`.
    axis : int, default -1
        The class axis (rechunked to one chunk).
    validate_labels : bool, default True
        Check each label row (by each chunk, when it is computed).
    num_threads : int, optional
        OpenMP threads per chunk.

    Returns
    -------
    dask.array.Array
        The per-row losses, the shape of `logits` without `axis`.

    Examples
    --------
    >>> import dask.array as da, numpy as np, xentc.dask
    >>> x = da.from_array(np.log([[0.5, 0.25, 0.25]] * 4), chunks=(2, 3))
    >>> xentc.dask.softmax_cross_entropy_with_logits(np.eye(3)[[0, 0, 1, 2]], x).compute().round(4)
    array([0.6931, 0.6931, 1.3863, 1.3863])
    """
    validate_labels = _check_flag("validate_labels", validate_labels)
    n_threads = _resolve_num_threads(num_threads)
    lg, x = _prepare(logits, axis)
    y = _dense_like(labels, lg, x)

    def block(xb, yb):
        return _api.softmax_cross_entropy_with_logits(
            yb, xb, validate_labels=validate_labels, num_threads=n_threads)

    return _per_row(block, x, y, lg.rdtype)


def sparse_softmax_cross_entropy_with_logits(labels, logits, *, num_threads=None):
    """Lazy :func:`xentc.sparse_softmax_cross_entropy_with_logits` loss of Dask arrays.

    Parameters
    ----------
    labels : dask.array.Array or array_like of int
        Class indices of shape ``logits.shape[:-1]`` (rechunked like the rows).
    logits : dask.array.Array or array_like
        Classes on the last axis (rechunked to one chunk).
    num_threads : int, optional
        OpenMP threads per chunk.

    Returns
    -------
    dask.array.Array
        The per-row losses, shape ``logits.shape[:-1]``.

    Examples
    --------
    >>> import dask.array as da, numpy as np, xentc.dask
    >>> x = da.from_array(np.log([[0.5, 0.25, 0.25]] * 4), chunks=(2, 3))
    >>> xentc.dask.sparse_softmax_cross_entropy_with_logits([0, 0, 1, 2], x).compute().round(4)
    array([0.6931, 0.6931, 1.3863, 1.3863])
    """
    n_threads = _resolve_num_threads(num_threads)
    lg, x = _prepare(logits, -1)
    y = _sparse_like(labels, lg, x)

    def block(xb, yb):
        return _api.sparse_softmax_cross_entropy_with_logits(yb[..., 0], xb, num_threads=n_threads)

    return _per_row(block, x, y, lg.rdtype)


def cross_entropy(logits, target, *, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, axis=-1, num_threads=None):
    """Lazy :func:`xentc.cross_entropy` (PyTorch's semantics) of Dask arrays.

    Parameters
    ----------
    logits, target, weight, ignore_index, reduction, label_smoothing, axis, num_threads
        As for :func:`xentc.cross_entropy` (no gradient here).

    Returns
    -------
    dask.array.Array
        0-d for "mean" and "sum"; the per-row losses for "none". "mean" is the
        sum of the chunks' loss sums over the sum of their denominators (the
        counted rows, or their class weights), not a mean of chunk means.

    Examples
    --------
    >>> import dask.array as da, numpy as np, xentc.dask
    >>> x = da.from_array(np.log([[0.5, 0.25, 0.25]] * 4), chunks=(1, 3))
    >>> float(xentc.dask.cross_entropy(x, [0, -100, 1, 2]).compute().round(4))
    1.1552
    """
    if reduction not in _cross_entropy._REDUCTIONS:
        raise ValueError(
            f"reduction must be one of {_cross_entropy._REDUCTIONS}, got reduction={reduction!r}")
    n_threads = _resolve_num_threads(num_threads)
    lg, x = _prepare(logits, axis)
    tgt = da.asarray(target)
    if tgt.dtype.kind in "iu":
        y = _sparse_like(tgt, lg, x)  # the shape check of integer labels
        probs = False
    elif tgt.dtype.kind == "f":
        y = _dense_like(tgt, lg, x, "target")
        probs = True
    else:
        raise TypeError(
            "target must hold integer class indices or real class probabilities, "
            f"got target.dtype={tgt.dtype}")
    w = None if weight is None else np.asarray(weight)
    options = dict(weight=w, ignore_index=ignore_index, label_smoothing=label_smoothing,
                   num_threads=n_threads)
    # the NumPy function checks the options now, on one row of zeros
    probe = np.zeros((1, lg.n_classes), lg.cdtype)
    _cross_entropy.cross_entropy(probe, np.full((1, lg.n_classes), 1 / lg.n_classes) if probs
                                 else np.zeros(1, np.int64), reduction="none", **options)

    def block(xb, yb):
        """(..., 2): each row's loss and its share of the "mean" denominator."""
        t = yb if probs else yb[..., 0]
        loss = _cross_entropy.cross_entropy(xb, t, reduction="none", **options)
        den = np.ones(loss.shape)
        if not probs:
            counted = t != ignore_index
            den = np.where(counted, 1.0, 0.0) if w is None else np.where(
                counted, w.astype(np.float64)[np.where(counted, t, 0)], 0.0)
        return np.stack([np.asarray(loss, np.float64), den], axis=-1)

    parts = da.map_blocks(_located(block), x, y, chunks=x.chunks[:-1] + ((2,),), dtype=np.float64,
                          meta=np.empty((0,) * x.ndim, np.float64))
    loss = parts[..., 0]
    if reduction == "none":
        return loss.astype(lg.rdtype)
    if reduction == "sum":
        return loss.sum().astype(lg.rdtype)
    sums = parts.reshape(-1, 2).sum(axis=0)
    total, den = sums[0], sums[1]
    return da.where(den != 0, total / da.where(den != 0, den, 1.0), 0.0).astype(lg.rdtype)


def _score_block(xb, yb, ks, n_threads, where):
    """_Sums of one chunk (class axis last); errors name the chunk."""
    try:
        lg = _Rows("logits", xb, -1)
        if yb.dtype.kind in "iu":
            _, flat = _api._sparse_labels(yb[..., 0], lg)
            return _score.score_rows(lg.rows, flat, None, ks, n_threads)
        lb = _Rows("labels", yb, -1, cdtype=lg.cdtype)
        return _score.score_rows(lg.rows, None, lb.rows, ks, n_threads,
                                 _api._label_rtol(lg.cdtype, yb.dtype), lb)
    except ValueError as exc:
        raise ValueError(f"{exc} (indices within the Dask chunk at [{where}], class axis last)") from None


def _combine(parts, ks):
    total = _score._Sums(ks)
    for p in parts:
        total.add(p)
    return total.result()


def score(logits, labels, *, axis=-1, top_k=(1, 5), num_threads=None):
    """Lazy :func:`xentc.score` of Dask arrays: call ``.compute()`` for the ScoreResult.

    Parameters
    ----------
    logits, labels, axis, top_k, num_threads
        As for :func:`xentc.score`; each chunk is one batch.

    Returns
    -------
    dask.delayed.Delayed
        Computes to a :class:`xentc.ScoreResult`, from per-chunk sums and
        counts (loss sum, hits per k, and per calibration bin the rows, the
        confidence sum and the correct rows).

    Examples
    --------
    >>> import dask.array as da, numpy as np, xentc.dask
    >>> x = da.from_array(np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]), chunks=(2, 2))
    >>> r = xentc.dask.score(x, [0, 0, 0], top_k=(1,)).compute()
    >>> r.rows, r.accuracy
    (3, 0.6666666666666666)
    """
    ks = _score._check_top_k(top_k)
    n_threads = _resolve_num_threads(num_threads)
    lg, x = _prepare(logits, axis)
    lab = da.asarray(labels)
    _score._Labels(_meta(lab), lg, check_values=False)  # dtype and shape, at graph time
    if lab.dtype.kind in "iu":
        y = lab.rechunk(x.chunks[:-1])[..., None]
    else:
        y = da.moveaxis(lab, lg.axis, -1).rechunk(x.chunks)
    starts = [np.cumsum((0,) + c) for c in x.chunks[:-1]]
    xs, ys = x.to_delayed(), y.to_delayed()
    parts = []
    for idx in np.ndindex(*xs.shape[:-1]):
        where = ", ".join(f"{starts[d][i]}:{starts[d][i + 1]}" for d, i in enumerate(idx))
        parts.append(dask.delayed(_score_block, pure=True)(
            xs[idx + (0,)], ys[idx + (0,)], ks, n_threads, where))
    return dask.delayed(_combine, pure=True)(parts, ks)


class _NpyOnWorker:
    """The array of a .npy file, memory-mapped by whoever indexes it (a worker):
    only the path travels with the task graph."""

    def __init__(self, path, shape, dtype, fortran_order):
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.ndim, self.fortran_order = len(shape), fortran_order

    def __getitem__(self, index):
        return np.asarray(np.load(self.path, mmap_mode="r", allow_pickle=False)[index])


def read_npy(path, *, axis=-1, chunk_rows=None):
    """A Dask array of a .npy file, read (memory-mapped) by the workers.

    Parameters
    ----------
    path : str or os.PathLike
        The file; it must be readable at the same path on every worker (a
        shared file system). Its header is read here.
    axis : int or None, default -1
        The class axis: it is kept in one chunk; None for integer labels (no
        class axis).
    chunk_rows : int, optional
        Rows per chunk along the first axis that is not the class axis; None
        chooses about 128 MB per chunk.

    Returns
    -------
    dask.array.Array

    Examples
    --------
    >>> import numpy as np, os, tempfile, xentc.dask
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy"); np.save(path, np.zeros((10, 4)))
    >>> xentc.dask.read_npy(path, chunk_rows=3).chunks
    ((3, 3, 3, 1), (4,))
    """
    import os

    path = os.path.abspath(os.fspath(path))
    mm = np.load(path, mmap_mode="r", allow_pickle=False)
    if not isinstance(mm, np.ndarray):
        mm.close()  # an .npz archive: close it before saying so
        raise ValueError(f"{path!r} is not a .npy file")
    shape, dtype = mm.shape, mm.dtype
    st = os.stat(path)
    mtime_size = (st.st_mtime_ns, st.st_size)  # a file rewritten in place gets new task keys
    fortran = bool(mm.flags.f_contiguous and not mm.flags.c_contiguous)
    del mm
    if len(shape) == 0:
        return da.from_array(np.load(path, allow_pickle=False))
    ax = None if axis is None else _api._normalize_axis(axis, len(shape), "logits")
    chunks = [-1] * len(shape)
    if ax is None or len(shape) > 1:  # a single row of classes stays one chunk
        row_axis = 1 if ax == 0 else 0
        if chunk_rows is None:
            per_row = dtype.itemsize * max(1, math.prod(shape[row_axis + 1:]))
            if ax is not None and ax < row_axis:
                per_row *= shape[ax]
            chunk_rows = max(1, (128 << 20) // per_row)
        chunks[row_axis] = int(chunk_rows)
    return da.from_array(_NpyOnWorker(path, shape, dtype, fortran), chunks=tuple(chunks),
                         asarray=False, fancy=False, name=f"xentc-npy-{dask.base.tokenize(path, shape, dtype, mtime_size)}")
