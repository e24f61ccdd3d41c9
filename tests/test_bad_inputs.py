"""The bad-input matrix: every error path of every public function, as one table.

Each row is (id, function, kwargs builder, exception type, message regex).  The
test calls the function with the kwargs, expects exactly that exception type
(not a subclass; numpy.exceptions.AxisError where an axis is out of range) and
a message that names the argument and, as the house style asks, the shapes, the
value, its row and the valid range.  Every array passed in (inputs, `out`,
`grad_out` filled with a sentinel pattern, and the bases of views built to
overlap) must hold the same bytes after the error: nothing is written before
an error, and in place (grad_out=logits) leaves the logits alone.

The public functions: xentc.__all__ without the dataclass ScoreResult, the
version and the two argument-free helpers (openmp_enabled, show_config);
xentc.torch and xentc.dask are not here (optional dependencies, tested in
test_torch.py and test_dask.py).  test_errors.py, test_cross_entropy.py,
test_sigmoid.py, test_probability.py and test_score.py test many of these
paths one by one; this table is the complete list in one place.
"""
import atexit
import math
import os
import re
import shutil
import tempfile

import numpy as np
import pytest
from numpy.exceptions import AxisError

import xentc
from conftest import INT_DTYPES

N, C = 3, 5
F8, I8 = np.float64, np.int64
FUNCTIONS = {
    "dense": xentc.softmax_cross_entropy_with_logits,
    "sparse": xentc.sparse_softmax_cross_entropy_with_logits,
    "cross_entropy": xentc.cross_entropy,
    "sigmoid": xentc.sigmoid_cross_entropy_with_logits,
    "categorical": xentc.categorical_crossentropy,
    "binary": xentc.binary_crossentropy,
    "softmax": xentc.softmax,
    "log_softmax": xentc.log_softmax,
    "logsumexp": xentc.logsumexp,
    "score": xentc.score,
}
# the name each function gives its logits / its labels
LOGITS_NAME = {name: "logits" for name in FUNCTIONS} | {"categorical": "output", "binary": "output"}
LABELS_NAME = {"dense": "labels", "sparse": "labels", "cross_entropy": "target", "sigmoid": "labels",
               "categorical": "target", "binary": "target", "score": "labels"}
WITH_AXIS = ["dense", "cross_entropy", "categorical", "softmax", "log_softmax", "logsumexp", "score"]
WITH_WHERE = ["dense", "sparse", "softmax", "log_softmax", "logsumexp"]
WITH_GRAD_OUT = ["dense", "sparse", "cross_entropy", "sigmoid"]


def lit(text):
    """A regex matching exactly this message."""
    return "^" + re.escape(text) + "$"


# --------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------

def X(shape=(N, C), dtype=F8):
    """Logits."""
    return np.random.default_rng(0).normal(size=shape).astype(dtype)


def P(shape=(N, C), dtype=np.float64, axis=-1):
    """Valid probabilities (rows summing to 1 along axis)."""
    p = np.random.default_rng(1).random(shape) + 0.1
    return (p / p.sum(axis=axis, keepdims=True)).astype(dtype)


def S(shape, dtype=F8):
    """An output filled with a sentinel pattern (several values, so a partial write shows)."""
    n = math.prod(shape)
    return (np.arange(n) % 5 + 7.25).astype(dtype).reshape(shape)


def readonly(a):
    a.flags.writeable = False
    return a


_MEMMAPS = tempfile.mkdtemp(prefix="xentc-bad-inputs-")
atexit.register(shutil.rmtree, _MEMMAPS, ignore_errors=True)


def misaligned_sentinel(shape, dtype=F8):
    """S(shape) in a C-contiguous array one byte past an aligned address."""
    a = S(shape, dtype)
    u = np.frombuffer(bytearray(a.nbytes + 1), dtype=a.dtype, offset=1, count=a.size).reshape(shape)
    u[...] = a
    assert u.flags.c_contiguous and u.flags.writeable and not u.flags.aligned
    return u


def readonly_memmap(shape, dtype=F8):
    path = os.path.join(_MEMMAPS, f"m{len(os.listdir(_MEMMAPS))}.bin")
    w = np.memmap(path, dtype=dtype, mode="w+", shape=shape)
    w[...] = S(shape, dtype)
    w.flush()
    del w
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


def base(fn):
    """Valid kwargs for fn, with every output it takes (sentinel-filled)."""
    if fn == "dense":
        return dict(labels=P(), logits=X(), out=S((N,)), grad_out=S((N, C)))
    if fn == "sparse":
        return dict(labels=np.array([0, 4, 2]), logits=X(), out=S((N,)), grad_out=S((N, C)))
    if fn == "cross_entropy":
        return dict(logits=X(), target=np.array([0, 4, 2]), grad_out=S((N, C)))
    if fn == "sigmoid":
        return dict(labels=np.zeros((N, C)), logits=X(), grad_out=S((N, C)))
    if fn == "categorical":
        return dict(target=P(), output=P())
    if fn == "binary":
        return dict(target=np.zeros((N, C)), output=np.full((N, C), 0.5))
    if fn in ("softmax", "log_softmax"):
        return dict(logits=X(), out=S((N, C)))
    if fn == "logsumexp":
        return dict(logits=X())
    if fn == "score":
        return dict(logits=X(), labels=np.array([0, 4, 2]))
    raise AssertionError(fn)


DROP = object()


def kw(fn, **overrides):
    """A builder: base(fn) with overrides (values, or callables of the base kwargs; DROP removes)."""
    def build():
        k = base(fn)
        for key, value in overrides.items():
            if callable(value) and not isinstance(value, type):
                value = value(k)
            if value is DROP:
                k.pop(key, None)
            else:
                k[key] = value
        return k
    return build


CASES = []


