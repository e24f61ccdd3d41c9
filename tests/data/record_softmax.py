"""Record what PyTorch, TensorFlow and optax return for xentc's softmax
cross-entropies, into softmax_reference.json beside this file.

Run it with the benchmark venv, which has the frameworks (see bench/run.py):

    .bench-venv/bin/python tests/data/record_softmax.py

tests/test_recorded.py compares xentc with the JSON (it needs none of the
frameworks).  Inputs are stored in full; NaN and infinities use Python's json
extension.  Recorded:
  torch:  F.cross_entropy (every reduction, weight, ignore_index, label
          smoothing, index and probability targets) and the autograd gradient
          of the reduced loss
  tf:     tf.nn.softmax_cross_entropy_with_logits and
          tf.nn.sparse_softmax_cross_entropy_with_logits, loss and the gradient
          of loss.sum()
  optax:  softmax_cross_entropy(_with_integer_labels) with where= masks
"""
import importlib.metadata
import itertools
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

jax.config.update("jax_enable_x64", True)
OUT = Path(__file__).resolve().with_name("softmax_reference.json")


def listed(a):
    return np.asarray(a, dtype=np.float64).tolist()


def torch_cases(rng):
    cases = []
    for dtype, kind, reduction, weighted, eps, ignore in itertools.product(
            ["float32", "float64"], ["index", "probability"], ["mean", "sum", "none"],
            [False, True], [0.0, 0.2], [False, True]):
        if kind == "probability" and ignore:
            continue
        n, c = 5, 4
        x = (rng.normal(size=(n, c)) * 3).astype(dtype)
        if kind == "index":
            target = rng.integers(0, c, n)
            if ignore:
                target[[1, 3]] = -100
        else:
            e = np.exp(rng.normal(size=(n, c)))
            target = (e / e.sum(1, keepdims=True)).astype(dtype)
        weight = rng.uniform(0.5, 2.0, c).astype(dtype) if weighted else None
        xt = torch.tensor(x, requires_grad=True)
        loss = torch.nn.functional.cross_entropy(
            xt, torch.tensor(target), weight=None if weight is None else torch.tensor(weight),
            reduction=reduction, label_smoothing=eps)
        loss.sum().backward()
        cases.append(dict(dtype=dtype, kind=kind, reduction=reduction, label_smoothing=eps,
                          logits=listed(x), target=target.tolist() if kind == "index" else listed(target),
                          weight=None if weight is None else listed(weight),
                          loss=listed(loss.detach().numpy()), grad=listed(xt.grad.numpy())))
    return cases


def tf_cases(rng):
    cases = []
    for dtype in ["float32", "float64"]:
        n, c = 6, 5
        x = (rng.normal(size=(n, c)) * 3).astype(dtype)
        x[0, 1] = -np.inf   # masked logit with label 0: TF returns NaN, xentc 0
        labels = rng.integers(0, c, n)
        labels[0] = 0
        dense = np.eye(c, dtype=dtype)[labels]
        for sparse in (False, True):
            xv = tf.Variable(x)
            with tf.GradientTape() as tape:
                if sparse:
                    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=xv)
                else:
                    loss = tf.nn.softmax_cross_entropy_with_logits(labels=dense, logits=xv)
                total = tf.reduce_sum(loss)
            grad = tape.gradient(total, xv)
            cases.append(dict(dtype=dtype, sparse=sparse, logits=listed(x), labels=labels.tolist(),
                              loss=listed(loss.numpy()), grad=listed(grad.numpy())))
    return cases


def optax_cases(rng):
    cases = []
    n, c = 6, 5
    x = rng.normal(size=(n, c)) * 2
    where = rng.random((n, c)) < 0.7
    where[2] = False
    labels = rng.integers(0, c, n)
    e = np.exp(rng.normal(size=(n, c)))
    dense = e / e.sum(1, keepdims=True)
    for sparse in (False, True):
        if sparse:
            def f(z):
                return optax.softmax_cross_entropy_with_integer_labels(z, jnp.asarray(labels), where=jnp.asarray(where))
        else:
            def f(z):
                return optax.softmax_cross_entropy(z, jnp.asarray(dense), where=jnp.asarray(where))
        loss = f(jnp.asarray(x))
        grad = jax.grad(lambda z: f(z).sum())(jnp.asarray(x))
        cases.append(dict(sparse=sparse, logits=listed(x), where=where.tolist(), labels=labels.tolist(),
                          dense=listed(dense), loss=listed(loss), grad=listed(grad)))
    return cases


def main():
    rng = np.random.default_rng(20261122)
    record = {
        "versions": {name: importlib.metadata.version(name)
                     for name in ("torch", "tensorflow-cpu", "jax", "optax", "numpy")},
        "torch_cross_entropy": torch_cases(rng),
        "tf_softmax_xent": tf_cases(rng),
        "optax_where": optax_cases(rng),
    }
    OUT.write_text(json.dumps(record, indent=None, separators=(",", ":")))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
