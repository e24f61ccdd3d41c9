"""Shared test settings and helpers: hypothesis profiles, dtype policy, tolerances, layouts.

The helpers are plain functions (imported by the test modules with
``from conftest import ...``; pytest puts this directory on sys.path) so that
hypothesis tests can call them without function-scoped fixtures.
"""
import itertools
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# --------------------------------------------------------------------------
# hypothesis profiles: `ci` (loaded when CI is set) is derandomised, the same
# examples on every run; `dev` explores new examples each run; the variable
# HYPOTHESIS_PROFILE picks one explicitly.  No deadline: the first call of a
# kernel pays for thread start-up, and CI machines are slow and noisy.
# --------------------------------------------------------------------------
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=100,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# for hunting bugs locally: HYPOTHESIS_PROFILE=thorough python -P -m pytest tests
settings.register_profile("thorough", settings.get_profile("dev"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# --------------------------------------------------------------------------
# sanitizer runs: .ci/run's sanitizer stage installs an extension built with
# XENTC_SANITIZE=address,undefined, preloads ASan and sets XENTC_SANITIZED=1.
# The few tests that measure something ASan changes skip there, each saying why
# with skip_if_sanitized("..."); every other test runs under the sanitizers.
# --------------------------------------------------------------------------
SANITIZED = os.environ.get("XENTC_SANITIZED") == "1"


def skip_if_sanitized(reason):
    """A skip mark for a test that cannot run under ASan/UBSan, with the reason why."""
    return pytest.mark.skipif(SANITIZED, reason=f"under ASan/UBSan (XENTC_SANITIZED=1): {reason}")


# --------------------------------------------------------------------------
# dtype policy (what xentc documents)
# --------------------------------------------------------------------------
F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)

INT_DTYPES = [np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64,
                                    np.uint8, np.uint16, np.uint32, np.uint64)]