def case(id, fn, build, exc, match):
    CASES.append(pytest.param(fn, build, exc, match, id=f"{fn}: {id}"))


# --------------------------------------------------------------------------
# num_threads and flags, every function
# --------------------------------------------------------------------------

for fn in FUNCTIONS:
    for value in (0, -1, -(2**70)):
        case(f"num_threads={value}", fn, kw(fn, num_threads=value), ValueError,
             lit(f"num_threads must be a positive integer or None, got num_threads={value}"))
    for value, shown in ((1.5, "1.5 of type float"), ("2", "'2' of type str"), (True, "True of type bool"),
                         ([2], "[2] of type list"), (np.float64(2.0), "np.float64(2.0) of type float64")):
        case(f"num_threads={value!r}", fn, kw(fn, num_threads=value), TypeError,
             lit(f"num_threads must be a positive integer or None, got {shown}"))

FLAGS = [("dense", "return_grad"), ("dense", "validate_labels"), ("dense", "return_lse"),
         ("sparse", "return_grad"), ("sparse", "return_lse"), ("cross_entropy", "return_grad"),
         ("sigmoid", "return_grad"), ("categorical", "from_logits"), ("binary", "from_logits"),
         ("score", "progress")]
for fn, flag in FLAGS:
    for value in ("yes", 1, None, np.array([True])):
        case(f"{flag}={value!r}", fn, kw(fn, **{flag: value}), TypeError,
             lit(f"{flag} must be True or False, got {value!r}"))

case("logsumexp has no out", "logsumexp", kw("logsumexp", out=S((N,))), TypeError,
     r"unexpected keyword argument 'out'")

# --------------------------------------------------------------------------
# dtypes of the logits, the labels and the other array arguments
# --------------------------------------------------------------------------

NON_REAL = {
    "complex128": lambda shape: np.zeros(shape, np.complex128),
    "complex64": lambda shape: np.zeros(shape, np.complex64),
    "object": lambda shape: np.zeros(shape, object),
    "<U3": lambda shape: np.full(shape, "0.5"),
    "|S3": lambda shape: np.full(shape, b"0.5"),
    "[('a', '<f8')]": lambda shape: np.zeros(shape, [("a", "<f8")]),
    "datetime64[s]": lambda shape: np.zeros(shape, "datetime64[s]"),
    "timedelta64[s]": lambda shape: np.zeros(shape, "timedelta64[s]"),
    "|V8": lambda shape: np.zeros(shape, "V8"),
}

for fn in FUNCTIONS:
    name = LOGITS_NAME[fn]
    for dt, make in NON_REAL.items():
        case(f"{name} {dt}", fn, kw(fn, **{name: make((N, C))}), TypeError,
             lit(f"{name} must be an array of real floating-point or integer numbers, got {name}.dtype={dt}"))

for fn in ("dense", "sigmoid", "categorical", "binary"):
    name = LABELS_NAME[fn]
    for dt, make in NON_REAL.items():
        case(f"{name} {dt}", fn, kw(fn, **{name: make((N, C))}), TypeError,
             lit(f"{name} must be an array of real floating-point or integer numbers, got {name}.dtype={dt}"))

SPARSE_HINT = "; for class probabilities (one-hot or soft labels) use softmax_cross_entropy_with_logits"
NOT_INTEGER = {
    "bool": np.array([True, False, True]),
    "float16": np.array([0, 4, 2], np.float16),
    "float32": np.array([0, 4, 2], np.float32),
    "float64": np.array([0.0, 4.0, 2.0]),
    "float128": np.array([0, 4, 2], np.longdouble),
    "complex128": np.array([0, 4, 2], complex),
    "object": np.array([0, 4, 2], object),
    "<U1": np.array(["0", "4", "2"]),
    "[('a', '<i8')]": np.zeros(3, [("a", "<i8")]),
    "datetime64[s]": np.array([0, 4, 2], "datetime64[s]"),
}
for dt, labels in NOT_INTEGER.items():
    if dt == "float128" and np.dtype(np.longdouble).itemsize != 16:
        dt = str(np.dtype(np.longdouble))
    case(f"labels {dt}", "sparse", kw("sparse", labels=lambda k, a=labels: a.copy()), TypeError,
         lit(f"labels must be integer class indices, got labels.dtype={dt}{SPARSE_HINT}"))
case("labels a list of floats", "sparse", kw("sparse", labels=[0.0, 4.0, 2.0]), TypeError,
     lit(f"labels must be integer class indices, got labels.dtype=float64{SPARSE_HINT}"))
case("labels a Python int beyond uint64", "sparse", kw("sparse", labels=[0, 2**70, 2]), TypeError,
     lit(f"labels must be integer class indices, got labels.dtype=object{SPARSE_HINT}"))

for fn in ("cross_entropy", "score"):
    name = LABELS_NAME[fn]
    what = "hold integer class indices or real class probabilities"
    for dt in ("bool", "complex128", "object", "<U1", "[('a', '<i8')]", "datetime64[s]"):
        case(f"{name} {dt}", fn, kw(fn, **{name: lambda k, a=NOT_INTEGER[dt]: a.copy()}), TypeError,
             lit(f"{name} must {what}, got {name}.dtype={dt}"))

for dt in ("complex128", "object", "<U3", "datetime64[s]"):
    case(f"weight {dt}", "cross_entropy", kw("cross_entropy", weight=NON_REAL[dt]((C,))), TypeError,
         lit(f"weight must be real numbers, got weight.dtype={dt}"))
    case(f"pos_weight {dt}", "sigmoid", kw("sigmoid", pos_weight=NON_REAL[dt]((C,))), TypeError,
         lit(f"pos_weight must be an array of real floating-point or integer numbers, "
             f"got pos_weight.dtype={dt}"))
