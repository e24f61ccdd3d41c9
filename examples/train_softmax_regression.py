"""Train a softmax (multinomial logistic) regression in NumPy with xentc.

xentc returns the loss and writes the gradient with respect to the logits in
one fused pass, here in place (grad_out=logits: no extra N x C array).  The
data are synthetic Gaussian clusters, so the script runs anywhere in seconds:

    python examples/train_softmax_regression.py [--rows N] [--classes C] [--steps K]
"""
import argparse
import time

import numpy as np

import xentc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000, help="training rows (default 20000)")
    parser.add_argument("--classes", type=int, default=10, help="classes (default 10)")
    parser.add_argument("--features", type=int, default=32, help="features (default 32)")
    parser.add_argument("--steps", type=int, default=100, help="gradient steps (default 100)")
    parser.add_argument("--lr", type=float, default=0.5, help="learning rate (default 0.5)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    centers = rng.normal(scale=0.4, size=(args.classes, args.features)).astype(np.float32)
    labels = rng.integers(0, args.classes, size=args.rows)
    x = (centers[labels] + rng.normal(size=(args.rows, args.features))).astype(np.float32)
    w = np.zeros((args.features, args.classes), np.float32)
    b = np.zeros(args.classes, np.float32)

    print(f"xentc {xentc.__version__} (OpenMP: {xentc.openmp_enabled()}): "
          f"{args.rows} rows, {args.features} features, {args.classes} classes")
    start = time.perf_counter()
    for step in range(args.steps + 1):
        logits = x @ w + b
        accuracy = np.mean(np.argmax(logits, axis=1) == labels)
        # loss per row; the gradient of their sum overwrites `logits`
        loss, grad = xentc.sparse_softmax_cross_entropy_with_logits(labels, logits, grad_out=logits)
        grad /= args.rows  # gradient of the mean loss
        w -= args.lr * (x.T @ grad)
        b -= args.lr * grad.sum(axis=0)
        if step % max(1, args.steps // 10) == 0:
            print(f"step {step:4d}  mean loss {loss.mean():.6f}  accuracy {accuracy:.4f}")
    print(f"{args.steps} steps in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
