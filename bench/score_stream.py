"""Streaming throughput of `xentc.score` on a memory-mapped .npy file in the
page cache, against the in-memory sparse kernel on the same data.

    python bench/score_stream.py [--gb 2] [--classes 32000] [--repeats 5] [--dir DIR]

Writes a float32 logits file of about --gb GB (and its int64 labels) to --dir
(default: the system's temporary directory), reads it once so it is in the page
cache, then times, as medians of --repeats runs:

  in-memory   xentc.sparse_softmax_cross_entropy_with_logits on the whole array
              loaded in memory (the kernel's throughput, the reference);
  score, mem  xentc.score on the same in-memory array (the score kernel and
              the per-batch reductions);
  score, mmap xentc.score on the memory-mapped file, in its automatic batches.

and prints GB/s of logits and a PASS/FAIL line for issue 5's target: streaming
at least 70% of the in-memory kernel's throughput.  The files are deleted at
the end.  Needs about twice --gb of free memory (the file in the page cache and
the in-memory copy).
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import xentc

TARGET = 0.70


def write(path, rows, classes, seed=0):
    """A float32 .npy of standard normal logits, written in pieces (never all in memory)."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, classes))
    step = max(1, (64 << 20) // (classes * 4))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        out[r0:r1] = rng.standard_normal((r1 - r0, classes), dtype=np.float32) * 3
    out.flush()
    del out


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="size of the logits file in GB (default 2)")
    parser.add_argument("--classes", type=int, default=32000, help="classes per row (default 32000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (default 5)")
    parser.add_argument("--dir", default=None, help="where to write the files (default: a temporary directory)")
    parser.add_argument("--threads", type=int, default=None, help="OpenMP threads (default: OpenMP's default)")
    args = parser.parse_args(argv)

    rows = max(1, int(args.gb * (1 << 30)) // (args.classes * 4))
    tmp = tempfile.mkdtemp(prefix="xentc-score-stream-", dir=args.dir)
    x_path, y_path = os.path.join(tmp, "logits.npy"), os.path.join(tmp, "labels.npy")
    try:
        cfg = xentc.show_config(file=False)
        print(f"xentc {cfg['version']}, SIMD {cfg['simd']}, OpenMP threads {cfg['max_threads']}"
              f"{'' if args.threads is None else f' (using {args.threads})'}")
        print(f"writing {rows} x {args.classes} float32 logits ({rows * args.classes * 4 / 1e9:.2f} GB) "
              f"to {x_path}")
        write(x_path, rows, args.classes)
        np.save(y_path, np.random.default_rng(1).integers(0, args.classes, size=rows))

        mm_x = np.load(x_path, mmap_mode="r")
        mm_y = np.load(y_path, mmap_mode="r")
        nbytes = mm_x.nbytes
        xentc.score(mm_x, mm_y, num_threads=args.threads)   # warm: the file into the page cache
        x, y = np.array(mm_x), np.array(mm_y)                 # the same data in memory
        xentc.sparse_softmax_cross_entropy_with_logits(y, x, num_threads=args.threads)

        t_mem = median_time(
            lambda: xentc.sparse_softmax_cross_entropy_with_logits(y, x, num_threads=args.threads),
            args.repeats)
        t_score_mem = median_time(lambda: xentc.score(x, y, num_threads=args.threads), args.repeats)
        t_stream = median_time(lambda: xentc.score(mm_x, mm_y, num_threads=args.threads), args.repeats)

        def line(name, t):
            print(f"  {name:<40} {t * 1e3:9.1f} ms  {nbytes / t / 1e9:6.2f} GB/s  "
                  f"{t_mem / t:6.1%} of in-memory")

        print(f"medians of {args.repeats} runs, {rows} rows, "
              f"batch_rows {xentc._score.auto_batch_rows(args.classes, 4)} (auto):")
        line("in-memory sparse kernel (reference)", t_mem)
        line("xentc.score, in memory", t_score_mem)
        line("xentc.score, memory-mapped (streaming)", t_stream)
        ratio = t_mem / t_stream
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        print(f"{verdict}: streaming at {ratio:.1%} of the in-memory kernel's throughput "
              f"(target {TARGET:.0%})")
        del mm_x, mm_y, x, y
        return 0 if ratio >= TARGET else 1
    finally:
        for p in (x_path, y_path):
            if os.path.exists(p):
                os.remove(p)
        os.rmdir(tmp)


if __name__ == "__main__":
    raise SystemExit(main())
