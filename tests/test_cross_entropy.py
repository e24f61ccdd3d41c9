"""xentc.cross_entropy against a float64 NumPy transcription of PyTorch's
definition (torch.nn.functional.cross_entropy: nll_loss of log_softmax plus the
label-smoothing term of aten's cross_entropy_loss_label_smoothing)."""
import doctest
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xentc
import xentc._cross_entropy
from reference import cross_entropy as ref_cross_entropy


def numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f(x)
        flat[i] = old - h
        down = f(x)
        flat[i] = old
        gf[i] = (up - down) / (2 * h)
    return g


CASES = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(label_smoothing=0.1),
    dict(weight=[0.5, 2.0, 1.0, 3.0]),
    dict(weight=[0.5, 2.0, 1.0, 3.0], label_smoothing=0.2, reduction="sum"),
    dict(ignore_index=1),
    dict(ignore_index=2, weight=[0.5, 2.0, 1.0, 3.0], label_smoothing=0.3),
]


@pytest.mark.parametrize("options", CASES)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_values_and_gradient_match_the_reference(options, kind):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 4)) * 2
    if kind == "index":
        target = np.array([0, 1, 2, 3, 1, 2])
    else:
        target = xentc.softmax(rng.normal(size=(6, 4)))
        options = {k: v for k, v in options.items() if k != "ignore_index"}
    loss, grad = xentc.cross_entropy(x, target, return_grad=True, **options)
    np.testing.assert_allclose(loss, ref_cross_entropy(x, target, **options), rtol=1e-12, atol=1e-15)

    def reduced(z):
        return float(np.sum(ref_cross_entropy(z, target, **options)))

    np.testing.assert_allclose(grad, numeric_grad(reduced, x.copy()), rtol=1e-6, atol=1e-8)


def test_k_dimensional_input_with_class_axis_1_like_pytorch():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 5, 2, 4))          # (N, C, d1, d2)
    target = rng.integers(0, 5, size=(3, 2, 4))
    target[0, 0, 0] = -100
    for reduction in ("none", "mean"):
        got = xentc.cross_entropy(x, target, axis=1, reduction=reduction, label_smoothing=0.05)
        want = ref_cross_entropy(x, target, axis=1, reduction=reduction, label_smoothing=0.05)
        np.testing.assert_allclose(got, want, rtol=1e-12)
    loss, grad = xentc.cross_entropy(x, target, axis=1, return_grad=True)
    assert grad.shape == x.shape and np.all(grad[0, :, 0, 0] == 0)


def test_mean_over_no_counted_row_is_zero_with_zero_gradient():
    x = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
    loss, grad = xentc.cross_entropy(x, [-100, -100, -100], return_grad=True)
    assert loss == 0.0 and loss.dtype == np.float32
    assert np.all(grad == 0)
    loss, grad = xentc.cross_entropy(x, [1, 1, 1], weight=[1, 0, 1, 1], return_grad=True)
    assert loss == 0.0 and np.all(grad == 0)


def test_ignored_rows_are_zero_even_with_nan_logits():
    x = np.zeros((2, 5), np.float32)
    x[1, 2] = np.nan
    for c in (5, 50):  # the few-classes path and the per-row path
        x = np.zeros((2, c), np.float32)
        x[1, 2] = np.nan
        loss, grad = xentc.cross_entropy(x, [1, -100], reduction="none", return_grad=True)
        assert loss[1] == 0 and np.all(grad[1] == 0)
        assert np.isclose(loss[0], np.log(c))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_smoothing_with_weights_and_minus_inf_logits_over_many_blocks(dtype):
    # 3000 classes span several blocks of the kernel; a block whose weights are
    # all positive takes a path without the 0 * log 0 guard, so: a -inf logit
    # with weight 0 adds 0 (as a very negative finite logit would), and a -inf
    # logit with a positive weight makes the smoothed loss +inf
    rng = np.random.default_rng(7)
    c = 3000
    x = rng.normal(size=(2, c)).astype(dtype)
    w = rng.uniform(0.5, 2.0, size=c).astype(dtype)
    w[5] = 0
    opts = dict(weight=w, label_smoothing=0.1, reduction="none")
    x[:, 5] = -1e4
    finite = xentc.cross_entropy(x, [1, 2000], **opts)
    x[:, 5] = -np.inf
    got = xentc.cross_entropy(x, [1, 2000], **opts)
    np.testing.assert_array_equal(got, finite)
    np.testing.assert_allclose(got, ref_cross_entropy(np.where(np.isinf(x), -1e4, x), [1, 2000],
                                                      **opts), rtol=2e-5 if dtype == np.float32 else 1e-12)
    x[1, 2500] = -np.inf
    got = xentc.cross_entropy(x, [1, 2000], **opts)
    assert np.isfinite(got[0]) and got[1] == np.inf


