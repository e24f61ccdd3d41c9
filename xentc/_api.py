"""The Python layer of xentc: validate, normalise, allocate, dispatch, reshape back.

Every public function opens the same way (`_logits_rows`): ``numpy.asarray``
-> dtype policy -> normalise ``axis`` -> move the class axis last -> ``(-1, C)``
rows -> C-contiguous (copied only when needed).  Outputs are checked before any
work; data checks (label ranges, label sums) run as nogil scanners in the
kernels (or in the kernel call itself, when it writes only buffers of ours) and
are turned into messages here, before anything of the caller's is written.  No
function here loops over rows in Python.

dtype policy: float32 and float64 are computed natively; float16 is computed in
float32 and returned as float16; integer and bool logits are computed and
returned as float64; longdouble is computed and returned as float64.
"""
import numbers
import operator
import os

import numpy as np
from numpy.exceptions import AxisError

from . import _buffers, _kernels

__all__ = [
    "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits",
    "softmax",
    "log_softmax",
    "logsumexp",
    "openmp_enabled",
    "show_config",
    "set_buffer_cache",
    "empty_buffer_cache",
]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


def openmp_enabled():
    """Whether the compiled kernels use OpenMP threads.

    Returns
    -------
    bool
        False when the extension was built without OpenMP (for instance by a
        compiler without it, or with ``XENTC_OPENMP=off``); every
        ``num_threads`` then runs on one thread.

    Examples
    --------
    >>> import xentc
    >>> isinstance(xentc.openmp_enabled(), bool)
    True
    """
    return _kernels.openmp_enabled()


def show_config(file=None):
    """Print how xentc was built and what it runs on, and return it as a dict.

    Parameters
    ----------
    file : file-like, optional
        Where to print (default ``sys.stdout``); ``False`` prints nothing.

    Returns
    -------
    dict
        ``version``, ``openmp`` (compiled with OpenMP), ``max_threads``
        (OpenMP's default team size: ``OMP_NUM_THREADS``, threadpoolctl),
        ``simd`` (the SIMD path in use: ``baseline``, ``avx2`` or ``avx512``,
        chosen at import from the CPU, or forced by the environment variable
        ``XENTC_ISA``), ``simd_available`` and ``buffer_cache`` (see
        `set_buffer_cache`: its capacity and what it holds, in bytes).

    Examples
    --------
    >>> import xentc
    >>> config = xentc.show_config(file=False)
    >>> config["simd"] in config["simd_available"]
    True
    """
    import sys

    from ._version import __version__

    config = {
        "version": __version__,
        "openmp": _kernels.openmp_enabled(),
        "max_threads": _kernels.max_threads(),
        "simd": _kernels.isa(),
        "simd_available": _kernels.available_isas(),
        "buffer_cache": _buffer_cache_info(),
    }
    if file is not False:
        out = sys.stdout if file is None else file
        for key, value in config.items():
            if isinstance(value, tuple):
                value = ", ".join(value)
            elif isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            print(f"{key:>15}: {value}", file=out)
    return config


def set_buffer_cache(max_bytes):
    """Set how much memory of dropped large results xentc keeps for the next ones.

    A gradient (or a softmax / log_softmax result) of at least 4 MiB that
    xentc allocates is backed by memory that, once the caller drops every
    reference to the result and its views, goes into a cache instead of back
    to the operating system; the next large result of a size that fits takes
    it.  Fresh memory from the OS is zeroed page by page on its first write,
    which in a training loop that asks for a same-shaped gradient at every step
    can cost more than the whole fused pass; memory from the cache is already
    mapped, and xentc writes large gradients into it with streaming stores.

    The cache holds at most `max_bytes` (default 1 GiB, or the environment
    variable ``XENTC_BUFFER_CACHE`` in bytes at import; the oldest results go
    first) and at most 8 blocks; a result larger than `max_bytes` is NumPy's
    own array. It never holds memory of a result that is still referenced,
    and arrays the caller passes in (``grad_out``, ``out``) are never touched.

    Parameters
    ----------
    max_bytes : int
        The capacity in bytes, ``>= 0``; ``0`` turns the cache off (and frees
        what it holds).

    Returns
    -------
    int
        The previous capacity.

    See Also
    --------
    empty_buffer_cache : free what the cache holds now.
    show_config : reports the capacity and what the cache holds.

    Examples
    --------
    >>> import xentc
    >>> previous = xentc.set_buffer_cache(0)      # off: every result from NumPy
    >>> xentc.set_buffer_cache(previous) == 0
    True
    """
    return _buffers.set_max_bytes(_check_cache_bytes("max_bytes", max_bytes))


