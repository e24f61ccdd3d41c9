"""Misaligned inputs: C-contiguous arrays at an address that is not a multiple of their
itemsize, as np.frombuffer at an odd offset, a field of a packed structured array, or an
array Dask deserialised from a frame at an odd offset give.

numpy.ascontiguousarray keeps such an array as it is, and the kernels read through typed C
pointers, for which a misaligned address is undefined behaviour: the Python layer hands the
kernels an aligned copy.  x86-64 and arm64 tolerate misaligned loads, so in a normal build
these tests only check the results; in the sanitizer build (XENTC_SANITIZE=address,undefined,
.ci/run) UBSan ends the process on a misaligned load (first seen there in xentc.score on a
Dask cluster: "_xentc_rows_impl.h:558: load of misaligned address ... for type 'const float'").
"""
import numpy as np
import pytest

import xentc


def misaligned(a):
    """The values of a in a C-contiguous array one byte past an aligned address."""
    a = np.ascontiguousarray(a)
    u = np.frombuffer(bytearray(a.nbytes + 1), dtype=a.dtype, offset=1, count=a.size)
    u = u.reshape(a.shape)
    u[...] = a
    assert u.flags.c_contiguous and not u.flags.aligned
    return u


def _inputs(dtype):
    rng = np.random.default_rng(0)
    n, c = 64, 37
    x = rng.normal(size=(n, c)).astype(dtype)
    y = rng.random((n, c))
    y /= y.sum(axis=1, keepdims=True)
    p = rng.random((n, c)) + 0.1
    p /= p.sum(axis=1, keepdims=True)
    return {
        "x": x,
        "labels": rng.integers(0, c, size=n),
        "y": y.astype(dtype),
        "p": p.astype(dtype),
        "b": (rng.random((n, c)) < 0.5).astype(dtype),
        "w": rng.random(c).astype(dtype),
    }


CALLS = {
    "sparse": lambda a: xentc.sparse_softmax_cross_entropy_with_logits(
        a["labels"], a["x"], return_grad=True),
    "dense": lambda a: xentc.softmax_cross_entropy_with_logits(a["y"], a["x"], return_grad=True),
    "cross_entropy weight smoothing": lambda a: xentc.cross_entropy(
        a["x"], a["labels"], weight=a["w"], label_smoothing=0.1, return_grad=True),
    "cross_entropy probabilities": lambda a: xentc.cross_entropy(a["x"], a["y"], reduction="none"),
    "sigmoid pos_weight": lambda a: xentc.sigmoid_cross_entropy_with_logits(
        a["b"], a["x"], pos_weight=a["w"], return_grad=True),
    "categorical": lambda a: xentc.categorical_crossentropy(a["y"], a["p"]),
    "binary": lambda a: xentc.binary_crossentropy(a["b"], a["p"]),
    "softmax": lambda a: xentc.softmax(a["x"]),
    "log_softmax": lambda a: xentc.log_softmax(a["x"]),
    "logsumexp": lambda a: xentc.logsumexp(a["x"]),
    "score sparse": lambda a: xentc.score(a["x"], a["labels"]).to_dict(),
    "score dense": lambda a: xentc.score(a["x"], a["y"]).to_dict(),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("call", list(CALLS))
def test_misaligned_inputs_give_the_results_of_aligned_ones(call, dtype):
    aligned = _inputs(dtype)
    want = CALLS[call](aligned)
    got = CALLS[call]({k: misaligned(v) for k, v in aligned.items()})
    want, got = (w if isinstance(w, tuple) else (w,) for w in (want, got))
    for g, w in zip(got, want):
        if isinstance(w, dict):
            assert g.keys() == w.keys()
            for k in w:
                np.testing.assert_array_equal(np.asarray(g[k]), np.asarray(w[k]), err_msg=k)
        else:
            np.testing.assert_array_equal(g, w)
