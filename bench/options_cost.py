"""What cross_entropy's options cost: xentc.cross_entropy with class weights,
ignore_index and label smoothing all on, against the plain sparse kernel on
the same inputs, in one process (medians of interleaved runs).

    python bench/options_cost.py [--repeats N] [--threads N] [--quick]

Target (from the project's issue): at most 1.3x the plain sparse kernel's time.
"""
import argparse
import time

import numpy as np

import xentc

SHAPES = [(65536, 10), (16384, 1000), (2048, 32000), (256, 256000)]
QUICK_SHAPES = [(8192, 10), (2048, 1000)]
TARGET = 1.3


def medians(calls, repeats):
    """Median time of each call, the calls interleaved so that machine noise hits all alike."""
    times = [[] for _ in calls]
    for call in calls:
        call()  # warm up
    for _ in range(repeats):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            call()
            times[i].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per call (median)")
    parser.add_argument("--threads", type=int, default=None, help="num_threads (default: OpenMP's)")
    parser.add_argument("--quick", action="store_true", help="small shapes, 3 repeats")
    args = parser.parse_args(argv)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    repeats = 3 if args.quick else args.repeats
    config = xentc.show_config(file=False)
    print(f"xentc {config['version']} ({config['simd']}, OpenMP {config['openmp']}), float32, "
          f"threads={args.threads or config['max_threads']}, median of {repeats}")
    print(f"{'shape':>15} {'grad':>5} {'sparse ms':>10} {'all options ms':>15} {'ratio':>6}")
    rng = np.random.default_rng(0)
    worst = 0.0
    for n, c in shapes:
        x = rng.normal(scale=3.0, size=(n, c)).astype(np.float32)
        labels = rng.integers(0, c, n)
        target = labels.copy()
        target[::7] = -100                                  # every 7th row ignored
        weight = rng.uniform(0.5, 2.0, c).astype(np.float32)
        for grad in (False, True):
            plain = lambda: xentc.sparse_softmax_cross_entropy_with_logits(  # noqa: E731
                labels, x, return_grad=grad, num_threads=args.threads)
            options = lambda: xentc.cross_entropy(  # noqa: E731
                x, target, weight=weight, ignore_index=-100, label_smoothing=0.1,
                return_grad=grad, num_threads=args.threads)
            t_plain, t_options = medians([plain, options], repeats)
            ratio = t_options / t_plain
            worst = max(worst, ratio)
            print(f"{n:>7} x {c:<6} {str(grad):>5} {t_plain * 1e3:10.2f} {t_options * 1e3:15.2f} "
                  f"{ratio:6.2f}")
    verdict = "PASS" if worst <= TARGET else "FAIL"
    print(f"{verdict}: all options cost at most {worst:.2f}x the plain sparse kernel "
          f"(target {TARGET}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