def empty_buffer_cache():
    """Free the memory the buffer cache holds now (see `set_buffer_cache`).

    Returns
    -------
    int
        The bytes freed.

    Examples
    --------
    >>> import xentc
    >>> xentc.empty_buffer_cache() >= 0
    True
    """
    return _buffers.clear()


def _buffer_cache_info():
    max_bytes, held, blocks, reused = _buffers.info()
    return {"max_bytes": max_bytes, "held_bytes": held, "held_blocks": blocks,
            "reused_results": reused}


def _check_cache_bytes(name, value):
    """A byte count: an integer in [0, the largest intp]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer number of bytes >= 0, got {value!r} "
                        f"of type {type(value).__name__}")
    value = int(value)
    if not 0 <= value <= np.iinfo(np.intp).max:
        raise ValueError(f"{name} must be in [0, {np.iinfo(np.intp).max}] bytes, got {value}")
    return value


def _cache_bytes_from_env(raw):
    """XENTC_BUFFER_CACHE: digits (surrounding blanks allowed); empty means the default."""
    text = raw.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) > np.iinfo(np.intp).max:
        raise ValueError(f"the environment variable XENTC_BUFFER_CACHE must be a whole number "
                         f"of bytes in [0, {np.iinfo(np.intp).max}], got {raw!r}")
    return int(text)


_env_cache_bytes = _cache_bytes_from_env(os.environ.get("XENTC_BUFFER_CACHE", ""))
if _env_cache_bytes is not None:
    _buffers.set_max_bytes(_env_cache_bytes)


# --------------------------------------------------------------------------
# argument normalisation
# --------------------------------------------------------------------------

# Fork safety.  GNU OpenMP (libgomp) keeps its worker threads alive after a
# parallel region; a child forked afterwards inherits the pool's bookkeeping but
# none of its threads, and its first parallel region with more than one thread
# waits for them forever.  A team of one never uses the pool, so every process
# made by fork (multiprocessing's "fork" start method, ProcessPoolExecutor on
# Linux before Python 3.14) computes with one thread, whatever num_threads says.
# Unconditional, because whichever library ran the parent's parallel region
# (xentc, NumPy's BLAS, PyTorch), the child's libgomp is in the same state.
# Results are bit-identical for every thread count, so only the speed changes.
_in_forked_child = False


def _after_fork_in_child():
    global _in_forked_child
    _in_forked_child = True


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _resolve_num_threads(num_threads):
    """None -> OpenMP's default (honours OMP_NUM_THREADS and threadpoolctl).

    Always 1 in a process made by fork (see `_in_forked_child`), after the
    argument has been checked.
    """
    n = _check_num_threads(num_threads)
    return 1 if _in_forked_child else n


def _check_num_threads(num_threads):
    if num_threads is None:
        return max(1, _kernels.max_threads())
    if isinstance(num_threads, (bool, np.bool_)) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(
            f"num_threads must be a positive integer or None, got {num_threads!r} "
            f"of type {type(num_threads).__name__}"
        )
    n = operator.index(num_threads)
    if n < 1:
        raise ValueError(f"num_threads must be a positive integer or None, got num_threads={n}")
    return min(n, 1 << 16)


def _asarray(name, data):
    """numpy.asarray(data), with the argument's name in the error of a ragged sequence."""
    try:
        return np.asarray(data)
    except ValueError as e:  # e.g. "setting an array element with a sequence ... inhomogeneous shape"
        raise ValueError(f"{name} could not be converted to an array: {e}") from None


# _dtypes' answers by input dtype (a dict lookup is a fifth of the branches'
# cost; a few microseconds per call matter to training loops of small batches)
_DTYPE_POLICY = {}


def _dtypes(name, dtype):
    """(computation dtype, result dtype) for an input array of this dtype."""
    policy = _DTYPE_POLICY.get(dtype)
    if policy is None:
        policy = _DTYPE_POLICY[dtype] = _dtype_policy(name, dtype)
    return policy


def _dtype_policy(name, dtype):
    if dtype.kind == "f":
        if dtype.itemsize == 2:
            return _F32, np.dtype(np.float16)
        if dtype.itemsize == 4:
            return _F32, _F32
        return _F64, _F64  # float64, and longdouble computed in float64
    if dtype.kind in "biu":
        return _F64, _F64
    raise TypeError(
        f"{name} must be an array of real floating-point or integer numbers, "
        f"got {name}.dtype={dtype}"
    )


def _c_aligned(a, dtype=None):
    """a as a C-contiguous, *aligned* array of dtype, copied only when needed.

    numpy.ascontiguousarray keeps a misaligned array as it is (an np.frombuffer at an odd
    offset, a field of a packed structured array, an array that Dask deserialised from a
    frame at an odd offset), and the kernels read their inputs through typed C pointers, for
    which a misaligned address is undefined behaviour: UBSan reports it (x86-64 and arm64
    tolerate the loads, but a compiler may assume the alignment).
    """
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.aligned else a.copy()


