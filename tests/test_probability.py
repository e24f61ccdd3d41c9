"""categorical_crossentropy and binary_crossentropy (Keras semantics on probabilities):
seed 003, Keras's clip bounds, the float64 reference, the "logits passed as
probabilities" checks, threads, properties, errors, and the numbers Keras's
NumPy, TensorFlow and PyTorch backends give (tests/data/binary_reference.json).
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, note, strategies as st
from hypothesis.extra.numpy import array_shapes
from numpy.exceptions import AxisError

import reference
import xentc
from conftest import F16, F32, F64, LAYOUTS, assert_close, compute_dtype, relayout, result_dtype
from xentc._binary import SUM_TOLERANCE

categorical = xentc.categorical_crossentropy
binary = xentc.binary_crossentropy
DATA = Path(__file__).resolve().parent / "data" / "binary_reference.json"


def check_categorical(target, output, axis=-1, epsilon=1e-7, **kwargs):
    got = categorical(target, output, axis=axis, epsilon=epsilon, **kwargs)
    rd = result_dtype(np.asarray(output).dtype)
    cd = compute_dtype(np.asarray(output).dtype)
    t = np.asarray(target, dtype=np.float64).astype(cd)  # target follows the computation dtype
    ref = reference.categorical_crossentropy(t, output, axis, epsilon, cd)
    assert_close(got, ref, rd, reference.error_scale_categorical_crossentropy(t, output, axis, epsilon, cd))
    return got


def check_binary(target, output, epsilon=1e-7, **kwargs):
    got = binary(target, output, epsilon=epsilon, **kwargs)
    rd = result_dtype(np.asarray(output).dtype)
    cd = compute_dtype(np.asarray(output).dtype)
    t = np.asarray(target, dtype=np.float64).astype(cd)
    ref = reference.binary_crossentropy(t, output, epsilon, cd)
    assert_close(got, ref, rd, reference.error_scale_binary_crossentropy(t, output, epsilon, cd))
    return got


# --------------------------------------------------------------------------
# seed 003: "Why isn't -sum(y' log y + (1 - y') log(1 - y)) used?"  Values from
# mpmath (40 digits).
# --------------------------------------------------------------------------

Y_TRUE = [1.0, 0.0, 0.0, 0.0]
Y1 = [0.7, 0.1, 0.1, 0.1]
Y2 = [0.73, 0.26, 0.05, 0.05]
SEED003_BINARY_Y1 = 0.6727564909122112826     # -(log .7 + 3 log .9): the answer's "~0.67"
SEED003_BINARY_Y2 = 0.71840242639872292005    # -(log .73 + log .74 + 2 log .95): "~0.72"
SEED003_CATEGORICAL_Y1 = 0.35667494393873237891  # -log .7


def test_seed003_binary_formula_gives_the_answers_numbers():
    np.testing.assert_allclose(binary(Y_TRUE, Y1).sum(), SEED003_BINARY_Y1, rtol=1e-14)
    np.testing.assert_allclose(binary(Y_TRUE, Y2).sum(), SEED003_BINARY_Y2, rtol=1e-14)
    assert round(float(binary(Y_TRUE, Y1).sum()), 2) == 0.67
    assert round(float(binary(Y_TRUE, Y2).sum()), 2) == 0.72


def test_seed003_zero_targets_do_not_contribute_to_the_categorical_loss():
    # only the true class's probability counts: moving the rest around changes nothing
    a = categorical(Y_TRUE, Y1)
    b = categorical(Y_TRUE, [0.7, 0.28, 0.01, 0.01])
    np.testing.assert_allclose(a, SEED003_CATEGORICAL_Y1, rtol=1e-14)
    np.testing.assert_allclose(a, b, rtol=1e-15)  # up to the rounding of the row sums
    # ... while the binary form, for non-exclusive classes, does see it
    assert binary(Y_TRUE, [0.7, 0.28, 0.01, 0.01]).sum() != binary(Y_TRUE, Y1).sum()


def test_seed003_second_prediction_is_not_a_distribution():
    # [0.73, 0.26, 0.05, 0.05] sums to 1.09: a softmax output cannot; Keras
    # would renormalise it silently
    with pytest.raises(ValueError, match=re.escape("output[:] sums to 1.09, not 1")):
        categorical(Y_TRUE, Y2)


def test_seed003_logits_and_probabilities_agree():
    # the binary loss of sigmoid(x) is the sigmoid loss of x (away from the clip)
    x = np.array([[-3.0, -0.5, 0.0, 0.5, 3.0]])
    z = np.array([[0.0, 1.0, 0.3, 1.0, 0.0]])
    p = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(binary(z, p), binary(z, x, from_logits=True), rtol=1e-13)
    # and the categorical loss of softmax(x) is the loss of x
    y = np.array([[0.1, 0.2, 0.3, 0.4, 0.0]])
    np.testing.assert_allclose(categorical(y, xentc.softmax(x)), categorical(y, x, from_logits=True),
                               rtol=1e-13)


# --------------------------------------------------------------------------
# Keras's semantics: renormalisation, clip bounds in the computation dtype
# --------------------------------------------------------------------------

def test_clip_bounds_are_rounded_to_the_computation_dtype():
    # a certain right answer costs -log(1 - eps): 1 - 1e-7 is 0.99999988 in
    # float32, -log of which is 1.1920929665620917e-07 (mpmath; Keras: 1.1920930e-07),
    # in float64, -log(1 - 1e-7) = 1.0000000494736474e-07 (mpmath)
    one = np.array([[1.0, 0.0, 0.0]])
    got = categorical(one.astype(np.float32), one.astype(np.float32))[0]
    np.testing.assert_array_max_ulp(got, np.float32(1.1920929665620917e-07), maxulp=1)
    np.testing.assert_allclose(categorical(one, one), 1.0000000494736474e-07, rtol=1e-15)
    # a certain wrong answer costs -log(eps): 16.118095650958320 (float64, mpmath),
    # 16.118095639272222 for float32(1e-7)
    np.testing.assert_allclose(categorical([[0.0, 1.0, 0.0]], one), 16.11809565095832, rtol=1e-15)
    np.testing.assert_allclose(categorical(np.float32([[0, 1, 0]]), one.astype(np.float32)),
                               16.118095639272222, rtol=1e-7)
    np.testing.assert_allclose(binary(1.0, 0.0), 16.11809565095832, rtol=1e-15)
    # binary: a probability 0 is clipped to 1e-7, and -log1p(-1e-7) = 1.0000000500000032881e-07
    np.testing.assert_allclose(binary(0.0, 0.0), 1.0000000500000032881e-07, rtol=1e-15)


def test_epsilon():
    np.testing.assert_allclose(binary(1.0, 0.0, epsilon=1e-3), -np.log(1e-3), rtol=1e-15)
    np.testing.assert_allclose(categorical([0.0, 1.0], [1.0, 0.0], epsilon=1e-3), -np.log(1e-3), rtol=1e-15)
    # epsilon = 0: the right answer with certainty costs 0 (0 * log 0 = 0, Keras: NaN) ...
    assert categorical([[1.0, 0.0]], [[1.0, 0.0]], epsilon=0.0)[0] == 0
    assert binary([1.0, 0.0], [1.0, 0.0], epsilon=0.0).tolist() == [0.0, 0.0]
    # ... and the wrong one +inf
    assert np.isposinf(binary([1.0, 0.0], [0.0, 1.0], epsilon=0.0)).all()
    assert np.isposinf(categorical([[0.0, 1.0]], [[1.0, 0.0]], epsilon=0.0)[0])


def test_rows_within_the_tolerance_are_renormalised_like_keras():
    # mpmath: -(0.25 log(0.5 / s) + 0.25 log(0.3 / s) + 0.5 log(0.2025 / s)), s = 1.005
    out = [0.5, 0.3, 0.2025, 0.0025]
    np.testing.assert_allclose(categorical([0.25, 0.25, 0.5, 0.0], out), 1.2777752339502810098,
                               rtol=1e-14)


@pytest.mark.parametrize("total", [1 - 0.99 * SUM_TOLERANCE, 1 + 0.99 * SUM_TOLERANCE])
def test_sum_just_inside_the_tolerance_is_accepted(total):
    out = np.array([[0.5, 0.25, 0.25]]) * total
    check_categorical(np.array([[0.0, 1.0, 0.0]]), out)


@pytest.mark.parametrize("total", [1 - 1.01 * SUM_TOLERANCE, 1 + 1.01 * SUM_TOLERANCE, 0.0, 2.0])
def test_sum_just_outside_the_tolerance_raises(total):
    out = np.array([[0.25, 0.25, 0.5], [0.5, 0.25, 0.25]])
    out[1] *= total
    with pytest.raises(ValueError, match=re.escape(f"output[1, :] sums to {total:.7g}, not 1")):
        categorical(np.eye(3)[:2], out)


def test_nan_is_not_an_error_and_stays_in_its_row_or_element():
    out = np.array([[0.5, 0.5], [np.nan, 0.5], [0.25, 0.75]])
    got = categorical(np.array([[1.0, 0], [1, 0], [0, 1]]), out)
    assert np.isnan(got[1]) and np.isfinite(got[[0, 2]]).all()
    got = binary(np.ones(3), np.array([0.5, np.nan, 0.25]))
    assert np.isnan(got[1]) and np.isfinite(got[[0, 2]]).all()


def test_from_logits_is_the_logits_functions():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3, 4, 5)) * 4).astype(np.float32)
    y = rng.dirichlet(np.ones(4), size=(3, 5)).transpose(0, 2, 1).astype(np.float32)
    assert np.array_equal(categorical(y, x, from_logits=True, axis=1),
                          xentc.softmax_cross_entropy_with_logits(y, x, 1, validate_labels=False))
    # logits are not checked (they are not probabilities), negative targets are allowed
    categorical(-y, x, from_logits=True, axis=1)
    z = (rng.random((3, 4, 5)) < 0.5).astype(np.float32)
    assert np.array_equal(binary(z, x, from_logits=True), xentc.sigmoid_cross_entropy_with_logits(z, x))
    # binary from logits keeps the tiny values (Keras's NumPy backend clips them to 1.19e-07)
    assert f"{binary(np.float32(0), np.float32(-20), from_logits=True):.7e}" == "2.0611537e-09"


def test_binary_log1p_of_small_probabilities():
    # target 0, output 1e-7: -log1p(-p), with p the float32 / float64 value
    # nearest 1e-7, is 1.000000061686101925e-07 / 1.0000000500000032881e-07
    # (mpmath); Keras's float32 log(1 - p) gives 1.1920929e-07 (only the rounding of 1 - p)
    got = binary(np.float32(0), np.float32(1e-7))
    np.testing.assert_array_max_ulp(got, np.float32(1.000000061686101925e-07), maxulp=2)
    got = binary(0.0, 1e-7)
    np.testing.assert_array_max_ulp(got, np.float64(1.0000000500000032881e-07), maxulp=2)


# --------------------------------------------------------------------------
# against the reference: dtypes, axes, layouts, shapes
# --------------------------------------------------------------------------

def random_distribution(rng, shape, axis, dtype, zeros=True):
    p = rng.random(shape) ** 3
    if zeros:
        p[rng.random(shape) < 0.2] = 0
    p += 1e-12
    p /= p.sum(axis=axis, keepdims=True)
    return p.astype(dtype)


DTYPES = [F16, F32, F64, np.dtype(np.longdouble)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,axis", [((6, 5), -1), ((6, 5), 0), ((2, 3, 4), 1), ((7,), 0),
                                        ((0, 3), -1), ((3, 1), -1), ((200, 300), -1)])
def test_categorical_matches_reference(dtype, shape, axis):
    rng = np.random.default_rng(1)
    out = random_distribution(rng, shape, axis, dtype)
    target = random_distribution(rng, shape, axis, dtype, zeros=True)
    got = check_categorical(target, out, axis)
    assert np.asarray(got).dtype == result_dtype(dtype)
    assert np.shape(got) == tuple(s for i, s in enumerate(shape) if i != axis % len(shape))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4), (7,), (), (0, 3), (300, 200)])
def test_binary_matches_reference(dtype, shape):
    rng = np.random.default_rng(2)
    out = rng.random(shape)
    out[out < 0.1] = 0.0
    out[out > 0.9] = 1.0
    target = (rng.random(shape) < 0.5) * 1.0
    got = check_binary(target, out.astype(dtype))
    assert np.asarray(got).dtype == result_dtype(dtype) and np.shape(got) == shape


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.bool_, np.int64])
def test_integer_probabilities(dtype):
    # one-hot integer outputs are probabilities: computed in float64
    out = np.eye(3, dtype=dtype)
    got = check_categorical(np.eye(3)[::-1], out)
    assert got.dtype == np.float64
    got = check_binary(np.eye(3), out)
    assert got.dtype == np.float64


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts(layout, memmap_dir):
    rng = np.random.default_rng(3)
    out = random_distribution(rng, (4, 5), 0, np.float32)
    target = random_distribution(rng, (4, 5), 0, np.float32)
    expected = categorical(target, out, axis=0)
    got = categorical(relayout(target, layout, memmap_dir), relayout(out, layout, memmap_dir), axis=0)
    if layout == "list":
        check_categorical(target.astype(np.float64), out.astype(np.float64), axis=0)
    else:
        assert np.array_equal(got, expected)
    expected = binary(target, out)
    got = binary(relayout(target, layout, memmap_dir), relayout(out, layout, memmap_dir))
    if layout == "list":
        check_binary(target.astype(np.float64), out.astype(np.float64))
    else:
        assert np.array_equal(got, expected)


def test_inputs_are_not_written():
    rng = np.random.default_rng(4)
    out = random_distribution(rng, (4, 4), -1, np.float64)
    ints = np.eye(4, dtype=np.int32)
    before = out.copy()
    categorical(ints, out)
    binary(out, out)
    binary(ints, ints)  # an integer copy is written, never the input
    assert np.array_equal(out, before) and np.array_equal(ints, np.eye(4, dtype=np.int32))


# --------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F32, F64])
def test_bit_identical_for_every_thread_count(dtype):
    rng = np.random.default_rng(5)
    out = random_distribution(rng, (3000, 40), -1, dtype)
    out[7, 3] = np.nan
    target = random_distribution(rng, (3000, 40), -1, dtype)
    base_c = categorical(target, out, num_threads=1)
    base_b = binary(target, out, num_threads=1)
    for nt in [2, 3, 7, None]:
        assert np.array_equal(categorical(target, out, num_threads=nt), base_c, equal_nan=True)
        assert np.array_equal(binary(target, out, num_threads=nt), base_b, equal_nan=True)
    check_categorical(target, out, num_threads=2)
    check_binary(target, out, num_threads=2)


# --------------------------------------------------------------------------
# properties (hypothesis)
# --------------------------------------------------------------------------

@given(data=st.data(), dtype=st.sampled_from([F16, F32, F64]), layout=st.sampled_from(LAYOUTS),
       epsilon=st.sampled_from([1e-7, 0.0, 1e-3, 0.5]))
def test_categorical_properties(data, dtype, layout, epsilon, memmap_dir):
    ndim = data.draw(st.integers(1, 3))
    shape = data.draw(array_shapes(min_dims=ndim, max_dims=ndim, min_side=1, max_side=5))
    axis = data.draw(st.integers(-ndim, ndim - 1))
    n = int(np.prod(shape))
    raw = np.array(data.draw(st.lists(st.one_of(st.floats(0, 1), st.just(0.0)), min_size=n,
                                      max_size=n)), dtype=np.float64).reshape(shape)
    raw += 1e-3
    out = (raw / raw.sum(axis=axis, keepdims=True)).astype(dtype)
    target = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.25, 1.0]), min_size=n, max_size=n)),
                      dtype=dtype).reshape(shape)
    note(f"out={out!r} target={target!r} axis={axis}")
    got = categorical(relayout(target, layout, memmap_dir), relayout(out, layout, memmap_dir),
                      axis=axis, epsilon=epsilon)
    if layout == "list":
        out, target = out.astype(np.float64), target.astype(np.float64)
    cd = compute_dtype(out.dtype)
    ref = reference.categorical_crossentropy(target, out, axis, epsilon, cd)
    assert_close(got, ref, result_dtype(out.dtype),
                 reference.error_scale_categorical_crossentropy(target, out, axis, epsilon, cd))


@given(data=st.data(), dtype=st.sampled_from([F16, F32, F64]), layout=st.sampled_from(LAYOUTS),
       epsilon=st.sampled_from([1e-7, 0.0, 1e-3]))
def test_binary_properties(data, dtype, layout, epsilon, memmap_dir):
    shape = data.draw(array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    n = int(np.prod(shape))
    values = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 1e-9, 1 - 1e-9, np.nan]))
    out = np.array(data.draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
    out = out.reshape(shape).astype(dtype)
    target = np.array(data.draw(st.lists(st.floats(-1, 2), min_size=n, max_size=n)),
                      dtype=np.float64).reshape(shape).astype(compute_dtype(dtype))
    note(f"out={out!r} target={target!r}")
    got = binary(relayout(target, layout, memmap_dir), relayout(out, layout, memmap_dir),
                 epsilon=epsilon)
    if layout == "list" and out.size:  # (an empty array stays an array)
        out = out.astype(np.float64)
    cd = compute_dtype(out.dtype)
    ref = reference.binary_crossentropy(target, out, epsilon, cd)
    assert_close(got, ref, result_dtype(out.dtype),
                 reference.error_scale_binary_crossentropy(target, out, epsilon, cd))


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

LOGITS_HINT = "pass from_logits=True"


@pytest.mark.parametrize("output,axis,where", [
    ([[0.2, 0.8], [1.5, -0.5]], -1, "output[1, 1] = -0.5 is negative"),
    ([[1.5, 0.5], [-0.5, 0.5]], 0, "output[1, 0] = -0.5 is negative"),
    ([[[0.5, 0.5]], [[-2.0, 3.0]]], 2, "output[1, 0, 0] = -2.0 is negative"),
    ([[0.5, 0.5], [3.0, 4.25]], -1, "output[1, :] sums to 7.25, not 1"),
    ([[0.5, 0.5, 0.0], [3.0, 4.25, 0.0]], 0, "output[:, 0] sums to 3.5, not 1"),
    ([[0.5, 0.5], [np.inf, 0.0]], -1, "output[1, :] sums to inf, not 1"),
    ([[0.0, 0.0], [1.0, 0.0]], -1, "output[0, :] sums to 0, not 1"),
    ([2.0, 3.0, -1.0], 0, "output[2] = -1.0 is negative"),
])
def test_categorical_output_is_not_a_distribution(output, axis, where):
    out = np.array(output)
    before = out.copy()
    with pytest.raises(ValueError) as exc:
        categorical(np.zeros(out.shape), out, axis=axis)
    msg = str(exc.value)
    assert where in msg and LOGITS_HINT in msg and "Keras renormalises" in msg, msg
    assert f"within {SUM_TOLERANCE:g}" in msg
    assert np.array_equal(out, before)


def test_categorical_logits_passed_as_probabilities():
    # the mistake the check is for: logits with the default from_logits=False
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"output\[0, :\] sums to 3\.1, not 1.*from_logits=True"):
        categorical([[1.0, 0, 0], [0, 1.0, 0]], logits)
    categorical([[1.0, 0, 0], [0, 1.0, 0]], logits, from_logits=True)


@pytest.mark.parametrize("output,where", [
    ([0.5, 2.5], "output[1] = 2.5 is outside [0, 1]"),
    ([[0.5, 0.1], [0.2, -0.25]], "output[1, 1] = -0.25 is outside [0, 1]"),
    (1.5, "output = 1.5 is outside [0, 1]"),
    ([[[0.5, np.inf]]], "output[0, 0, 1] = inf is outside [0, 1]"),
    ([0.0, 1.0, 1.0000001], "output[2] = 1.0000001 is outside [0, 1]"),
])
def test_binary_output_outside_0_1(output, where):
    out = np.array(output)
    with pytest.raises(ValueError) as exc:
        binary(np.zeros(out.shape), out)
    msg = str(exc.value)
    assert where in msg and LOGITS_HINT in msg and "Keras clips" in msg, msg


def test_binary_float16_value_is_named_as_given():
    with pytest.raises(ValueError, match=re.escape("output[1] = 3.0 is outside [0, 1]")):
        binary(np.zeros(2), np.array([0.5, 3.0], np.float16))


@pytest.mark.parametrize("func", [categorical, binary], ids=["categorical", "binary"])
def test_shape_mismatch_names_both_shapes(func):
    with pytest.raises(ValueError, match=re.escape(
            "target and output must have the same shape, got target.shape=(3, 5) and "
            "output.shape=(3, 4)")):
        func(np.zeros((3, 5)), np.full((3, 4), 0.25))
    with pytest.raises(ValueError, match=re.escape("target.shape=(3, 5)")):
        func(np.zeros((3, 5)), np.full((3, 4), 0.25), from_logits=True)


@pytest.mark.parametrize("func", [categorical, binary], ids=["categorical", "binary"])
@pytest.mark.parametrize("kwargs,error,message", [
    (dict(epsilon=0.7), ValueError, "epsilon must be in [0, 0.5], got epsilon=0.7"),
    (dict(epsilon=-1e-7), ValueError, "epsilon must be in [0, 0.5], got epsilon=-1e-07"),
    (dict(epsilon=float("nan")), ValueError, "epsilon must be in [0, 0.5], got epsilon=nan"),
    (dict(epsilon="1e-7"), TypeError, "epsilon must be a real number in [0, 0.5], got '1e-7' of type str"),
    (dict(epsilon=True), TypeError, "epsilon must be a real number"),
    (dict(from_logits=1), TypeError, "from_logits must be True or False, got 1"),
    (dict(num_threads=0), ValueError, "num_threads must be a positive integer or None"),
    (dict(output=np.full(2, 0.5, complex)), TypeError,
     "output must be an array of real floating-point or integer numbers, got output.dtype=complex128"),
    (dict(target=np.array(["a", "b"])), TypeError, "target must be an array of real"),
])
def test_argument_errors(func, kwargs, error, message):
    args = dict(target=np.array([1.0, 0.0]), output=np.array([0.5, 0.5]))
    args.update(kwargs)
    with pytest.raises(error, match=re.escape(message)):
        func(args.pop("target"), args.pop("output"), **args)


@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_shape_errors(from_logits):
    with pytest.raises(ValueError, match=re.escape(
            "output must have at least one dimension (the classes), got a 0-d array")):
        categorical(1.0, 1.0, from_logits=from_logits)
    with pytest.raises(ValueError, match=re.escape(
            "output has 0 classes along axis 1 (output.shape=(3, 0))")):
        categorical(np.zeros((3, 0)), np.zeros((3, 0)), from_logits=from_logits)
    with pytest.raises(AxisError, match="output"):
        categorical(np.zeros((3, 2)), np.full((3, 2), 0.5), axis=2, from_logits=from_logits)
    with pytest.raises(TypeError, match="axis must be an integer"):
        categorical(np.zeros((3, 2)), np.full((3, 2), 0.5), axis=1.0, from_logits=from_logits)


# --------------------------------------------------------------------------
# Keras (recorded by tests/data/record_binary.py with its NumPy, TensorFlow and
# PyTorch backends)
# --------------------------------------------------------------------------

def _recorded(kind):
    if not DATA.exists():
        return []
    return json.loads(DATA.read_text())[kind]


def assert_agrees_with_keras(ours, theirs, dtype, what):
    """Keras computes everything in the input dtype: in float32 its normalisation,
    its log(1 - p) and its float32 sums are off by up to a few ulps of 1
    (absolute); in float64 by a few ulps of the loss."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    atol, rtol = (3e-7, 2e-6) if dtype == F32 else (1e-15, 1e-12)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.parametrize("case", _recorded("categorical"), ids=lambda c: f"{c['name']}-{c['dtype']}")