for fn in WITH_WHERE:
    for dt, where in (("int64", np.ones(C, np.int64)), ("float64", np.ones(C)), ("object", np.ones(C, object)),
                      ("uint8", np.ones((N, C), np.uint8))):
        case(f"where {dt}", fn, kw(fn, where=where), TypeError,
             lit(f"where must be a boolean array, got where.dtype={dt}"))

# --------------------------------------------------------------------------
# class indices out of range: every integer dtype, both ends, uint64 above
# int64's range (reported as that value, never wrapped to a negative one),
# byte-swapped labels, several dimensions, in place
# --------------------------------------------------------------------------

def bad_label_values(dtype):
    info = np.iinfo(dtype)
    values = [C, int(info.max)]
    if info.min < 0:
        values += [-1, int(info.min)]
    if dtype == np.uint64:
        values += [2**63 + 5, 2**64 - 100]  # 2**64 - 100 is -100 as an int64: not ignore_index
    return values


RANGE = f"is outside the valid range [0, {C})"
IGNORE = " and is not ignore_index=-100"
for dtype in INT_DTYPES:
    for value in bad_label_values(dtype):
        labels = np.array([0, value, 2], dtype)
        for fn in ("sparse", "cross_entropy", "score"):
            name = LABELS_NAME[fn]
            suffix = IGNORE if fn == "cross_entropy" else ""
            case(f"{name} {dtype} {value}", fn, kw(fn, **{name: lambda k, a=labels: a.copy()}),
                 ValueError, lit(f"{name}[1] = {value} {RANGE}{suffix}"))
    swapped = np.array([0, 1, bad_label_values(dtype)[-1]], dtype).astype(dtype.newbyteorder())
    if dtype.itemsize > 1:
        value = bad_label_values(dtype)[-1]
        for fn in ("sparse", "cross_entropy", "score"):
            name = LABELS_NAME[fn]
            suffix = IGNORE if fn == "cross_entropy" else ""
            case(f"{name} byte-swapped {dtype} {value}", fn, kw(fn, **{name: lambda k, a=swapped: a.copy()}),
                 ValueError, lit(f"{name}[2] = {value} {RANGE}{suffix}"))

for fn in ("sparse", "cross_entropy", "score"):
    name = LABELS_NAME[fn]
    suffix = IGNORE if fn == "cross_entropy" else ""
    case(f"{name} 2-d, the first bad one", fn,
         kw(fn, logits=X((2, 3, C)), **{name: np.array([[0, 1, 2], [3, 9, -1]])},
            **({"out": S((2, 3)), "grad_out": S((2, 3, C))} if fn == "sparse" else
               {"grad_out": S((2, 3, C))} if fn == "cross_entropy" else {})),
         ValueError, lit(f"{name}[1, 1] = 9 {RANGE}{suffix}"))
    case(f"{name} 0-d", fn, kw(fn, logits=X((C,)), **{name: np.int64(7)},
                                **({"out": DROP, "grad_out": S((C,))} if fn == "sparse" else
                                   {"grad_out": S((C,))} if fn == "cross_entropy" else {})),
         ValueError, lit(f"{name} = 7 {RANGE}{suffix}"))
for fn in ("sparse", "cross_entropy"):
    name = LABELS_NAME[fn]
    suffix = IGNORE if fn == "cross_entropy" else ""
    case(f"{name} out of range, in place", fn,
         kw(fn, **{name: np.array([0, 1, 5])}, grad_out=lambda k: k["logits"]), ValueError,
         lit(f"{name}[2] = 5 {RANGE}{suffix}"))
case("target out of range along axis 0", "cross_entropy",
     kw("cross_entropy", logits=X((C, N)), target=np.array([0, 1, 5]), axis=0, grad_out=S((C, N))),
     ValueError, lit(f"target[2] = 5 {RANGE}{IGNORE}"))
case("target out of range with another ignore_index", "cross_entropy",
     kw("cross_entropy", target=np.array([0, -100, 1]), ignore_index=-1), ValueError,
     lit(f"target[1] = -100 {RANGE} and is not ignore_index=-1"))
case("score labels out of range, axis 0", "score",
     kw("score", logits=X((C, N)), labels=np.array([0, 1, 5]), axis=0), ValueError,
     lit(f"labels[2] = 5 {RANGE}"))

# --------------------------------------------------------------------------
# dense labels that are not distributions (validate_labels=True), and
# outputs that are not probabilities (Keras's losses)
# --------------------------------------------------------------------------

HINT = ("dense labels must be class probabilities: non-negative, each row summing to 1. If these "
        "numbers are logits (unnormalised scores), pass them as `logits`: logits passed as labels "
        "give a meaningless, often negative loss. To compute the raw formula with unnormalised "
        "labels anyway, pass validate_labels=False.")


def labels_with(row, values, shape=(N, C), dtype=np.float64, axis=-1):
    def make(k):
        y = np.full(shape, 1.0 / shape[axis])
        np.moveaxis(y, axis, -1)[row] = values
        return y.astype(dtype)
    return make


for mode, extra in (("loss only", {"grad_out": DROP}), ("with grad_out", {}),
                    ("in place", {"grad_out": lambda k: k["logits"]})):
    case(f"negative label, {mode}", "dense",
         kw("dense", labels=labels_with(1, [0.5, 1.0, -0.5, 0.0, 0.0]), **extra), ValueError,
         lit(f"labels[1, 2] = -0.5 is negative or NaN; {HINT}"))
    case(f"row not summing to 1, {mode}", "dense",
         kw("dense", labels=labels_with(2, [0.25, 0.25, 0.0, 0.0, 0.0]), **extra), ValueError,
         lit(f"labels[2, :] sums to 0.5, not 1 (relative tolerance 1e-06); {HINT}"))
    case(f"NaN label, {mode}", "dense",
         kw("dense", labels=labels_with(0, [np.nan, 1.0, 0.0, 0.0, 0.0]), **extra), ValueError,
         lit(f"labels[0, 0] = nan is negative or NaN; {HINT}"))
