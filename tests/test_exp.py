"""The vectorised exp of each SIMD path against the correctly rounded result.

xentc's kernels use an exp of their own (range reduction plus polynomial):
it must be within 2 ulp everywhere, exact at 0, and right for -inf, +inf, NaN,
overflow, underflow and denormal results.  The reference is NumPy's float64
(or longdouble) exp rounded to the tested precision.
"""
import decimal

import numpy as np
import pytest

from xentc import _kernels


def max_ulp_error(got, ref_wide, dtype):
    """Largest |got - ref| in units of the last place of ref rounded to dtype
    (the denormal ulp at the bottom); where ref rounds to +inf, got must be +inf."""
    with np.errstate(over="ignore", under="ignore"):
        ref = ref_wide.astype(dtype)
    overflow = np.isinf(ref)
    assert np.all(got[overflow] == np.inf)
    got, ref, ref_wide = got[~overflow], ref[~overflow], ref_wide[~overflow]
    if got.size == 0:
        return 0.0
    tiny = np.finfo(dtype).smallest_subnormal
    ulp = np.maximum(np.spacing(np.abs(ref)), tiny).astype(ref_wide.dtype)
    return float((np.abs(got.astype(ref_wide.dtype) - ref_wide) / ulp).max())


def vexp(x):
    out = np.empty_like(x)
    _kernels.exp(x, out)
    return out


def test_float32_exp_within_2ulp_on_16m_points_over_the_whole_range():
    # every 256th bit pattern of all 2**32 float32 values (both signs), in chunks
    worst = 0.0
    for start in range(0, 1 << 32, 1 << 28):
        bits = np.arange(start, start + (1 << 28), 256, dtype=np.uint64).astype(np.uint32) + 77
        x = bits.view(np.float32)
        x = x[np.isfinite(x)]
        got = vexp(x)
        with np.errstate(over="ignore", under="ignore"):
            ref = np.exp(x.astype(np.float64))
        worst = max(worst, max_ulp_error(got, ref, np.float32))
    assert worst <= 2.0, worst


def test_float32_exp_denormal_results_and_edges():
    x = np.linspace(-104.5, -87.0, 200_001, dtype=np.float32)  # results from 0 through denormals
    with np.errstate(under="ignore"):
        ref = np.exp(x.astype(np.float64))
    assert max_ulp_error(vexp(x), ref, np.float32) <= 2.0
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72283, 88.72284, 1e30, -1e30,
                  np.finfo(np.float32).tiny, -np.finfo(np.float32).smallest_subnormal],
                 dtype=np.float32)
    got = vexp(x)
    assert got[0] == 1.0 and got[1] == 1.0
    assert got[2] == np.inf and got[3] == 0.0 and np.isnan(got[4])
    assert np.isfinite(got[5]) and got[6] == np.inf
    assert got[7] == np.inf and got[8] == 0.0
    assert got[9] == 1.0 and got[10] == 1.0


def test_float32_sum_exp_within_2ulp_on_nonpositive_inputs_down_to_minus_132():
    # the cheaper exp the row kernels use for the terms of a row's sum
    # (x - max <= 0, clamped at -132.5), which returns exp(x) * 2**64 so that
    # the terms are normal down to -131.7: every 61st float32 in [-132, -0], in chunks
    lo = np.array(-132.0, dtype=np.float32).view(np.uint32).item()
    neg0 = np.array(-0.0, dtype=np.float32).view(np.uint32).item()
    worst = 0.0
    for start in range(neg0, lo + 1, 61 << 22):
        bits = np.arange(start, min(start + (61 << 22), lo + 1), 61, dtype=np.uint32)
        x = bits.view(np.float32)
        got = np.empty_like(x)
        _kernels.exp_sum(x, got)
        with np.errstate(under="ignore"):
            ref = np.exp(x.astype(np.float64)) * 2.0**64
        worst = max(worst, max_ulp_error(got, ref, np.float32))
    assert worst <= 2.0, worst
    x = np.array([0.0, -0.0, -np.inf, -1e30, -132.5, -np.finfo(np.float32).smallest_subnormal, np.nan,
                  -132.1, -131.0], dtype=np.float32)
    got = np.empty_like(x)
    _kernels.exp_sum(x, got)
    assert got[:2].tolist() == [2.0**64, 2.0**64] and got[5] == 2.0**64
    # from about -132.05 down (-inf included) a term is exactly 0; above it the
    # terms are accurate (exp(-131) 2**64 = 1.5e-38, a normal float)
    assert got[2] == got[3] == got[4] == got[7] == 0.0
    assert abs(got[8] / (np.exp(-131.0) * 2.0**64) - 1) < 2.5e-7
    assert np.isnan(got[6])   # a NaN stays NaN: the row kernels find NaN rows by their sums