def _axis_last(a, axis):
    """a with axis moved last: a itself when it is last already (np.moveaxis
    checks its arguments and makes a view, a few microseconds per call)."""
    return a if axis == a.ndim - 1 else np.moveaxis(a, axis, -1)


def _normalize_axis(axis, ndim, name="logits"):
    if type(axis) is int and -ndim <= axis < ndim:   # the common case, without the ABC checks
        return axis % ndim
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        raise AxisError(axis, ndim, msg_prefix=name)
    return axis % ndim


class _Rows:
    """An input seen as C-contiguous (n_rows, n_classes) rows of the computation dtype.

    arr:         numpy.asarray of what the user passed (original layout and dtype)
    axis:        the class axis of arr, normalised to [0, ndim)
    rows:        the (n_rows, n_classes) array handed to the kernels (None with
                 materialize=False: only the checks and the metadata, no copy)
    moved:       arr with the class axis moved last (a view)
    owned:       rows is a buffer of our own (a copy), so a kernel may overwrite it
    batch_shape: arr.shape without the class axis (the shape of per-row results)
    """

    def __init__(self, name, data, axis, cdtype=None, materialize=True):
        self.arr = data if type(data) is np.ndarray else _asarray(name, data)
        if self.arr.ndim == 0:
            raise ValueError(
                f"{name} must have at least one dimension (the classes), got a 0-d array"
            )
        self.cdtype, self.rdtype = _dtypes(name, self.arr.dtype)
        if cdtype is not None:  # labels follow the logits' computation dtype
            self.cdtype = self.rdtype = cdtype
        self.axis = _normalize_axis(axis, self.arr.ndim, name)
        moved = _axis_last(self.arr, self.axis)
        self.n_classes = moved.shape[-1]
        self.batch_shape = moved.shape[:-1]
        self.moved_shape = moved.shape
        if self.n_classes == 0:
            raise ValueError(
                f"{name} has 0 classes along axis {self.axis} ({name}.shape={self.arr.shape}): "
                "softmax over an empty set of classes is undefined"
            )
        self.moved = moved
        if not materialize:  # metadata and checks only (xentc.score streams the rows in batches)
            self.rows, self.owned = None, False
            return
        self.rows = _c_aligned(moved.reshape(-1, self.n_classes), dtype=self.cdtype)
        # a copy made here (or an array made from a list) may be overwritten by a kernel
        self.owned = isinstance(data, (list, tuple)) or (
            self.rows.flags.owndata and self.rows is not self.arr)

    def index(self, row, col=None):
        """'i, j, :' text naming an element (col given) or a row (':' at the class axis)."""
        idx = [int(i) for i in np.unravel_index(row, self.batch_shape)] if self.batch_shape else []
        idx.insert(self.axis, ":" if col is None else int(col))
        return ", ".join(str(i) for i in idx)


def _check_output(name, out, shape, dtype):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {name}.shape={out.shape}")
    if out.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {name}.dtype={out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous, got an array with strides {out.strides}")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable, got a read-only array")
    if not out.flags.aligned:   # the kernels store through typed C pointers
        address = out.__array_interface__["data"][0]
        raise ValueError(f"{name} must be aligned to its itemsize ({out.dtype.itemsize} bytes), got an "
                         f"array at address {address:#x} ({address % out.dtype.itemsize} bytes past it)")


def _same_memory(a, b):
    ia, ib = a.__array_interface__, b.__array_interface__
    return (ia["data"][0] == ib["data"][0] and a.shape == b.shape
            and a.strides == b.strides and a.dtype == b.dtype)


def _overlaps(a, b):
    if not np.may_share_memory(a, b):
        return False
    try:
        return np.shares_memory(a, b, max_work=1 << 20)
    except np.exceptions.TooHardError:
        return True


def _check_no_overlap(name, out, others):
    """others: (name, array, identical_ok); identical_ok allows the very same memory (in place)."""
    for other_name, other, identical_ok in others:
        if other is None or not _overlaps(out, other):
            continue
        if identical_ok and _same_memory(out, other):
            continue
        hint = f"; pass {name}={other_name} itself for in place" if identical_ok else ""
        raise ValueError(f"{name} must not overlap {other_name}{hint}")


