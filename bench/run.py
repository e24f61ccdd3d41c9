"""Time xentc against plain NumPy on the four cross-entropy tasks.

    python bench/run.py [--repeats N] [--threads N] [--quick]

For each shape (rows x classes, float32) and task (dense loss, dense loss+grad,
sparse loss, sparse loss+grad) it checks both implementations against a float64
reference, then prints the median time of N runs, the effective bandwidth (bytes
the task must move / time) and xentc's speed-up over NumPy measured in the same
run.  This is the baseline the speed work (vectorised exp, ISA dispatch, more
peers) builds on; numbers depend on the machine and on what else it is running.
"""
import argparse
import platform
import time

import numpy as np

import xentc

SHAPES = [(65536, 10), (16384, 1000), (2048, 32000), (256, 256000)]
QUICK_SHAPES = [(8192, 10), (2048, 1000)]
# bytes moved per element: logits (+ dense labels) read, gradient written
TASKS = {"dense loss": 8, "dense loss+grad": 12, "sparse loss": 4, "sparse loss+grad": 8}


def numpy_dense(labels, logits, grad):
    m = logits.max(axis=1, keepdims=True)
    z = logits - m
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    loss = np.log(s)[:, 0] * labels.sum(axis=1) - (labels * z).sum(axis=1)
    if not grad:
        return loss
    return loss, e / s * labels.sum(axis=1, keepdims=True) - labels


def numpy_sparse(labels, logits, grad):
    m = logits.max(axis=1, keepdims=True)
    z = logits - m
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = np.log(s)[:, 0] - z[rows, labels]
    if not grad:
        return loss
    g = e / s
    g[rows, labels] -= 1
    return loss, g


def xentc_call(task, threads):
    fn = (xentc.softmax_cross_entropy_with_logits if task.startswith("dense")
          else xentc.sparse_softmax_cross_entropy_with_logits)
    grad = task.endswith("grad")
    return lambda labels, logits: fn(labels, logits, return_grad=grad, num_threads=threads)


def numpy_call(task):
    fn = numpy_dense if task.startswith("dense") else numpy_sparse
    grad = task.endswith("grad")
    return lambda labels, logits: fn(labels, logits, grad)


def median_time(fn, args, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def check(name, result, reference):
    loss = result[0] if isinstance(result, tuple) else result
    if not np.allclose(loss, reference, rtol=1e-4, atol=1e-4):
        raise SystemExit(f"{name} disagrees with the float64 reference")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per cell (median)")
    parser.add_argument("--threads", type=int, default=None,
                        help="xentc num_threads (default: OpenMP's default)")
    parser.add_argument("--quick", action="store_true", help="small shapes, 3 repeats")
    args = parser.parse_args(argv)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    repeats = 3 if args.quick else args.repeats
    print(f"xentc {xentc.__version__} (OpenMP {xentc.openmp_enabled()}), numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}, threads={args.threads or 'default'}, "
          f"median of {repeats}")
    print(f"{'shape':>14} {'task':>17} {'xentc ms':>9} {'GB/s':>6} {'numpy ms':>9} {'GB/s':>6} {'speed-up':>8}")
    rng = np.random.default_rng(0)
    for n, c in shapes:
        logits = rng.normal(scale=3.0, size=(n, c)).astype(np.float32)
        sparse = rng.integers(0, c, size=n)
        dense = xentc.softmax(rng.normal(size=(n, c)).astype(np.float32))
        for task, bytes_per_element in TASKS.items():
            labels = dense if task.startswith("dense") else sparse
            ref = numpy_call(task)(labels.astype(np.float64) if labels is dense else labels,
                                   logits.astype(np.float64))
            ref = ref[0] if isinstance(ref, tuple) else ref
            ours, theirs = xentc_call(task, args.threads), numpy_call(task)
            check("xentc", ours(labels, logits), ref)
            check("numpy", theirs(labels, logits), ref)
            t_ours = median_time(ours, (labels, logits), repeats)
            t_theirs = median_time(theirs, (labels, logits), repeats)
            gb = n * c * bytes_per_element / 1e9
            print(f"{n:>6} x {c:<6} {task:>17} {t_ours * 1e3:9.2f} {gb / t_ours:6.2f} "
                  f"{t_theirs * 1e3:9.2f} {gb / t_theirs:6.2f} {t_theirs / t_ours:7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
