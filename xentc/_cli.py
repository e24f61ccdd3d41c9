"""The `xentc` command line (also `python -m xentc`).

    xentc score [LOGITS [LABELS]] [--axis N] [--top-k 1,5] [--json] [--batch-rows N]
                [--threads N] [--scheduler ADDRESS] [--no-progress]
                [--logits-key KEY] [--labels-key KEY]

Thin, like CPython's json/tool.py: argparse, results on stdout, a progress bar
on stderr, and every error in the input (a missing or unreadable file, a shape
or dtype that does not fit, a label out of range) one line on stderr with exit
code 2, never a traceback.
"""
import argparse
import json
import math
import os
import sys
import zipfile
import zlib

import numpy as np

from ._version import __version__

SAMPLE = "sample.npz"


class _InputError(Exception):
    """A problem with the command's input: printed as one line, exit code 2."""


def _top_k(text):
    try:
        ks = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be positive integers separated by commas, e.g. 1,5; got {text!r}") from None
    if any(k < 1 for k in ks):
        raise argparse.ArgumentTypeError(f"must be positive integers, got {text!r}")
    return ks


def _positive(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return n


def _parser():
    parser = argparse.ArgumentParser(
        prog="xentc", description="Fast softmax cross-entropy on the CPU.")
    parser.add_argument("--version", action="version", version=f"xentc {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = commands.add_parser(
        "score", help="score logits against labels: loss, perplexity, accuracy, top-k, calibration",
        description="Score model outputs: mean loss, perplexity, accuracy, top-k accuracy and "
                    "expected calibration error, streamed over memory-mapped .npy files in row "
                    "batches. With no files, scores the sample shipped with xentc.")
    p.add_argument("logits", nargs="?", metavar="LOGITS",
                   help=".npy file (memory-mapped) or .npz file of logits; omitted: the sample "
                        "shipped with xentc")
    p.add_argument("labels", nargs="?", metavar="LABELS",
                   help=".npy or .npz file of labels: integer class indices (the shape of the "
                        "logits without the class axis) or class probabilities (the shape of the "
                        "logits); may be omitted when LOGITS is an .npz file that holds both")
    p.add_argument("--axis", type=int, default=-1, help="the class axis of the logits (default -1)")
    p.add_argument("--top-k", type=_top_k, default=(1, 5), metavar="K[,K...]",
                   help="the k of the top-k accuracies, comma-separated (default 1,5)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--batch-rows", type=_positive, metavar="N",
                   help="rows per batch (or Dask chunk); default: about 256 MB of logits per batch")
    p.add_argument("--threads", type=_positive, metavar="N",
                   help="OpenMP threads (default: OpenMP's default, OMP_NUM_THREADS)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a running dask.distributed cluster, e.g. tcp://HOST:8786: the "
                        "workers read the .npy files (at the same paths) themselves; needs "
                        "`pip install \"xentc[dask]\"`")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is none anyway when stderr is not a terminal "
                        "or tqdm is not installed)")
    p.add_argument("--logits-key", default="logits", metavar="KEY",
                   help="the array of the logits in an .npz file (default 'logits')")
    p.add_argument("--labels-key", default="labels", metavar="KEY",
                   help="the array of the labels in an .npz file (default 'labels')")
    return parser


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def _sample_path():
    from importlib.resources import files

    return str(files("xentc") / "data" / SAMPLE)


def _load(path, key, what, option):
    """The array in `path`: a read-only memory map of a .npy file, or `key` of an .npz file."""
    if not os.path.exists(path):
        raise _InputError(f"{what} file {path!r} does not exist")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
            raise _InputError(f"{what} file {path!r} is not a .npy or .npz file "
                              f"(it starts with {magic!r})")
        obj = np.load(path, mmap_mode="r", allow_pickle=False)
        if isinstance(obj, np.lib.npyio.NpzFile):
            with obj:
                if key not in obj.files:
                    have = ", ".join(repr(f) for f in obj.files) or "no arrays"
                    raise _InputError(f"{what} file {path!r} has no array {key!r} (it has {have}); "
                                      f"name one with {option}")
                return obj[key]
        return obj
    except _InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise _InputError(f"cannot read {what} file {path!r} as .npy or .npz: {_one_line(exc)}") from None


def _is_npz(path):
    return zipfile.is_zipfile(path) if os.path.isfile(path) else path.endswith(".npz")