def _loss_output(out, lg, staged=False):
    """(kernel buffer of shape (n_rows,), finish) for a per-row result; finish() returns it.

    staged: never write into `out` before finish() (the kernel's pass also
    validates, and an error must leave `out` untouched)."""
    n_rows = lg.rows.shape[0]
    if out is not None and out.dtype == lg.cdtype and not staged:
        return out.reshape(n_rows), lambda: out
    buf = np.empty(n_rows, lg.cdtype)

    def finish():
        res = buf.reshape(lg.batch_shape)
        if out is not None:
            with np.errstate(over="ignore"):
                out[...] = res
            return out
        if lg.rdtype != lg.cdtype:
            with np.errstate(over="ignore"):  # float16 results beyond its range are inf
                res = res.astype(lg.rdtype)
        return res[()] if res.ndim == 0 else res

    return buf, finish


def _rows_direct(out, lg):
    """Whether _rows_output(out, lg) lets the kernel write into `out` itself."""
    return _rows_direct_view(out, lg) is not None


def _rows_direct_view(out, lg):
    """out with the class axis last, when the kernel may write into it (see _rows_direct),
    else None."""
    if out is None or out.dtype != lg.cdtype:
        return None
    moved = _axis_last(out, lg.axis)
    return moved if moved.flags.c_contiguous else None


def _streamable(grad, grad_out, lg):
    """Whether the kernel may write `grad` with streaming stores (see STREAM_BYTES in
    _kernels.pyx): the caller's own grad_out, or memory from the buffer cache, whose
    pages are mapped already; not fresh pages, which the OS zeroes on the first write."""
    return grad is not None and (_rows_direct(grad_out, lg) or _buffers.reused(grad))


def _rows_output(out, lg, like=None):
    """(kernel buffer of shape (n_rows, n_classes), finish) for a result shaped like the logits.

    The kernel writes into the user's array when its rows are a contiguous view
    of the computation dtype (grad_out=logits in place: no allocation);
    otherwise into our own copy of the logits when there is one (the kernels may
    overwrite their input), else into a new buffer (as far past a 64-byte
    boundary as `like`, an array, if given: see _buffers), and finish() copies
    or reshapes it into the result.
    """
    shape = lg.rows.shape
    if out is not None:
        direct = _rows_direct_view(out, lg)
        if direct is not None:
            return direct.reshape(shape), lambda: out
    buf = lg.rows if lg.owned else _buffers.empty(shape, lg.cdtype, like)

    def finish():
        res = buf.reshape(lg.moved_shape)
        if out is None and lg.rdtype == lg.cdtype and lg.axis == res.ndim - 1:
            return res   # nothing to convert or move
        with np.errstate(over="ignore"):  # float16 results beyond its range are inf
            if out is not None:
                np.copyto(_axis_last(out, lg.axis), res, casting="same_kind")
                return out
            return np.moveaxis(res, -1, lg.axis).astype(lg.rdtype, copy=False)

    return buf, finish


def _label_rtol(cdtype, labels_dtype):
    """Relative tolerance of the 'rows sum to 1' check: what the labels' precision can hold."""
    if cdtype == _F64 and not (labels_dtype.kind == "f" and labels_dtype.itemsize < 8):
        return 1e-6
    return 1e-3


def _raise_invalid_labels(lb, invalid, rtol):
    """Raise for the first row flagged in `invalid` (kernel flags), naming the
    negative or NaN label, or the row's sum."""
    if not invalid.any():
        return
    row = int(invalid.argmax())
    y = lb.rows[row]
    hint = (
        "dense labels must be class probabilities: non-negative, each row summing to 1. "
        "If these numbers are logits (unnormalised scores), pass them as `logits`: logits "
        "passed as labels give a meaningless, often negative loss. To compute the raw "
        "formula with unnormalised labels anyway, pass validate_labels=False."
    )
    negative = np.flatnonzero(~(y >= 0))
    if negative.size:
        col = int(negative[0])
        raise ValueError(
            f"labels[{lb.index(row, col)}] = {y[col].item()!r} is negative or NaN; {hint}"
        )
    total = float(np.sum(y, dtype=np.float64))
    raise ValueError(
        f"labels[{lb.index(row)}] sums to {total!r}, not 1 (relative tolerance {rtol:g}); {hint}"
    )


_SCAN_LABELS = 1024
_UNSIGNED = {k: np.dtype(f"u{k}") for k in (1, 2, 4, 8)}


def _check_sparse_shape(lab, lg):
    """Integer labels must have the shape of the logits without the class axis."""
    if lab.shape != lg.batch_shape:
        raise ValueError(
            f"labels must have the shape of logits without its class axis (axis {lg.axis}), got "
            f"labels.shape={lab.shape} and logits.shape={lg.arr.shape}"
        )


