"""Record what PyTorch, TensorFlow and Keras return for xentc's sigmoid and
probability-space losses, into binary_reference.json beside this file.

Run it with the benchmark venv, which has the frameworks (see bench/run.py):

    .bench-venv/bin/python tests/data/record_binary.py

tests/test_sigmoid.py and tests/test_probability.py compare xentc with the JSON
(they need none of the frameworks).  Inputs are written out in full, so the
tests do not depend on this script's random generator.  Every value is a float
of the case's dtype, stored exactly (float32 values are exact in float64 JSON
numbers); NaN and infinities use Python's json extension (NaN, Infinity).

Recorded:
  sigmoid:     tf.nn.sigmoid_cross_entropy_with_logits, tf.nn.weighted_cross_entropy_with_logits
               and torch.nn.functional.binary_cross_entropy_with_logits(reduction="none",
               pos_weight=...), loss and the gradient of loss.sum() (GradientTape, autograd)
  categorical: keras.src.backend.{numpy,tensorflow,torch}.nn.categorical_crossentropy
  binary:      keras.src.backend.{numpy,tensorflow,torch}.nn.binary_crossentropy
"""
import importlib.metadata
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
from keras.src.backend.numpy import nn as keras_numpy  # noqa: E402
from keras.src.backend.tensorflow import nn as keras_tf  # noqa: E402
from keras.src.backend.torch import nn as keras_torch  # noqa: E402

OUT = Path(__file__).resolve().with_name("binary_reference.json")


def as_list(a, dtype):
    return np.asarray(a, dtype=dtype).astype(np.float64).tolist()


def tf_sigmoid(labels, logits, pos_weight):
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        if pos_weight is None:
            loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.constant(labels), logits=x)
        else:
            loss = tf.nn.weighted_cross_entropy_with_logits(
                labels=tf.constant(labels), logits=x, pos_weight=tf.constant(pos_weight))
        total = tf.reduce_sum(loss)
    return loss.numpy(), tape.gradient(total, x).numpy()


def torch_sigmoid(labels, logits, pos_weight):
    x = torch.tensor(logits, requires_grad=True)
    q = None if pos_weight is None else torch.tensor(pos_weight)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        x, torch.tensor(labels), reduction="none", pos_weight=q)
    loss.sum().backward()
    return loss.detach().numpy(), x.grad.numpy()


def sigmoid_cases(rng):
    cases = []
    x = np.array([[-20.0, -3.0, -0.5, 0.0, 0.5, 3.0, 20.0],
                  [20.0, 3.0, 0.5, 0.0, -0.5, -3.0, -20.0]])
    z = np.array([[0.0, 1.0, 0.3, 0.5, 1.0, 0.0, 1.0],
                  [0.0, 1.0, 0.7, 1.0, 0.0, 0.25, 0.0]])
    q = np.array([1.0, 2.0, 0.5, 3.0, 1.0, 4.0, 10.0])
    for dtype in ("float32", "float64"):
        cases.append(("hand values", dtype, x, z, None))
        cases.append(("hand values, pos_weight (C,)", dtype, x, z, q))
        xr = rng.normal(size=(4, 5)) * 4
        zr = rng.random((4, 5))
        zr[rng.random((4, 5)) < 0.4] = 1.0
        cases.append(("random soft labels", dtype, xr, zr, None))
        cases.append(("random, pos_weight (C,)", dtype, xr, zr, rng.random(5) * 3))
        cases.append(("random, pos_weight (N, 1)", dtype, xr, zr, rng.random((4, 1)) * 3))
    # where the frameworks and xentc differ (see the docstring's Notes)
    cases.append(("special values", "float32",
                  np.array([-np.inf, np.inf, -np.inf, np.inf, -20.0, 20.0]),
                  np.array([0.0, 1.0, 1.0, 0.0, 0.0, 1.0]), None))
    out = []
    for name, dtype, x, z, q in cases:
        x, z = np.asarray(x, dtype), np.asarray(z, dtype)
        q = None if q is None else np.asarray(q, dtype)
        results = {}
        with np.errstate(all="ignore"):
            for fw, fn in (("tensorflow", tf_sigmoid), ("torch", torch_sigmoid)):
                loss, grad = fn(z, x, q)
                results[fw] = {"loss": as_list(loss, dtype), "grad": as_list(grad, dtype)}
        out.append({"name": name, "dtype": dtype, "logits": as_list(x, dtype), "labels": as_list(z, dtype),
                    "pos_weight": None if q is None else as_list(q, dtype), "results": results})
    return out