def _inputs(args):
    """(logits path, labels path, label source text) after the defaults."""
    if args.logits is None:
        return _sample_path(), _sample_path(), "the sample shipped with xentc"
    labels = args.labels
    if labels is None:
        if not os.path.exists(args.logits):
            raise _InputError(f"LOGITS file {args.logits!r} does not exist")
        if not _is_npz(args.logits):
            raise _InputError("LABELS is required unless LOGITS is an .npz file that holds the "
                              f"labels too (under --labels-key {args.labels_key!r})")
        labels = args.logits
    return args.logits, labels, None


def _describe(x, y, source):
    x_dtype, y_dtype = np.dtype(x.dtype), np.dtype(y.dtype)
    kind = "class indices" if y_dtype.kind in "iu" else "class probabilities"
    shape = "x".join(str(d) for d in x.shape)
    text = f"logits {shape} ({x_dtype}), labels {kind} ({y_dtype})"
    return f"{text}, {source}" if source else text


def _table(result, description):
    rows = [
        ("rows", f"{result.rows:,}"),
        ("mean loss", f"{result.mean_loss:.6g}"),
        ("perplexity", f"{result.perplexity:.6g}"),
        ("accuracy", f"{result.accuracy:.4f}"),
    ]
    rows += [(f"top-{k} accuracy", f"{v:.4f}") for k, v in result.top_k_accuracy.items() if k != 1]
    rows += [
        ("calibration error (ECE)", f"{result.expected_calibration_error:.4f}  (15 bins)"),
        ("loss sum", f"{result.loss_sum:.8g}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"xentc score: {description}", ""]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


def _json_number(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _score_local(args, x_path, y_path):
    import xentc

    x = _load(x_path, args.logits_key, "LOGITS", "--logits-key")
    y = _load(y_path, args.labels_key, "LABELS", "--labels-key")
    progress = not args.no_progress and sys.stderr.isatty()
    result = xentc.score(x, y, axis=args.axis, top_k=args.top_k, batch_rows=args.batch_rows,
                         num_threads=args.threads, progress=progress)
    return result, x, y


def _score_dask(args, x_path, y_path):
    try:
        import xentc.dask as xd
        from distributed import Client
    except ImportError as exc:
        raise _InputError(f"--scheduler needs Dask: pip install \"xentc[dask]\" ({_one_line(exc)})") from None

    def read(path, key, what, option, class_axis):
        arr = _load(path, key, what, option)  # checks the file here, with the messages above
        if isinstance(arr, np.memmap):
            # integer labels have no class axis: chunked along their first axis
            axis = class_axis if arr.dtype.kind == "f" else None
            return xd.read_npy(path, axis=axis, chunk_rows=args.batch_rows)
        import dask.array as da

        return da.from_array(np.asarray(arr))  # .npz: read here, sent to the workers

    import dask

    try:  # waits as long as Dask's configuration says (distributed.comm.timeouts.connect)
        client = Client(args.scheduler, timeout=dask.config.get("distributed.comm.timeouts.connect"))
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise _InputError(f"cannot connect to the Dask scheduler at {args.scheduler!r}: "
                          f"{_one_line(exc)}") from None
    with client:
        x = read(x_path, args.logits_key, "LOGITS", "--logits-key", args.axis)
        y = read(y_path, args.labels_key, "LABELS", "--labels-key", args.axis)
        result = xd.score(x, y, axis=args.axis, top_k=args.top_k,
                          num_threads=args.threads).compute()
    return result, x, y


def score_command(args):
    x_path, y_path, source = _inputs(args)
    run = _score_dask if args.scheduler else _score_local
    result, x, y = run(args, x_path, y_path)
    if args.json:
        d = {k: _json_number(v) for k, v in result.to_dict().items()}
        d["top_k_accuracy"] = {str(k): _json_number(v) for k, v in result.top_k_accuracy.items()}
        print(json.dumps(d, indent=2))
    else:
        print(_table(result, _describe(x, y, source)))
    return 0


def main(argv=None):
    """Run the `xentc` command with `argv` (default sys.argv[1:]); returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, message printed)
        return exc.code if isinstance(exc.code, int) else 2
    prog = f"xentc {args.command}"
    try:
        return score_command(args)
    except _InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
    except (ValueError, TypeError, OSError, ImportError) as exc:
        # the library's argument and data errors (AxisError is a ValueError)
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001
        # anything else (a Dask worker lost, MemoryError reading a large .npz member):
        # still one line and exit code 2, never a traceback
        print(f"{prog}: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
    return 2