case("inf label", "dense", kw("dense", labels=labels_with(1, [np.inf, 0, 0, 0, 0])), ValueError,
     lit(f"labels[1, :] sums to inf, not 1 (relative tolerance 1e-06); {HINT}"))
case("row of zeros", "dense", kw("dense", labels=labels_with(0, 0.0)), ValueError,
     lit(f"labels[0, :] sums to 0.0, not 1 (relative tolerance 1e-06); {HINT}"))
case("float32 row off by 3e-3", "dense",
     kw("dense", labels=labels_with(1, [0.203, 0.2, 0.2, 0.2, 0.2], dtype=np.float32),
        logits=X(dtype=np.float32), out=S((N,), np.float32), grad_out=S((N, C), np.float32)),
     ValueError, r"^labels\[1, :\] sums to 1\.003\d*, not 1 \(relative tolerance 0\.001\); dense labels must")
case("logits passed as labels, axis 0", "dense",
     kw("dense", labels=lambda k: X((C, N)), logits=X((C, N)), axis=0, out=S((N,)), grad_out=S((C, N))),
     ValueError, r"^labels\[\d+, \d+\] = -?[0-9.]+(e-?\d+)? is negative or NaN; dense labels must be")
case("row along a middle axis", "dense",
     kw("dense", labels=labels_with((1, 2), 0.0, shape=(2, C, 3), axis=1), logits=X((2, C, 3)), axis=1,
        out=S((2, 3)), grad_out=S((2, C, 3))),
     ValueError, lit(f"labels[1, :, 2] sums to 0.0, not 1 (relative tolerance 1e-06); {HINT}"))
case("dense labels: negative", "score", kw("score", labels=labels_with(1, [0.5, 1.0, -0.5, 0.0, 0.0])),
     ValueError, lit(f"labels[1, 2] = -0.5 is negative or NaN; {HINT}"))
case("dense labels: row 77 of 100 in batches of 10", "score",
     kw("score", logits=X((100, C)), labels=labels_with(77, [0.5, 0.5, 0.5, 0.0, 0.0], shape=(100, C)),
        batch_rows=10),
     ValueError, lit(f"labels[77, :] sums to 1.5, not 1 (relative tolerance 1e-06); {HINT}"))

KERAS_CAT = ("with from_logits=False, output must hold class probabilities (for instance the output of a "
             "softmax): non-negative, each row summing to 1 (within 0.01). If these numbers are logits "
             "(unnormalised scores), pass from_logits=True: Keras renormalises such rows silently, which "
             "turns logits passed as probabilities into a wrong loss with no warning.")
KERAS_BIN = ("with from_logits=False, output must hold probabilities in [0, 1] (for instance the output of "
             "a sigmoid). If these numbers are logits, pass from_logits=True: Keras clips them to [epsilon, "
             "1 - epsilon] silently, which turns logits passed as probabilities into a wrong loss with no "
             "warning.")
case("output negative", "categorical",
     kw("categorical", output=labels_with(1, [0.5, 1.0, -0.5, 0.0, 0.0])), ValueError,
     lit(f"output[1, 2] = -0.5 is negative; {KERAS_CAT}"))
case("output row sums to 2", "categorical", kw("categorical", output=labels_with(2, 0.4)), ValueError,
     lit(f"output[2, :] sums to 2, not 1; {KERAS_CAT}"))
case("logits as output", "categorical", kw("categorical", output=lambda k: X() + 5), ValueError,
     r"^output\[0, :\] sums to [0-9.]+, not 1; with from_logits=False")
case("output above 1", "binary", kw("binary", output=labels_with(1, [0.5, 1.5, 0, 0, 0])), ValueError,
     lit(f"output[1, 1] = 1.5 is outside [0, 1]; {KERAS_BIN}"))
case("output -inf", "binary", kw("binary", output=labels_with(0, [0, 0, -np.inf, 0, 0])), ValueError,
     lit(f"output[0, 2] = -inf is outside [0, 1]; {KERAS_BIN}"))
case("0-d output 2.0", "binary", kw("binary", output=np.float64(2.0), target=np.float64(1.0)), ValueError,
     lit(f"output = 2.0 is outside [0, 1]; {KERAS_BIN}"))
for fn in ("categorical", "binary"):
    for value in (0.7, -1e-07, float("nan"), float("inf")):
        case(f"epsilon={value}", fn, kw(fn, epsilon=value), ValueError,
             lit(f"epsilon must be in [0, 0.5], got epsilon={value!r}"))
    for value, shown in (("1e-7", "'1e-7' of type str"), (True, "True of type bool"), (None, "None of type NoneType")):
        case(f"epsilon={value!r}", fn, kw(fn, epsilon=value), TypeError,
             lit(f"epsilon must be a real number in [0, 0.5], got {shown}"))

# --------------------------------------------------------------------------
# shapes: mismatches, 0-d, no classes, axes
# --------------------------------------------------------------------------

