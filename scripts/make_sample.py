"""Write xentc/data/sample.npz, the sample `xentc score` scores when given no files.

Real-looking model outputs, small enough to ship in the package: the held-out
logits of a softmax regression trained (with xentc's fused loss and gradient)
on synthetic data with confusable classes, and their labels.

    python scripts/make_sample.py [--out xentc/data/sample.npz]

The data: 50 classes in 10 groups of 5 similar classes (cluster centres close
within a group), 64 features with Gaussian noise; 4,000 training rows, and
1,000 held-out rows whose logits are saved (float32, shape (1000, 50)) with
their labels (int64, shape (1000,)).  The model is trained long enough on few
rows to be somewhat overconfident, as real models are, so the calibration
error is not 0.  Seeded: the same file on every run (up to the last bits of
the SIMD path's float32 arithmetic).
"""
import argparse
from pathlib import Path

import numpy as np

import xentc

ROWS_TRAIN, ROWS_TEST, CLASSES, GROUPS, FEATURES = 4000, 1000, 50, 10, 64


def make(seed=0, steps=300, lr=0.5):
    rng = np.random.default_rng(seed)
    groups = rng.normal(scale=1.0, size=(GROUPS, FEATURES))
    centres = (np.repeat(groups, CLASSES // GROUPS, axis=0)
               + rng.normal(scale=0.45, size=(CLASSES, FEATURES))).astype(np.float32)
    # a skewed class frequency, as in real label sets
    freq = rng.dirichlet(np.full(CLASSES, 2.0))

    def draw(n):
        y = rng.choice(CLASSES, size=n, p=freq)
        return (centres[y] + rng.normal(scale=2.4, size=(n, FEATURES))).astype(np.float32), y

    x_train, y_train = draw(ROWS_TRAIN)
    x_test, y_test = draw(ROWS_TEST)
    w = np.zeros((FEATURES, CLASSES), np.float32)
    b = np.zeros(CLASSES, np.float32)
    for _ in range(steps):
        logits = x_train @ w + b
        # the gradient of the summed loss, written over the logits in place
        xentc.sparse_softmax_cross_entropy_with_logits(y_train, logits, grad_out=logits)
        logits /= ROWS_TRAIN
        w -= lr * (x_train.T @ logits)
        b -= lr * logits.sum(axis=0)
    return (x_test @ w + b).astype(np.float32), y_test.astype(np.int64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1] / "xentc" / "data" / "sample.npz"
    parser.add_argument("--out", type=Path, default=default, help=f"output file (default {default})")
    args = parser.parse_args(argv)
    logits, labels = make()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, logits=logits, labels=labels)
    r = xentc.score(logits, labels)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB): {logits.shape[0]} rows x "
          f"{logits.shape[1]} classes; accuracy {r.accuracy:.3f}, top-5 {r.top_k_accuracy[5]:.3f}, "
          f"mean loss {r.mean_loss:.3f}, ECE {r.expected_calibration_error:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
