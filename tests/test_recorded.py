"""xentc against numbers recorded from PyTorch, TensorFlow and optax
(tests/data/record_softmax.py wrote tests/data/softmax_reference.json; the
frameworks are not needed here).  Where a framework is known to be wrong,
the test says so and checks xentc against the float64 reference instead."""
import json
from pathlib import Path

import numpy as np
import pytest

import reference
import xentc

DATA = Path(__file__).resolve().parent / "data" / "softmax_reference.json"
RECORD = json.loads(DATA.read_text()) if DATA.exists() else None
pytestmark = pytest.mark.skipif(RECORD is None, reason="tests/data/softmax_reference.json is missing")


def tol(dtype):
    return dict(rtol=2e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-11, atol=1e-13)


def cases(name):
    return RECORD[name] if RECORD else []


@pytest.mark.parametrize("case", cases("torch_cross_entropy"),
                         ids=lambda c: f"{c['dtype']}-{c['kind']}-{c['reduction']}-w{c['weight'] is not None}-eps{c['label_smoothing']}")
def test_cross_entropy_equals_recorded_pytorch(case):
    dtype = case["dtype"]
    x = np.array(case["logits"], dtype)
    target = np.array(case["target"], np.int64 if case["kind"] == "index" else dtype)
    weight = None if case["weight"] is None else np.array(case["weight"], dtype)
    loss, grad = xentc.cross_entropy(x, target, weight=weight, reduction=case["reduction"],
                                     label_smoothing=case["label_smoothing"], return_grad=True)
    np.testing.assert_allclose(loss, np.array(case["loss"]), **tol(dtype))
    np.testing.assert_allclose(grad, np.array(case["grad"]), **tol(dtype))


@pytest.mark.parametrize("case", cases("tf_softmax_xent"), ids=lambda c: f"{c['dtype']}-sparse{c['sparse']}")
def test_softmax_cross_entropy_equals_recorded_tensorflow(case):
    dtype = case["dtype"]
    x = np.array(case["logits"], dtype)
    labels = np.array(case["labels"])
    tf_loss, tf_grad = np.array(case["loss"]), np.array(case["grad"])
    if case["sparse"]:
        loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(labels, x, return_grad=True)
        np.testing.assert_allclose(loss, tf_loss, **tol(dtype))
        np.testing.assert_allclose(grad, tf_grad, **tol(dtype))
        return
    dense = np.eye(x.shape[1], dtype=dtype)[labels]
    loss, grad = xentc.softmax_cross_entropy_with_logits(dense, x, return_grad=True)
    # row 0 has a -inf logit under a label of 0: TensorFlow computes 0 * inf = NaN there,
    # xentc uses 0 log 0 = 0 and matches the float64 reference
    assert np.isnan(tf_loss[0])
    np.testing.assert_allclose(loss[1:], tf_loss[1:], **tol(dtype))
    np.testing.assert_allclose(grad[1:], tf_grad[1:], **tol(dtype))
    want = reference.dense_xent(dense.astype(np.float64), x.astype(np.float64))
    want = want[0] if isinstance(want, tuple) else want
    np.testing.assert_allclose(loss[0], np.asarray(want)[0], **tol(dtype))
    assert np.isfinite(loss[0]) and np.all(np.isfinite(grad[0]))


@pytest.mark.parametrize("case", cases("optax_where"), ids=lambda c: f"sparse{c['sparse']}")
def test_where_equals_recorded_optax(case):
    x = np.array(case["logits"])
    where = np.array(case["where"])
    if case["sparse"]:
        loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(np.array(case["labels"]), x,
                                                                    where=where, return_grad=True)
    else:
        loss, grad = xentc.softmax_cross_entropy_with_logits(np.array(case["dense"]), x, where=where,
                                                             return_grad=True)
    np.testing.assert_allclose(loss, np.array(case["loss"]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, np.array(case["grad"]), rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------
# live comparisons, when the frameworks are importable (not in CI)
# --------------------------------------------------------------------------

def test_live_tensorflow_sparse_and_dense():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(11)
    x = (rng.normal(size=(64, 37)) * 3).astype(np.float32)
    labels = rng.integers(0, 37, 64)
    dense = xentc.softmax(rng.normal(size=(64, 37)).astype(np.float32))
    for sparse in (True, False):
        xv = tf.Variable(x)
        with tf.GradientTape() as tape:
            loss = (tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=xv) if sparse
                    else tf.nn.softmax_cross_entropy_with_logits(labels=dense, logits=xv))
            total = tf.reduce_sum(loss)
        tf_grad = tape.gradient(total, xv).numpy()
        ours = (xentc.sparse_softmax_cross_entropy_with_logits(labels, x, return_grad=True) if sparse
                else xentc.softmax_cross_entropy_with_logits(dense, x, return_grad=True))
        np.testing.assert_allclose(ours[0], loss.numpy(), **tol("float32"))
        np.testing.assert_allclose(ours[1], tf_grad, **tol("float32"))


def test_live_optax_where():
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(12)
    x = rng.normal(size=(16, 9)).astype(np.float32)
    where = rng.random((16, 9)) < 0.6
    labels = rng.integers(0, 9, 16)
    want = np.asarray(optax.softmax_cross_entropy_with_integer_labels(
        jnp.asarray(x), jnp.asarray(labels), where=jnp.asarray(where)))
    got = xentc.sparse_softmax_cross_entropy_with_logits(labels, x, where=where)
    np.testing.assert_allclose(got, want, **tol("float32"))