def test_confident_row_keeps_its_tiny_loss_and_gradient_in_float32():
    x = np.full((1, 10), -10.0, np.float32)
    x[0, 3] = 10
    loss, grad = xentc.cross_entropy(x, [3], return_grad=True)
    np.testing.assert_allclose(loss, 9 * np.exp(-20.0), rtol=1e-3)   # log1p(9 e^-20), mpmath: 1.8550383e-08
    np.testing.assert_allclose(grad[0, 3], -9 * np.exp(-20.0), rtol=1e-3)
    x100 = np.full((1, 100), -10.0, np.float32)
    x100[0, 3] = 10
    loss, grad = xentc.cross_entropy(x100, [3], weight=np.ones(100), return_grad=True)
    np.testing.assert_allclose(loss, 99 * np.exp(-20.0), rtol=1e-3)
    np.testing.assert_allclose(grad[0, 3], -99 * np.exp(-20.0), rtol=1e-3)


@given(
    n=st.integers(0, 40), c=st.integers(1, 70), dtype=st.sampled_from([np.float32, np.float64]),
    eps=st.sampled_from([0.0, 0.1, 1.0]), weighted=st.booleans(),
    reduction=st.sampled_from(["none", "sum", "mean"]), seed=st.integers(0, 2**16),
)
def test_property_against_reference(n, c, dtype, eps, weighted, reduction, seed):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, c)) * 3).astype(dtype)
    target = rng.integers(0, c, size=n)
    target[rng.random(n) < 0.2] = -100
    weight = rng.uniform(0.1, 2.0, c) if weighted else None
    kw = dict(weight=weight, label_smoothing=eps, reduction=reduction)
    got, grad = xentc.cross_entropy(x, target, return_grad=True, **kw)
    want = ref_cross_entropy(x, target, **kw)
    tol = 2e-5 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    x_copy = x.copy()
    got2, same = xentc.cross_entropy(x_copy, target, grad_out=x_copy, **kw)  # in place
    assert same is x_copy
    np.testing.assert_array_equal(same, grad)
    for nt in (1, 2):
        assert np.array_equal(xentc.cross_entropy(x, target, num_threads=nt, **kw), got)


@pytest.mark.parametrize("call, message", [
    (lambda x: xentc.cross_entropy(x, [0, 7]), r"target\[1\] = 7 is outside the valid range \[0, 4\) and is not ignore_index=-100"),
    (lambda x: xentc.cross_entropy(x, [0, 1, 2]), r"target.shape=\(3,\) and logits.shape=\(2, 4\)"),
    (lambda x: xentc.cross_entropy(x, np.zeros((2, 3))), r"target.shape=\(2, 3\) and logits.shape=\(2, 4\)"),
    (lambda x: xentc.cross_entropy(x, [0, 1], weight=[1, 2]), r"weight must have shape \(4,\).*weight.shape=\(2,\)"),
    (lambda x: xentc.cross_entropy(x, [0, 1], reduction="avg"), r"reduction must be one of .*'avg'"),
    (lambda x: xentc.cross_entropy(x, [0, 1], label_smoothing=1.5), r"label_smoothing must be in \[0, 1\], got label_smoothing=1.5"),
])
def test_errors_name_the_problem_and_write_nothing(call, message):
    x = np.zeros((2, 4))
    before = x.copy()
    with pytest.raises(ValueError, match=message):
        call(x)
    assert np.array_equal(x, before)