def _sparse_labels(labels, lg, check=True):
    """Integer class indices as a flat int64 array, checked to lie in [0, C) (unless
    not `check`: the kernel's pass checks them, see sparse_xent in _kernels.pyx)."""
    lab = _asarray("labels", labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(
            f"labels must be integer class indices, got labels.dtype={lab.dtype}; for class "
            "probabilities (one-hot or soft labels) use softmax_cross_entropy_with_logits"
        )
    _check_sparse_shape(lab, lg)
    dtype = lab.dtype if lab.dtype.isnative else lab.dtype.newbyteorder("=")
    flat = _c_aligned(lab, dtype=dtype).reshape(-1)
    # One NumPy (SIMD) max over the labels as unsigned integers, where a
    # negative label is 2^(bits - 1) or more, clears the common case (65536
    # int64 labels: 0.012 ms; min and max 0.019, the scalar pass 0.042); the
    # scalar pass finds the first bad label.  Narrow signed labels with more
    # classes than that (int8 labels, 300 classes) take min and max.  Up to
    # _SCAN_LABELS labels the scalar pass alone is quicker than the max's
    # call (64 labels: 0.45 us against 1.7 for the view and max).
    n = lg.n_classes
    if not check:
        out_of_range = False
    elif flat.size <= _SCAN_LABELS:
        out_of_range = flat.size > 0
    elif flat.dtype.kind == "i" and n > 1 << (8 * flat.itemsize - 1):
        out_of_range = int(flat.min()) < 0 or int(flat.max()) >= n
    else:
        out_of_range = int(flat.view(_UNSIGNED[flat.itemsize]).max()) >= n
    if out_of_range:
        bad = _kernels.first_label_out_of_range(flat, lg.n_classes)
    else:
        bad = -1
    if bad >= 0:
        _raise_label_out_of_range(lab, bad, n)
    # in range, so exact; unchecked, a label outside int64 may wrap, but only to
    # another label outside [0, C), which the kernel's check finds
    return lab, flat.astype(np.int64, copy=False)


def _raise_label_out_of_range(lab, bad, n_classes):
    """Raise for lab's label at flat index `bad`, naming its index, value and the range."""
    index = np.unravel_index(bad, lab.shape)
    where = ", ".join(str(int(i)) for i in index)
    name = f"labels[{where}]" if lab.ndim else "labels"
    raise ValueError(f"{name} = {lab[index].item()} is outside the valid range [0, {n_classes})")


def _where_rows(where, lg):
    """(mask, where array): a where= mask as uint8 rows for the kernels, (n_rows, C),
    or (1, C) when one row of classes applies to every row (no N x C copy then),
    and numpy.asarray(where) for the overlap checks of the outputs (the mask may
    be a view of it, read while the outputs are written); (None, None) without one."""
    if where is None:
        return None, None
    w = _asarray("where", where)
    if w.dtype != np.bool_:
        raise TypeError(f"where must be a boolean array, got where.dtype={w.dtype}")
    try:
        full = np.broadcast_to(w, lg.arr.shape)
    except ValueError:
        raise ValueError(
            f"where must be broadcastable to logits.shape={lg.arr.shape}, got where.shape={w.shape}"
        ) from None
    moved = np.moveaxis(full, lg.axis, -1)
    if moved.ndim == 1 or all(stride == 0 for stride in moved.strides[:-1]):
        row = moved[(0,) * (moved.ndim - 1)] if moved.size else np.ones(lg.n_classes, bool)
        return np.ascontiguousarray(row).reshape(1, lg.n_classes).view(np.uint8), w
    return np.ascontiguousarray(moved.reshape(-1, lg.n_classes)).view(np.uint8), w


def _results(finish_loss, finish_grad, finish_lse):
    """loss, then grad and lse when they were asked for."""
    results = [finish_loss()]
    if finish_grad is not None:
        results.append(finish_grad())
    if finish_lse is not None:
        results.append(finish_lse())
    return results[0] if len(results) == 1 else tuple(results)


def _check_flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


# --------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------

def softmax_cross_entropy_with_logits(labels, logits, axis=-1, *, return_grad=False,
                                      grad_out=None, out=None, validate_labels=True,
                                      return_lse=False, where=None, num_threads=None):
    """Cross-entropy between dense labels and softmax(logits), row by row.

    ``loss = sum(labels * (logsumexp(logits) - logits), axis)``, computed in one
    fused pass that never forms ``log(softmax(logits))``.

    Parameters
    ----------
    labels : array_like
        Class probabilities, the same shape as `logits` (one-hot or soft
        labels); any real float or integer dtype.
    logits : array_like
        Unnormalised scores (the inputs of a softmax), any number of
        dimensions; float32 and float64 are computed natively, float16 in
        float32, integers in float64.
    axis : int, default -1
        The class axis.
    return_grad : bool, default False
        Also return the gradient of ``loss.sum()`` with respect to `logits`.
    grad_out : ndarray, optional
        C-contiguous, writeable array of the shape and result dtype of
        `logits` that receives the gradient; may be `logits` itself (in
        place, no allocation). Implies ``return_grad=True``.
    out : ndarray, optional
        C-contiguous, writeable array for the loss.
    validate_labels : bool, default True
        Check that labels are non-negative and each row sums to 1 (relative
        tolerance 1e-3 for float32 and float16, 1e-6 for float64) before
        computing; ``False`` computes the raw formula for any labels.
    return_lse : bool, default False
        Also return each row's log-sum-exp of the logits (from the same pass),
        what z-loss and perplexity tooling need.
    where : array_like of bool, optional
        Broadcastable to `logits`: the classes to include (optax's ``where``).
        Excluded classes drop out of the softmax and their labels are ignored
        (their gradient is 0); a row with no class included has loss 0 and
        gradient 0. Labels are still validated as given.
    num_threads : int, optional
        OpenMP threads; None uses OpenMP's default (``OMP_NUM_THREADS``,
        threadpoolctl). Results are bit-identical for every value.

    Returns
    -------
    loss : ndarray or scalar
        The shape of `logits` without `axis` (a scalar for 1-d input).
    grad : ndarray
        Only when `return_grad` or `grad_out`: ``softmax(logits) * labels.sum(axis)
        - labels``, the true derivative even when labels do not sum to 1.
    lse : ndarray or scalar
        Only when `return_lse`, last: the shape of `loss`.

    Raises
    ------
    ValueError
        Shapes differ, ``C == 0``, a label row is not a probability
        distribution (with ``validate_labels``), or `out`/`grad_out` has the
        wrong shape, dtype or layout, is read-only or overlaps an input.
    numpy.exceptions.AxisError
        `axis` is out of range.
    TypeError
        A dtype that is not real floating or integer.

    Notes
    -----
    Stable for any magnitude (the row max is subtracted), keeps tiny losses of
    confident rows in float32 (``log1p`` of the non-max terms: 1.855e-08 where
    TensorFlow and PyTorch return 0), and uses ``0 * log(0) = 0``: a ``-inf``
    logit whose label is 0 contributes nothing (TensorFlow, PyTorch and optax
    return NaN). A NaN logit makes only its own row NaN; a row of all ``-inf``
    has NaN loss and gradient. TensorFlow's gradient is ``softmax - labels``,
    which equals this one only when the labels sum to 1.

    Examples
    --------
    >>> import numpy as np, xentc
    >>> float(xentc.softmax_cross_entropy_with_logits([0.1, 0.02, 0.88], [1.0, -3.0, 10.0]))
    1.1601256622376641
    >>> loss, grad = xentc.softmax_cross_entropy_with_logits(
    ...     np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32) * 4, return_grad=True)
    >>> loss.round(4), grad.shape
    (array([0.036, 0.036, 0.036], dtype=float32), (3, 3))
    """
    return_grad = _check_flag("return_grad", return_grad) or grad_out is not None
    validate_labels = _check_flag("validate_labels", validate_labels)
    return_lse = _check_flag("return_lse", return_lse)
    n_threads = _resolve_num_threads(num_threads)
    lg = _Rows("logits", logits, axis)
    lab = _asarray("labels", labels)
    if lab.shape != lg.arr.shape:
        raise ValueError(
            "labels and logits must have the same shape, got "
            f"labels.shape={lab.shape} and logits.shape={lg.arr.shape}"
        )
    lb = _Rows("labels", lab, lg.axis, cdtype=lg.cdtype)
    mask, where = _where_rows(where, lg)
    if out is not None:
        _check_output("out", out, lg.batch_shape, lg.rdtype)
        _check_no_overlap("out", out, [("logits", lg.arr, False), ("labels", lb.arr, False),
                                       ("where", where, False)])
    if grad_out is not None:
        _check_output("grad_out", grad_out, lg.arr.shape, lg.rdtype)
        _check_no_overlap("grad_out", grad_out, [("logits", lg.arr, True), ("labels", lb.arr, False),
                                                 ("out", out, False), ("where", where, False)])
    rtol = _label_rtol(lb.cdtype, lb.arr.dtype)
    invalid = np.zeros(lg.rows.shape[0], np.int8) if validate_labels else None
    if validate_labels and _rows_direct(grad_out, lg):
        # the gradient pass writes into grad_out (maybe the logits): check first
        _kernels.check_labels(lb.rows, rtol, invalid, n_threads)
        _raise_invalid_labels(lb, invalid, rtol)
        invalid = None
    # otherwise the kernel checks the labels in its own pass (one read of them):
    # the loss and a gradient of our own reach the caller only if they pass
    loss, finish_loss = _loss_output(out, lg, staged=invalid is not None)
    # the gradient as far past a cache line as the labels, which its output pass
    # reads (the sparse gradient, whose pass reads only the cached terms, was
    # quicker on a line: 2048 x 32000 float32, 18.3-18.5 ms against 19.6-20.7 at
    # 16 bytes past one)
    grad, finish_grad = _rows_output(grad_out, lg, lb.rows) if return_grad else (None, None)
    lse, finish_lse = _loss_output(None, lg) if return_lse else (None, None)
    _kernels.dense_xent(lg.rows, lb.rows, loss, grad, n_threads, rtol, invalid, lse, mask,
                        _streamable(grad, grad_out, lg))
    if invalid is not None:
        _raise_invalid_labels(lb, invalid, rtol)
    return _results(finish_loss, finish_grad, finish_lse)


def sparse_softmax_cross_entropy_with_logits(labels, logits, *, return_grad=False, grad_out=None,
                                             out=None, return_lse=False, where=None,
                                             num_threads=None):
    """Cross-entropy between integer class labels and softmax(logits), row by row.

    ``loss = logsumexp(logits, -1) - logits[..., labels]``.

    Parameters
    ----------
    labels : array_like of int
        Class indices in ``[0, C)`` of shape ``logits.shape[:-1]``; any integer dtype.
    logits : array_like
        Unnormalised scores with the classes on the last axis, shape ``(..., C)``.
    return_grad : bool, default False
        Also return the gradient of ``loss.sum()`` with respect to `logits`.
    grad_out : ndarray, optional
        C-contiguous, writeable array like `logits` for the gradient; may be
        `logits` itself (in place). Implies ``return_grad=True``.
    out : ndarray, optional
        C-contiguous, writeable array of shape ``logits.shape[:-1]`` for the loss.
    return_lse : bool, default False
        Also return each row's log-sum-exp of the logits (from the same pass).
    where : array_like of bool, optional
        Broadcastable to `logits`: the classes to include (optax's ``where``).
        Excluded classes drop out of the softmax; as in optax the label's own
        logit is used even when its class is excluded (its gradient is then
        -1); a row with no class included has loss 0 and gradient 0.
    num_threads : int, optional
        OpenMP threads; None uses OpenMP's default.

    Returns
    -------
    loss : ndarray or scalar
        Shape ``logits.shape[:-1]``.
    grad : ndarray
        Only when `return_grad` or `grad_out`: ``softmax(logits) - onehot(labels)``.
    lse : ndarray or scalar
        Only when `return_lse`, last: the shape of `loss`.

    Raises
    ------
    ValueError
        A label outside ``[0, C)`` (naming its value, index and the range), a
        shape mismatch, ``C == 0``, or a bad `out`/`grad_out`.
    TypeError
        Labels that are not integers, logits that are not real numbers.

    Notes
    -----
    TensorFlow lists every label and no row when one is out of range; PyTorch
    gives no range. The true-class gradient of a confident row is computed as
    ``-s / (1 + s)`` so it does not round to 0 in float32.

    Examples
    --------
    >>> import numpy as np, xentc
    >>> logits = np.full((1, 10), -10.0, dtype=np.float32); logits[0, 3] = 10
    >>> loss, grad = xentc.sparse_softmax_cross_entropy_with_logits([3], logits, return_grad=True)
    >>> print(f"{loss[0]:.4g} {grad[0, 3]:.4g}")
    1.855e-08 -1.855e-08
    """
    return_grad = _check_flag("return_grad", return_grad) or grad_out is not None
    return_lse = _check_flag("return_lse", return_lse)
    n_threads = _resolve_num_threads(num_threads)
    lg = _Rows("logits", logits, -1)
    # Without a grad_out the kernel writes only buffers of ours (the loss staged
    # when `out` is given): its pass checks the labels then (no NumPy pass over them
    # before it; 65536 labels, 10 classes: 11-12 us of a 300 us call), and an error
    # leaves the caller's memory untouched.  Into a grad_out, they are checked first.
    # (A bad label with a bad `out` or `where` then reports those first.)
    fused = grad_out is None
    lab, flat = _sparse_labels(labels, lg, check=not fused)
    mask, where = _where_rows(where, lg)
    if out is not None:
        _check_output("out", out, lg.batch_shape, lg.rdtype)
        _check_no_overlap("out", out, [("logits", lg.arr, False), ("labels", lab, False),
                                       ("where", where, False)])
    if grad_out is not None:
        _check_output("grad_out", grad_out, lg.arr.shape, lg.rdtype)
        _check_no_overlap("grad_out", grad_out, [("logits", lg.arr, True), ("labels", lab, False),
                                                 ("out", out, False), ("where", where, False)])
    loss, finish_loss = _loss_output(out, lg, staged=fused)
    grad, finish_grad = _rows_output(grad_out, lg) if return_grad else (None, None)
    lse, finish_lse = _loss_output(None, lg) if return_lse else (None, None)
    bad = _kernels.sparse_xent(lg.rows, flat, loss, grad, n_threads, lse, mask,
                               _streamable(grad, grad_out, lg), fused)
    if bad == -2:   # rows were left unwritten: never return them
        raise RuntimeError("labels changed while the loss was computed (another thread wrote to them)")
    if bad >= 0:
        _raise_label_out_of_range(lab, bad, lg.n_classes)
    return _results(finish_loss, finish_grad, finish_lse)


def _rowwise(kernel, logits, axis, out, where, num_threads):
    """softmax / log_softmax: a result shaped like the logits; out may be logits itself."""
    n_threads = _resolve_num_threads(num_threads)
    lg = _Rows("logits", logits, axis)
    mask, where = _where_rows(where, lg)
    if out is not None:
        _check_output("out", out, lg.arr.shape, lg.rdtype)
        _check_no_overlap("out", out, [("logits", lg.arr, True), ("where", where, False)])
    res, finish = _rows_output(out, lg)
    kernel(lg.rows, res, n_threads, mask)
    return finish()


def softmax(logits, axis=-1, *, out=None, where=None, num_threads=None):
    """Softmax ``exp(x) / sum(exp(x), axis)``, computed stably.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores.
    axis : int, default -1
        The class axis.
    out : ndarray, optional
        C-contiguous, writeable array like `logits` (shape, result dtype); may
        be `logits` itself (in place).
    where : array_like of bool, optional
        Broadcastable to `logits`: the classes to include (as ``jax.nn.softmax``).
    num_threads : int, optional
        OpenMP threads; None uses OpenMP's default.

    Returns
    -------
    ndarray
        Probabilities that sum to 1 along `axis`; NaN rows for rows holding a
        NaN or only ``-inf``; a one-hot row at a single ``+inf``; 0 at excluded
        classes and in rows with no class included.

    Raises
    ------
    ValueError, numpy.exceptions.AxisError, TypeError
        As for :func:`softmax_cross_entropy_with_logits`.

    Examples
    --------
    >>> import xentc
    >>> xentc.softmax([0.1, 0.3, 0.5, 0.9]).round(8)
    array([0.16838508, 0.205666  , 0.25120102, 0.37474789])
    """
    return _rowwise(_kernels.softmax, logits, axis, out, where, num_threads)


def log_softmax(logits, axis=-1, *, out=None, where=None, num_threads=None):
    """Log-softmax ``x - logsumexp(x, axis)``, computed stably.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores.
    axis : int, default -1
        The class axis.
    out : ndarray, optional
        C-contiguous, writeable array like `logits`; may be `logits` itself.
    where : array_like of bool, optional
        Broadcastable to `logits`: the classes to include.
    num_threads : int, optional
        OpenMP threads; None uses OpenMP's default.

    Returns
    -------
    ndarray
        Log-probabilities along `axis`. The largest entry of a confident row
        keeps its tiny value (``-log1p(s)``) instead of rounding to 0;
        ``-inf`` at excluded classes and in rows with no class included.

    Raises
    ------
    ValueError, numpy.exceptions.AxisError, TypeError
        As for :func:`softmax_cross_entropy_with_logits`.

    Examples
    --------
    >>> import xentc
    >>> xentc.log_softmax([1.0, 2.0, 3.0]).round(6)
    array([-2.407606, -1.407606, -0.407606])
    """
    return _rowwise(_kernels.log_softmax, logits, axis, out, where, num_threads)


def logsumexp(logits, axis=-1, *, where=None, num_threads=None):
    """``log(sum(exp(logits), axis))``, computed stably.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores.
    axis : int, default -1
        The axis to reduce.
    where : array_like of bool, optional
        Broadcastable to `logits`: the elements to include (``-inf`` for a row
        with none).
    num_threads : int, optional
        OpenMP threads; None uses OpenMP's default.

    Returns
    -------
    ndarray or scalar
        The shape of `logits` without `axis`; ``-inf`` for a row of ``-inf``,
        ``+inf`` when a row holds ``+inf``, NaN when it holds a NaN.

    Raises
    ------
    ValueError, numpy.exceptions.AxisError, TypeError
        As for :func:`softmax_cross_entropy_with_logits`.

    Examples
    --------
    >>> import xentc
    >>> float(xentc.logsumexp([1000.0, 1000.0]))
    1000.6931471805599
    """
    n_threads = _resolve_num_threads(num_threads)
    lg = _Rows("logits", logits, axis)
    mask, _ = _where_rows(where, lg)
    res, finish = _loss_output(None, lg)
    _kernels.logsumexp(lg.rows, res, n_threads, mask)
    return finish()