for shape in ((N, C - 1), (C,), (1, C), (N, C, 1), (C, N)):
    case(f"labels {shape}", "dense", kw("dense", labels=np.full(shape, 0.25)), ValueError,
         lit(f"labels and logits must have the same shape, got labels.shape={shape} and "
             f"logits.shape=({N}, {C})"))
    case(f"labels {shape}", "sigmoid", kw("sigmoid", labels=np.zeros(shape)), ValueError,
         lit(f"labels and logits must have the same shape, got labels.shape={shape} and "
             f"logits.shape=({N}, {C})"))
    for fn in ("categorical", "binary"):
        for from_logits in (False, True):
            case(f"target {shape}, from_logits={from_logits}", fn,
                 kw(fn, target=np.zeros(shape), from_logits=from_logits), ValueError,
                 lit(f"target and output must have the same shape, got target.shape={shape} and "
                     f"output.shape=({N}, {C})"))
    case(f"dense labels {shape}", "score", kw("score", labels=np.full(shape, 0.25)), ValueError,
         lit(f"labels and logits must have the same shape (or labels the shape of logits without its "
             f"class axis, for class indices), got labels.shape={shape} and logits.shape=({N}, {C})"))
    case(f"probability target {shape}", "cross_entropy", kw("cross_entropy", target=np.full(shape, 0.25)),
         ValueError, lit(f"probability target must have the shape of logits, got target.shape={shape} "
                         f"and logits.shape=({N}, {C})"))
for shape in ((N + 1,), (N, 1), (), (N, C), (1, N)):
    for fn in ("sparse", "score"):
        case(f"labels {shape}", fn, kw(fn, labels=np.zeros(shape, np.int64)), ValueError,
             lit(f"labels must have the shape of logits without its class axis (axis 1), got "
                 f"labels.shape={shape} and logits.shape=({N}, {C})"))
    case(f"class-index target {shape}", "cross_entropy", kw("cross_entropy", target=np.zeros(shape, np.int64)),
         ValueError, lit(f"class-index target must have the shape of logits without the class axis "
                         f"(axis 1), got target.shape={shape} and logits.shape=({N}, {C})"))
case("labels (C,) with axis 0", "score", kw("score", logits=X((C, N)), labels=np.zeros(C, I8), axis=0),
     ValueError, lit(f"labels must have the shape of logits without its class axis (axis 0), got "
                     f"labels.shape=({C},) and logits.shape=({C}, {N})"))
for shape in ((C - 1,), (C, 1), (), (N, C), (C + 1,)):
    case(f"weight {shape}", "cross_entropy", kw("cross_entropy", weight=np.ones(shape)), ValueError,
         lit(f"weight must have shape ({C},) (one per class), got weight.shape={shape}"))
for shape in ((C - 1,), (N, 1, 1), (2, N, C), (N - 1, 1), (1, C + 1)):
    case(f"pos_weight {shape}", "sigmoid", kw("sigmoid", pos_weight=np.ones(shape)), ValueError,
         lit(f"pos_weight must be broadcastable to the shape of logits, got pos_weight.shape={shape} and "
             f"logits.shape=({N}, {C})"))
    for fn in WITH_WHERE:
        case(f"where {shape}", fn, kw(fn, where=np.ones(shape, bool)), ValueError,
             lit(f"where must be broadcastable to logits.shape=({N}, {C}), got where.shape={shape}"))

ZERO_D = {"dense": dict(labels=np.float64(1.0)), "sparse": dict(labels=np.int64(0)),
          "cross_entropy": dict(target=np.int64(0)), "score": dict(labels=np.int64(0)),
          "categorical": dict(target=np.float64(1.0))}
for fn in ("dense", "sparse", "cross_entropy", "categorical", "softmax", "log_softmax", "logsumexp", "score"):
    name = LOGITS_NAME[fn]
    extra = dict(ZERO_D.get(fn, {}), out=DROP, grad_out=DROP)
    for value in (np.float64(1.5), 2.0):
        case(f"0-d {name} {type(value).__name__}", fn, kw(fn, **{name: value}, **extra), ValueError,
             lit(f"{name} must have at least one dimension (the classes), got a 0-d array"))

for fn in ("dense", "sparse", "cross_entropy", "categorical", "softmax", "log_softmax", "logsumexp", "score"):
    name = LOGITS_NAME[fn]
    what = "cross-entropy" if fn == "categorical" else "softmax"
    for shape, axis in (((N, 0), -1), ((0, N), 0), ((2, 0, 4), 1), ((0,), 0), ((0, 0), -1)):
        if fn == "sparse" and axis % len(shape) != len(shape) - 1:
            continue
        batch = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
        extra = {"axis": axis} if fn in WITH_AXIS else {}
        if fn in ("dense", "categorical"):
            extra[LABELS_NAME[fn]] = np.zeros(shape)
        elif fn in ("sparse", "cross_entropy", "score"):
            extra[LABELS_NAME[fn]] = np.zeros(batch, np.int64)
        if fn in ("dense", "sparse"):
            extra["out"] = S(batch)
        if fn in WITH_GRAD_OUT or fn in ("softmax", "log_softmax"):
            extra["grad_out" if fn in WITH_GRAD_OUT else "out"] = S(shape)
        case(f"0 classes {shape} axis={axis}", fn, kw(fn, **{name: np.zeros(shape)}, **extra), ValueError,
             lit(f"{name} has 0 classes along axis {axis % len(shape)} ({name}.shape={shape}): "
                 f"{what} over an empty set of classes is undefined"))

for fn in WITH_AXIS:
    name = LOGITS_NAME[fn]
    for axis in (2, -3, 2**70):
        case(f"axis={axis}", fn, kw(fn, axis=axis), AxisError,
             lit(f"{name}: axis {axis} is out of bounds for array of dimension 2"))
    for axis in (1.0, None, "1", True, np.float64(1.0), [1]):
        case(f"axis={axis!r}", fn, kw(fn, axis=axis), TypeError, lit(f"axis must be an integer, got {axis!r}"))

# --------------------------------------------------------------------------
# out= and grad_out=: shape, dtype, layout, writeable, type
# --------------------------------------------------------------------------

OUTPUTS = [("dense", "out", (N,)), ("dense", "grad_out", (N, C)), ("sparse", "out", (N,)),
           ("sparse", "grad_out", (N, C)), ("cross_entropy", "grad_out", (N, C)),
           ("sigmoid", "grad_out", (N, C)), ("softmax", "out", (N, C)), ("log_softmax", "out", (N, C))]