def test_type_errors():
    x = np.zeros((2, 4))
    with pytest.raises(TypeError, match="target must hold integer class indices or real"):
        xentc.cross_entropy(x, np.array([True, False]))
    with pytest.raises(TypeError, match="ignore_index must be an integer"):
        xentc.cross_entropy(x, [0, 1], ignore_index=1.5)


def test_docstring_examples():
    result = doctest.testmod(xentc._cross_entropy)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_float16_loss_beyond_its_range_is_inf_without_a_warning(reduction):
    # computed in float32 (1.2e5), returned as float16: +inf, as the other
    # functions do, and no "overflow encountered in cast" (an error under
    # -W error, and pytest's filterwarnings here)
    x = np.array([[6e4, -6e4]], np.float16)
    loss = xentc.cross_entropy(x, [1], reduction=reduction)
    assert loss.dtype == np.float16 and np.all(loss == np.inf)


@pytest.mark.parametrize("ignore_index", [2**63, -(2**63) - 1, 2**64 - 100, 2**70, np.uint64(2**63 + 5)])
def test_ignore_index_outside_int64_names_it_and_the_range(ignore_index):
    # was an OverflowError "Python int too large to convert to C long" from the kernel call
    x = np.zeros((2, 4))
    g = np.full((2, 4), 7.0)
    with pytest.raises(ValueError, match=re.escape(
            "ignore_index must be a 64-bit signed integer, in [-9223372036854775808, "
            f"9223372036854775807], got ignore_index={int(ignore_index)}")):
        xentc.cross_entropy(x, np.array([0, 2**64 - 100], np.uint64), ignore_index=ignore_index,
                            grad_out=g)
    assert np.all(g == 7.0)
    # the extremes of int64 are fine
    for ok in (2**63 - 1, -(2**63)):
        assert xentc.cross_entropy(x, [0, 1], ignore_index=ok) == np.log(4)


@pytest.mark.parametrize("n_classes", [3, 40])  # the few-classes path and the per-row path
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_label_term_of_weight_zero_adds_nothing_to_an_infinite_loss(n_classes, dtype):
    # 0 * log 0 = 0, as for probability targets: the label term (1 - eps) w_y (lse - x_y)
    # is left out when (1 - eps) w_y = 0, also when lse - x_y is +inf.  It was
    # 0 * inf = NaN for class indices, while the same targets as probabilities gave inf.
    x = np.zeros((2, n_classes), dtype)
    x[0, 0] = np.inf      # row 0: label 1 sits next to a +inf logit
    x[1, 1] = -np.inf     # row 1: label 1 is a -inf logit
    onehot = np.eye(n_classes, dtype=dtype)[[1, 1]]
    for kw in (dict(label_smoothing=1.0), dict(label_smoothing=1.0, weight=np.ones(n_classes))):
        got = xentc.cross_entropy(x, [1, 1], reduction="none", **kw)
        assert np.array_equal(got, [np.inf, np.inf]), (kw, got)
        assert np.array_equal(got, xentc.cross_entropy(x, onehot, reduction="none", **kw))
    w = np.ones(n_classes)
    w[1] = 0  # weight 0 on the label: no label term, and no smoothing term at it either
    x[0, 0] = 1.0
    got = xentc.cross_entropy(x, [1, 1], weight=w, reduction="none")
    assert np.array_equal(got, [0, 0]), got
    got = xentc.cross_entropy(x, [1, 1], weight=w, label_smoothing=0.1, reduction="none")
    assert np.isfinite(got).all(), got
    np.testing.assert_allclose(got, xentc.cross_entropy(x, onehot, weight=w, label_smoothing=0.1,
                                                        reduction="none"), rtol=1e-6)