def keras_all(fn_name, target, output, **kwargs):
    results = {}
    for backend, module, conv in (
            ("keras-numpy", keras_numpy, np.asarray),
            ("keras-tensorflow", keras_tf, tf.constant),
            ("keras-torch", keras_torch, torch.tensor)):
        with np.errstate(all="ignore"):
            res = getattr(module, fn_name)(conv(target), conv(output), **kwargs)
        results[backend] = np.asarray(res.numpy() if hasattr(res, "numpy") else res).tolist()
    return results


def probability_cases(rng):
    categorical, binary = [], []
    for dtype in ("float32", "float64"):
        # rows within xentc's tolerance: exact, off by 0.5 %, confident (clipped at both ends)
        output = np.array([[0.7, 0.1, 0.1, 0.1],
                           [0.73, 0.26, 0.005, 0.005],
                           [0.5, 0.3, 0.2025, 0.0025],
                           [1.0, 0.0, 0.0, 0.0],
                           [0.25, 0.25, 0.25, 0.25]], dtype)
        target = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0.2, 0.3, 0.4, 0.1],
                           [1, 0, 0, 0], [0, 0, 0, 1]], dtype)
        categorical.append({"name": "probabilities", "dtype": dtype, "axis": -1, "from_logits": False,
                            "target": as_list(target, dtype), "output": as_list(output, dtype),
                            "results": keras_all("categorical_crossentropy", target, output)})
        logits = np.asarray(rng.normal(size=(3, 6)) * 3, dtype)
        soft = np.asarray(rng.dirichlet(np.ones(6), size=3), dtype)
        categorical.append({"name": "logits", "dtype": dtype, "axis": -1, "from_logits": True,
                            "target": as_list(soft, dtype), "output": as_list(logits, dtype),
                            "results": keras_all("categorical_crossentropy", soft, logits, from_logits=True)})
        p = np.asarray(rng.dirichlet(np.ones(3), size=4).T, dtype)  # classes on axis 0
        t = np.asarray(np.eye(3)[:, [0, 2, 1, 1]], dtype)
        categorical.append({"name": "probabilities, axis 0", "dtype": dtype, "axis": 0, "from_logits": False,
                            "target": as_list(t, dtype), "output": as_list(p, dtype),
                            "results": keras_all("categorical_crossentropy", t, p, axis=0)})

        output = np.array([[0.0, 1.0, 1e-9, 1e-7, 0.5, 0.999999, 0.3],
                           [1.0, 0.0, 0.9, 0.1, 0.5, 1e-4, 0.7]], dtype)
        target = np.array([[0, 1, 0, 1, 1, 1, 0.3], [0, 1, 1, 0, 0.5, 0, 1]], dtype)
        binary.append({"name": "probabilities", "dtype": dtype, "from_logits": False,
                       "target": as_list(target, dtype), "output": as_list(output, dtype),
                       "results": keras_all("binary_crossentropy", target, output)})
        logits = np.asarray(np.array([[-20.0, -3.0, 0.0, 2.5, 20.0, 40.0]]), dtype)
        target = np.asarray(np.array([[0, 1, 0.5, 1, 1, 0]]), dtype)
        binary.append({"name": "logits", "dtype": dtype, "from_logits": True,
                       "target": as_list(target, dtype), "output": as_list(logits, dtype),
                       "results": keras_all("binary_crossentropy", target, logits, from_logits=True)})
    return categorical, binary


def main():
    rng = np.random.default_rng(3)
    categorical, binary = probability_cases(rng)
    doc = {
        "meta": {
            "recorded_by": "tests/data/record_binary.py",
            "python": sys.version.split()[0],
            "versions": {d: importlib.metadata.version(d)
                         for d in ("numpy", "torch", "tensorflow-cpu", "keras")},
        },
        "sigmoid": sigmoid_cases(rng),
        "categorical": categorical,
        "binary": binary,
    }
    # one case per line: small, and a re-recording shows as a readable diff
    parts = [f' "meta": {json.dumps(doc["meta"])}']
    for key in ("sigmoid", "categorical", "binary"):
        cases = ",\n".join("  " + json.dumps(case) for case in doc[key])
        parts.append(f' "{key}": [\n{cases}\n ]')
    OUT.write_text("{\n" + ",\n".join(parts) + "\n}\n")
    print(f"wrote {OUT}: {len(doc['sigmoid'])} sigmoid, {len(categorical)} categorical, "
          f"{len(binary)} binary cases")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