def bad_outputs(shape):
    """(description, builder, exception, message) of outputs that do not fit shape, float64."""
    other = (math.prod(shape),) if len(shape) > 1 else (1,) + shape
    bigger = tuple(d + 1 for d in shape)
    cases = [
        ("wrong shape", lambda: S(bigger), ValueError, f"must have shape {shape}, got {{name}}.shape={bigger}"),
        ("same size, other shape", lambda: S(other), ValueError,
         f"must have shape {shape}, got {{name}}.shape={other}"),
        ("float32", lambda: S(shape, np.float32), ValueError, "must have dtype float64, got {name}.dtype=float32"),
        ("float16", lambda: S(shape, np.float16), ValueError, "must have dtype float64, got {name}.dtype=float16"),
        ("int64", lambda: S(shape, I8), ValueError, "must have dtype float64, got {name}.dtype=int64"),
        ("byte-swapped", lambda: S(shape, ">f8"), ValueError, "must have dtype float64, got {name}.dtype=>f8"),
        ("strided", lambda: S(tuple(2 * d for d in shape))[tuple(slice(None, None, 2) for _ in shape)],
         ValueError, None),
        ("negative strides", lambda: S(shape)[tuple(slice(None, None, -1) for _ in shape)], ValueError, None),
        ("read-only", lambda: readonly(S(shape)), ValueError, "must be writeable, got a read-only array"),
        ("read-only memmap", lambda: readonly_memmap(shape), ValueError, "must be writeable, got a read-only array"),
        ("list", lambda: S(shape).tolist(), TypeError, "must be a numpy.ndarray, got list"),
        ("matrix-like tuple", lambda: tuple(S(shape).tolist()), TypeError, "must be a numpy.ndarray, got tuple"),
    ]
    if len(shape) == 2:
        cases.append(("Fortran order", lambda: np.asfortranarray(S(shape)), ValueError, None))
    return cases


for fn, arg, shape in OUTPUTS:
    for desc, make, exc, message in bad_outputs(shape):
        if message is None:  # the strides of the array, whatever they are
            match = rf"^{arg} must be C-contiguous, got an array with strides \(-?\d+(, -?\d+)*,?\)$"
        else:
            match = lit(f"{arg} " + message.format(name=arg))
        case(f"{arg} {desc}", fn, kw(fn, **{arg: lambda k, m=make: m()}), exc, match)

for fn, arg, shape in OUTPUTS:  # the kernels store through typed pointers: misaligned is refused
    case(f"{arg} misaligned", fn, kw(fn, **{arg: lambda k, sh=shape: misaligned_sentinel(sh)}), ValueError,
         rf"^{arg} must be aligned to its itemsize \(8 bytes\), got an array at address 0x[0-9a-f]+ "
         r"\(1 bytes past it\)$")

for fn, arg, shape in OUTPUTS:  # the result dtype of float16 logits is float16, of integers float64
    other = {"out": "grad_out", "grad_out": "out"}[arg]  # the other output, if fn takes it: float16 too
    case(f"{arg} float32 for float16 logits", fn,
         kw(fn, logits=X(dtype=np.float16), **{arg: S(shape, np.float32)},
            **{other: lambda k, o=other: S(k[o].shape, np.float16) if o in k else DROP}), ValueError,
         lit(f"{arg} must have dtype float16, got {arg}.dtype=float32"))
    case(f"{arg} int32 for int32 logits", fn,
         kw(fn, logits=np.arange(N * C, dtype=np.int32).reshape(N, C), **{arg: S(shape, np.int32)}),
         ValueError, lit(f"{arg} must have dtype float64, got {arg}.dtype=int32"))
for fn in ("softmax", "log_softmax"):
    case("out=logits of integers", fn, kw(fn, logits=np.arange(N * C, dtype=np.int64).reshape(N, C),
                                          out=lambda k: k["logits"]),
         ValueError, lit("out must have dtype float64, got out.dtype=int64"))
for fn in WITH_GRAD_OUT:
    case("grad_out=logits, read-only", fn, kw(fn, logits=lambda k: readonly(X()), grad_out=lambda k: k["logits"]),
         ValueError, lit("grad_out must be writeable, got a read-only array"))
    case("grad_out=logits, Fortran", fn, kw(fn, logits=lambda k: np.asfortranarray(X()),
                                            grad_out=lambda k: k["logits"]),
         ValueError, r"^grad_out must be C-contiguous, got an array with strides \(8, 24\)$")

# --------------------------------------------------------------------------
# out= and grad_out= overlapping the inputs (whole arrays and views)
# --------------------------------------------------------------------------

def overlapping(fn, spec, **fixed):
    """A builder where the named args are views of one float64 buffer of spec["len"]
    elements: spec["parts"] are (name, byte offset, shape, dtype); spec["fill"] sets
    their values; the buffer is watched."""
    def build():
        k = kw(fn, **fixed)()
        buf = S((spec["len"],))
        raw = buf.view(np.uint8)
        for name, offset, shape, dtype in spec["parts"]:
            size = math.prod(shape) * np.dtype(dtype).itemsize
            k[name] = raw[offset:offset + size].view(dtype).reshape(shape)
        for name, values in spec.get("fill", {}).items():
            k[name][...] = values
        k["_watch"] = [buf]
        return k
    return build


NC = N * C
PROB_FILL = {"labels": 1.0 / C}
# dense: grad_out over labels (the very same memory, then partly); out over labels, logits, grad_out
case("grad_out is labels", "dense",
     overlapping("dense", {"len": NC, "parts": [("labels", 0, (N, C), F8), ("grad_out", 0, (N, C), F8)],
                           "fill": PROB_FILL}), ValueError, lit("grad_out must not overlap labels"))