def test_categorical_agrees_with_keras(case):
    dtype = np.dtype(case["dtype"])
    target, output = np.array(case["target"], dtype), np.array(case["output"], dtype)
    ours = categorical(target, output, from_logits=case["from_logits"], axis=case["axis"])
    for backend, theirs in case["results"].items():
        assert_agrees_with_keras(ours, theirs, dtype, backend)


@pytest.mark.parametrize("case", _recorded("binary"), ids=lambda c: f"{c['name']}-{c['dtype']}")
def test_binary_agrees_with_keras(case):
    dtype = np.dtype(case["dtype"])
    target, output = np.array(case["target"], dtype), np.array(case["output"], dtype)
    ours = binary(target, output, from_logits=case["from_logits"])
    for backend, theirs in case["results"].items():
        theirs = np.array(theirs)
        if case["from_logits"] and backend == "keras-numpy":
            # Keras's NumPy backend applies sigmoid, then the clip: at x = -20, z = 0 it
            # gives 1.19e-07 (float32) instead of 2.06e-09, at x = 40, z = 0 about 16
            # instead of 40; the other backends compute the logits form, as here
            capped = np.abs(np.array(case["output"])) >= 20
            assert (np.abs(theirs[capped] - ours[capped]) > 1e-8).all()
            assert theirs.max() < 16.2
            theirs[capped] = ours[capped]
        assert_agrees_with_keras(ours, theirs, dtype, backend)