def test_float64_exp_within_2ulp_on_4m_points():
    rng = np.random.default_rng(7)
    x = np.concatenate([
        rng.uniform(-745.2, 709.8, 2_000_000),           # the whole finite range
        rng.uniform(-745.2, -708.0, 500_000),            # denormal results
        rng.uniform(-1.0, 1.0, 1_000_000),
        rng.normal(scale=1e-8, size=500_000),
    ])
    got = vexp(x)
    with np.errstate(over="ignore", under="ignore"):
        ref = np.exp(x.astype(np.longdouble))
    if np.finfo(np.longdouble).nmant < 60:  # longdouble is plain double here: 1 ulp of slack
        bound = 3.0
    else:
        bound = 2.0
    assert max_ulp_error(got, ref, np.float64) <= bound
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 709.78, 709.79, -745.2, 1e300, -1e300])
    got = vexp(special)
    assert got[0] == 1.0 and got[1] == 1.0 and got[2] == np.inf and got[3] == 0.0
    assert np.isnan(got[4]) and np.isfinite(got[5]) and got[6] == np.inf
    assert got[7] == 0.0 and got[8] == np.inf and got[9] == 0.0


def test_float64_sum_exp_within_2ulp_on_nonpositive_inputs_down_to_minus_753():
    # the double terms of a row's sum: exp(x) * 2**64 for x <= 0, clamped at
    # -753.5, normal numbers down to -1086 ln 2 = -752.76 (no two-step scaling)
    rng = np.random.default_rng(11)
    x = np.concatenate([
        rng.uniform(-753.0, 0.0, 2_000_000),
        rng.uniform(-40.0, 0.0, 1_000_000),
        -np.abs(rng.normal(scale=1e-8, size=200_000)),
        rng.uniform(-753.0, -708.0, 300_000),            # denormal without the 2**64
    ])
    if np.finfo(np.longdouble).nmant < 60:
        # longdouble is plain double (e.g. macOS arm64): exp(x) itself would
        # underflow below -708 in the reference, and it has 1 ulp of its own
        x, bound = x[x > -708.0], 3.0
    else:
        bound = 2.0
    got = np.empty_like(x)
    _kernels.exp_sum(x, got)
    with np.errstate(under="ignore"):
        ref = np.exp(x.astype(np.longdouble)) * np.longdouble(2.0**64)
    assert max_ulp_error(got, ref, np.float64) <= bound
    special = np.array([0.0, -0.0, -np.inf, -1e300, -753.5, -753.2, np.nan, -752.0, -5e-324])
    got = np.empty_like(special)
    _kernels.exp_sum(special, got)
    assert got[0] == got[1] == got[8] == 2.0**64
    assert got[2] == got[3] == got[4] == got[5] == 0.0   # 0 at the clamp, so -inf adds exactly 0
    with decimal.localcontext() as ctx:   # exp(-752) 2**64 = 4.7e-308, without underflow
        ctx.prec = 40
        ref_752 = float(decimal.Decimal(-752).exp() * 2**64)
    assert abs(got[7] / ref_752 - 1) < 1e-15
    assert np.isnan(got[6])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_on_tails_of_every_length(dtype):
    # lengths around the vector width exercise the partial (masked) loads and stores
    for n in range(1, 40):
        x = np.linspace(-5, 5, n).astype(dtype)
        np.testing.assert_allclose(vexp(x), np.exp(x), rtol=4 * np.finfo(dtype).eps)


def test_exp_refuses_an_output_of_another_length():
    x = np.zeros(8, dtype=np.float32)
    for fn in (_kernels.exp, _kernels.exp_sum):
        with pytest.raises(ValueError, match="out must have x's length 8, got 7"):
            fn(x, np.empty(7, dtype=np.float32))