case("grad_out overlaps labels by one row", "dense",
     overlapping("dense", {"len": NC + 2 * C, "parts": [("labels", 0, (N, C), F8),
                                                        ("grad_out", 8 * (2 * C), (N, C), F8)],
                           "fill": PROB_FILL}), ValueError, lit("grad_out must not overlap labels"))
case("out overlaps labels", "dense",
     overlapping("dense", {"len": NC + 1, "parts": [("labels", 0, (N, C), F8), ("out", 8 * (NC - 2), (N,), F8)],
                           "fill": PROB_FILL}), ValueError, lit("out must not overlap labels"))
case("out overlaps logits", "dense",
     overlapping("dense", {"len": NC + 2, "parts": [("logits", 0, (N, C), F8), ("out", 8 * (NC - 1), (N,), F8)]}),
     ValueError, lit("out must not overlap logits"))
case("out is a column of logits", "dense", kw("dense", out=lambda k: k["logits"][:, 0]), ValueError,
     r"^out must be C-contiguous")
case("grad_out overlaps logits", "dense",
     overlapping("dense", {"len": NC + 3, "parts": [("logits", 0, (N, C), F8),
                                                    ("grad_out", 8 * 3, (N, C), F8)]}),
     ValueError, lit("grad_out must not overlap logits; pass grad_out=logits itself for in place"))
case("grad_out overlaps out", "dense",
     overlapping("dense", {"len": NC + 1, "parts": [("out", 0, (N,), F8), ("grad_out", 8 * 1, (N, C), F8)]}),
     ValueError, lit("grad_out must not overlap out"))
case("grad_out overlaps where", "dense",
     overlapping("dense", {"len": NC, "parts": [("grad_out", 0, (N, C), F8), ("where", 0, (N, C), bool)],
                           "fill": {"where": True}}), ValueError, lit("grad_out must not overlap where"))
case("out overlaps where", "dense",
     overlapping("dense", {"len": NC, "parts": [("out", 0, (N,), F8), ("where", 1, (N, C), bool)],
                           "fill": {"where": True}}), ValueError, lit("out must not overlap where"))
# sparse: integer labels sharing the bytes of the outputs
case("grad_out overlaps labels", "sparse",
     overlapping("sparse", {"len": NC, "parts": [("grad_out", 0, (N, C), F8), ("labels", 8 * C, (N,), I8)],
                            "fill": {"labels": 1}}), ValueError, lit("grad_out must not overlap labels"))
case("out is labels' memory", "sparse",
     overlapping("sparse", {"len": N, "parts": [("labels", 0, (N,), I8), ("out", 0, (N,), F8)],
                            "fill": {"labels": 1}}), ValueError, lit("out must not overlap labels"))
case("out overlaps logits", "sparse",
     overlapping("sparse", {"len": NC + 2, "parts": [("logits", 0, (N, C), F8), ("out", 8 * (NC - 1), (N,), F8)]}),
     ValueError, lit("out must not overlap logits"))
case("grad_out overlaps logits", "sparse",
     overlapping("sparse", {"len": NC + C, "parts": [("logits", 8 * C, (N, C), F8), ("grad_out", 0, (N, C), F8)]}),
     ValueError, lit("grad_out must not overlap logits; pass grad_out=logits itself for in place"))
case("grad_out overlaps out", "sparse",
     overlapping("sparse", {"len": NC + N, "parts": [("grad_out", 0, (N, C), F8), ("out", 8 * (NC - 1), (N,), F8)]}),
     ValueError, lit("grad_out must not overlap out"))
case("grad_out overlaps where", "sparse",
     overlapping("sparse", {"len": NC, "parts": [("grad_out", 0, (N, C), F8), ("where", 3, (C,), bool)],
                            "fill": {"where": True}}), ValueError, lit("grad_out must not overlap where"))
case("out overlaps where", "sparse",
     overlapping("sparse", {"len": N, "parts": [("out", 0, (N,), F8), ("where", 0, (N, C), bool)],
                            "fill": {"where": True}}), ValueError, lit("out must not overlap where"))
# cross_entropy: target, weight, logits
case("grad_out overlaps class targets", "cross_entropy",
     overlapping("cross_entropy", {"len": NC, "parts": [("grad_out", 0, (N, C), F8),
                                                         ("target", 8 * (NC - N), (N,), I8)],
                                   "fill": {"target": 1}}), ValueError, lit("grad_out must not overlap target"))
case("grad_out is the probability target", "cross_entropy",
     overlapping("cross_entropy", {"len": NC, "parts": [("grad_out", 0, (N, C), F8),
                                                         ("target", 0, (N, C), F8)],
                                   "fill": {"target": 1.0 / C}}), ValueError, lit("grad_out must not overlap target"))
case("grad_out overlaps weight", "cross_entropy",
     overlapping("cross_entropy", {"len": NC, "parts": [("grad_out", 0, (N, C), F8), ("weight", 8 * C, (C,), F8)],
                                   "fill": {"weight": 1.0}}), ValueError, lit("grad_out must not overlap weight"))
case("grad_out overlaps logits", "cross_entropy",
     overlapping("cross_entropy", {"len": NC + 1, "parts": [("logits", 0, (N, C), F8),
                                                             ("grad_out", 8 * 1, (N, C), F8)]}),
     ValueError, lit("grad_out must not overlap logits; pass grad_out=logits itself for in place"))
# sigmoid: labels, pos_weight, logits
case("grad_out is labels", "sigmoid",
     overlapping("sigmoid", {"len": NC, "parts": [("labels", 0, (N, C), F8), ("grad_out", 0, (N, C), F8)],
                             "fill": {"labels": 0.0}}), ValueError, lit("grad_out must not overlap labels"))