def result_dtype(dtype):
    """The dtype of xentc's results for logits of this dtype."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return {2: F16, 4: F32}.get(dtype.itemsize, F64)  # float64 and longdouble -> float64
    if dtype.kind in "biu":
        return F64
    raise AssertionError(f"no result dtype for {dtype}")


def compute_dtype(dtype):
    """The dtype xentc computes in (float16 is computed in float32)."""
    rd = result_dtype(dtype)
    return F32 if rd == F16 else rd


# --------------------------------------------------------------------------
# tolerances
#
# A result is compared with the float64 reference as
#     |got - ref| <= RTOL * scale + ROUND * |ref| + ATOL
# where `scale` is the sum of the magnitudes of the terms the result is made of
# (see reference.error_scale_*; it is |ref| itself when nothing cancels).
#   float64: computed in float64, a few ulps of the scale.
#   float32: computed in float32 (sums in double), ~ 2e-5 of the scale.
#   float16: computed in float32, then rounded once to float16: the float32
#            error plus one float16 rounding (2**-11 relative, with margin) and
#            one subnormal spacing (2**-24).
# --------------------------------------------------------------------------
RTOL = {F16: 2e-5, F32: 2e-5, F64: 1e-12}
ROUND = {F16: 1e-3, F32: 0.0, F64: 0.0}
ATOL = {F16: 2.0 ** -24, F32: 1e-40, F64: 1e-300}


def assert_close(got, ref, rdtype, scale=None, what="result"):
    """got (an xentc result of dtype rdtype) against the float64 reference ref.

    NaN and infinities must be at the same places (with the same sign); finite
    values within the tolerance above.  scale defaults to |ref|.
    """
    rdtype = np.dtype(rdtype)
    got_arr = np.asarray(got)
    assert got_arr.dtype == rdtype, f"{what}: dtype {got_arr.dtype}, expected {rdtype}"
    ref = np.array(ref, dtype=np.float64)
    # values beyond the result dtype's range round to +-inf
    with np.errstate(over="ignore"):
        rounded = ref.astype(rdtype).astype(np.float64)
    overflow = np.isinf(rounded) & np.isfinite(ref)
    ref[overflow] = rounded[overflow]
    assert got_arr.shape == ref.shape, f"{what}: shape {got_arr.shape}, expected {ref.shape}"
    g = got_arr.astype(np.float64)
    nan_ref, nan_got = np.isnan(ref), np.isnan(g)
    assert np.array_equal(nan_ref, nan_got), (
        f"{what}: NaN at {np.argwhere(nan_got != nan_ref)[:5].tolist()} differ; got {g}, ref {ref}")
    inf_ref = np.isinf(ref)
    assert np.array_equal(g[inf_ref], ref[inf_ref]) and not np.isinf(g[~inf_ref]).any(), (
        f"{what}: infinities differ; got {g}, ref {ref}")
    fin = np.isfinite(ref)
    scale = np.abs(ref) if scale is None else np.broadcast_to(np.asarray(scale, np.float64), ref.shape)
    tol = RTOL[rdtype] * scale[fin] + ROUND[rdtype] * np.abs(ref[fin]) + ATOL[rdtype]
    err = np.abs(g[fin] - ref[fin])
    if err.size and not (err <= tol).all():
        worst = int(np.argmax(err - tol))
        raise AssertionError(
            f"{what}: {int((err > tol).sum())} of {err.size} values out of tolerance; worst: "
            f"got {g[fin][worst]!r}, ref {ref[fin][worst]!r}, |diff| {err[worst]:.3g} > tol "
            f"{tol[worst]:.3g}")


# --------------------------------------------------------------------------
# layouts: the same values in different memory
# --------------------------------------------------------------------------
LAYOUTS = ["C", "F", "strided", "negative", "readonly", "memmap", "list", "byteswapped"]

_counter = itertools.count()


def relayout(a, layout, directory=None):
    """An array_like holding the values of ndarray `a` in the given layout.

    "list" returns nested Python lists (so numpy.asarray picks float64/int64);
    "memmap" a read-only numpy.memmap of a file in `directory`.  Zero-size
    arrays can be neither (a list loses the shape, an empty file cannot be
    mapped): they come back C-contiguous.
    """
    a = np.asarray(a)
    if a.ndim == 0:
        # a single label: a Python int for "list", else a fresh 0-d array
        # (numpy.ascontiguousarray would make it 1-d)
        return a.item() if layout == "list" else np.array(a, dtype=a.dtype)
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        # every other element of a larger array, starting at an offset
        big = np.full(tuple(2 * d + 1 for d in a.shape), 99, dtype=a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "negative":
        rev = tuple(slice(None, None, -1) for _ in a.shape)
        return np.ascontiguousarray(a[rev])[rev]
    if layout == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if layout == "byteswapped":
        b = a.astype(a.dtype.newbyteorder())
        assert not b.dtype.isnative or b.dtype.itemsize == 1
        return b
    if a.size == 0:
        return np.ascontiguousarray(a)
    if layout == "list":
        return a.tolist()
    if layout == "memmap":
        assert directory is not None
        path = os.path.join(str(directory), f"m{next(_counter)}.bin")
        w = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
        w[...] = a
        w.flush()
        del w
        return np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape)
    raise AssertionError(f"unknown layout {layout!r}")


@pytest.fixture(scope="session")
def memmap_dir(tmp_path_factory):
    """A directory for memory-mapped inputs (session-scoped, so hypothesis tests may use it)."""
    return tmp_path_factory.mktemp("memmaps")


def draw_logit_values(draw, rng, dtype, shape, small):
    """Logits of dtype and shape for the hypothesis generators: floats uniform in
    +-bound (bound drawn from small, 30 and, but for float16, 1e4), sometimes only a
    handful of distinct values (ties); bools; integers in [-60, 60] within the dtype."""
    if dtype.kind == "f":
        # float16 results must stay in float16's range: small logits
        bound = draw(st.sampled_from([small, 30.0] if dtype == F16 else [small, 30.0, 1e4]))
        values = rng.uniform(-bound, bound, size=shape)
        if draw(st.booleans()):  # ties: a handful of distinct values
            values = np.round(values / bound * 2) * bound / 2
        return values.astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -60), min(info.max, 60), size=shape, endpoint=True).astype(dtype)