case("grad_out overlaps pos_weight", "sigmoid",
     overlapping("sigmoid", {"len": NC, "parts": [("grad_out", 0, (N, C), F8), ("pos_weight", 8 * C, (C,), F8)],
                             "fill": {"pos_weight": 2.0}}), ValueError, lit("grad_out must not overlap pos_weight"))
case("grad_out overlaps logits", "sigmoid",
     overlapping("sigmoid", {"len": NC + 2, "parts": [("logits", 8 * 2, (N, C), F8), ("grad_out", 0, (N, C), F8)]}),
     ValueError, lit("grad_out must not overlap logits; pass grad_out=logits itself for in place"))
# softmax, log_softmax: out=logits is allowed, a part of it is not
for fn in ("softmax", "log_softmax"):
    case("out overlaps logits", fn,
         overlapping(fn, {"len": NC + C, "parts": [("logits", 0, (N, C), F8), ("out", 8 * C, (N, C), F8)]}),
         ValueError, lit("out must not overlap logits; pass out=logits itself for in place"))
    case("out is logits seen along axis 0", fn,
         kw(fn, out=lambda k: k["logits"][::-1]), ValueError, r"^out must be C-contiguous")
    case("out overlaps where", fn,
         overlapping(fn, {"len": NC, "parts": [("out", 0, (N, C), F8), ("where", 8 * 1, (N, C), bool)],
                          "fill": {"where": True}}), ValueError, lit("out must not overlap where"))

# --------------------------------------------------------------------------
# options of cross_entropy and score
# --------------------------------------------------------------------------

for value in ("avg", "MEAN", None, "", ["mean"], 0):
    case(f"reduction={value!r}", "cross_entropy", kw("cross_entropy", reduction=value), ValueError,
         lit(f"reduction must be one of ('none', 'sum', 'mean'), got reduction={value!r}"))
for value in (1.5, -0.1, float("nan"), float("inf"), -1):
    case(f"label_smoothing={value!r}", "cross_entropy", kw("cross_entropy", label_smoothing=value), ValueError,
         lit(f"label_smoothing must be in [0, 1], got label_smoothing={float(value)}"))
for value in ("0.1", True, None, [0.1], 1j):
    case(f"label_smoothing={value!r}", "cross_entropy", kw("cross_entropy", label_smoothing=value), TypeError,
         lit(f"label_smoothing must be a real number, got {value!r}"))
for value in (1.5, "1", True, None, np.float64(1.0), np.bool_(False)):
    case(f"ignore_index={value!r}", "cross_entropy", kw("cross_entropy", ignore_index=value), TypeError,
         lit(f"ignore_index must be an integer, got {value!r}"))
for value in (2**63, -(2**63) - 1, 2**64 - 100, np.uint64(2**63 + 5)):
    case(f"ignore_index={value!r}", "cross_entropy", kw("cross_entropy", ignore_index=value), ValueError,
         lit(f"ignore_index must be a 64-bit signed integer, in [-9223372036854775808, 9223372036854775807], "
             f"got ignore_index={int(value)}"))

for value in (0, -1, (1, 0), (1, 2.5), "1,5", [True], np.array([0, 1])):
    case(f"top_k={value!r}", "score", kw("score", top_k=value), ValueError,
         lit(f"top_k must hold positive integers, got top_k={(value,) if isinstance(value, int) else value!r}"))
for value in (None, 2.5, object):
    case(f"top_k={value!r}", "score", kw("score", top_k=value), TypeError,
         lit(f"top_k must be a positive integer or a sequence of them, got {value!r}"))
for value in (0, -5):
    case(f"batch_rows={value}", "score", kw("score", batch_rows=value), ValueError,
         lit(f"batch_rows must be a positive integer or None, got batch_rows={value}"))
for value in (2.0, "10", True, [1]):
    case(f"batch_rows={value!r}", "score", kw("score", batch_rows=value), TypeError,
         lit(f"batch_rows must be a positive integer or None, got {value!r}"))

# --------------------------------------------------------------------------
# sequences NumPy cannot make an array of
# --------------------------------------------------------------------------

RAGGED = [[1.0, 2.0, 3.0, 4.0, 5.0], [1.0], [1.0, 2.0]]
for fn in FUNCTIONS:
    for name in (LOGITS_NAME[fn], LABELS_NAME.get(fn)):
        if name is None:
            continue
        case(f"ragged {name}", fn, kw(fn, **{name: RAGGED}), ValueError,
             rf"^{name} could not be converted to an array: .*inhomogeneous")


# --------------------------------------------------------------------------
# the test
# --------------------------------------------------------------------------

def _state(a):
    a = np.asarray(a)
    return a.dtype, a.shape, np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("fn,build,exc,match", CASES)
def test_bad_input(fn, build, exc, match):
    kwargs = build()
    watch = kwargs.pop("_watch", [])
    arrays = [(k, v) for k, v in kwargs.items() if isinstance(v, np.ndarray)]
    arrays += [(f"buffer {i}", b) for i, b in enumerate(watch)]
    before = [_state(a) for _, a in arrays]
    with pytest.raises(Exception) as info:
        FUNCTIONS[fn](**kwargs)
    assert type(info.value) is exc, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert re.search(match, message), message
    for (name, a), b in zip(arrays, before):
        assert _state(a) == b, f"{name} was written before the error"


def test_the_table_covers_every_public_function():
    # the buffer cache's settings take no arrays: tests/test_buffers.py checks their errors
    public = set(xentc.__all__) - {"ScoreResult", "__version__", "openmp_enabled", "show_config",
                                   "set_buffer_cache", "empty_buffer_cache"}
    assert {f.__name__ for f in FUNCTIONS.values()} == public
    tested = {p.values[0] for p in CASES}
    assert tested == set(FUNCTIONS)
