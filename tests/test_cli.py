"""The `xentc score` command: the shipped sample, .npy and .npz inputs, the
table and JSON outputs against the float64 reference, and one line on stderr
with exit code 2 (no traceback) for each kind of bad input."""
import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

import reference as ref
from xentc._cli import main


def run(capsys, *argv):
    code = main(["score", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_json_matches(got, want, rtol=2e-5):
    assert got["rows"] == want["rows"]
    for name in ("mean_loss", "perplexity", "loss_sum", "expected_calibration_error"):
        assert got[name] == pytest.approx(want[name], rel=rtol, abs=1e-12), name
    assert got["accuracy"] == want["accuracy"]
    assert got["top_k_accuracy"] == {str(k): v for k, v in want["top_k_accuracy"].items()}


def sample():
    with np.load(str(files("xentc") / "data" / "sample.npz")) as z:
        return z["logits"], z["labels"]


@pytest.fixture
def files_dir(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 30)).astype(np.float32)
    labels = rng.integers(0, 30, size=500)
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    np.savez(tmp_path / "both.npz", logits=logits, labels=labels)
    np.savez(tmp_path / "keys.npz", scores=logits, targets=labels)
    return tmp_path, logits, labels


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------

def test_the_shipped_sample_is_small_real_looking_and_scored_with_no_files(capsys):
    path = Path(str(files("xentc") / "data" / "sample.npz"))
    assert path.stat().st_size < 400 * 1024
    logits, labels = sample()
    assert logits.dtype == np.float32 and logits.ndim == 2 and labels.shape == logits.shape[:1]
    want = ref.score(logits, labels)
    # a model that learned something but is not perfect, as real outputs are
    assert 0.3 < want["accuracy"] < 0.95 and want["top_k_accuracy"][5] > want["accuracy"]
    code, out, err = run(capsys)
    assert code == 0 and err == ""
    assert "the sample shipped with xentc" in out
    assert f"{want['rows']:,}" in out
    assert f"{want['accuracy']:.4f}" in out and f"{want['top_k_accuracy'][5]:.4f}" in out
    assert_json_matches(run_json(capsys), want)


def test_npy_files_are_memory_mapped_and_scored_in_batches(capsys, files_dir):
    d, logits, labels = files_dir
    want = ref.score(logits, labels, top_k=(1, 2, 7))
    got = run_json(capsys, d / "logits.npy", d / "labels.npy", "--top-k", "1,2,7",
                   "--batch-rows", "64", "--threads", "1", "--no-progress")
    assert_json_matches(got, want)


def test_npz_with_both_arrays_and_with_other_keys(capsys, files_dir):
    d, logits, labels = files_dir
    want = ref.score(logits, labels)
    assert_json_matches(run_json(capsys, d / "both.npz"), want)
    assert_json_matches(run_json(capsys, d / "keys.npz", d / "keys.npz", "--logits-key", "scores",
                                 "--labels-key", "targets"), want)
    assert_json_matches(run_json(capsys, d / "both.npz", d / "labels.npy"), want)


def test_axis_and_dense_labels(capsys, tmp_path):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20, 300))           # classes first
    labels = rng.dirichlet(np.ones(20), size=300).T  # dense, the same layout
    np.save(tmp_path / "x.npy", logits)
    np.save(tmp_path / "y.npy", labels)
    got = run_json(capsys, tmp_path / "x.npy", tmp_path / "y.npy", "--axis", "0")
    assert_json_matches(got, ref.score(logits, labels, axis=0), rtol=1e-12)


def test_table_layout(capsys, files_dir):
    d, logits, labels = files_dir
    code, out, _ = run(capsys, d / "logits.npy", d / "labels.npy", "--top-k", "1,3")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "xentc score: logits 500x30 (float32), labels class indices (int64)"
    names = [line.split("  ")[1].strip() for line in lines[2:]]
    assert names == ["rows", "mean loss", "perplexity", "accuracy", "top-3 accuracy",
                     "calibration error (ECE)", "loss sum"]


def test_nan_results_are_null_in_json(capsys, tmp_path):
    np.save(tmp_path / "x.npy", np.array([[np.nan, 1.0], [0.0, 1.0]]))
    np.save(tmp_path / "y.npy", np.array([0, 1]))
    got = run_json(capsys, tmp_path / "x.npy", tmp_path / "y.npy")
    assert got["mean_loss"] is None and got["expected_calibration_error"] is None
    assert got["accuracy"] == 0.5


# --------------------------------------------------------------------------
# bad input: one line on stderr, exit code 2
# --------------------------------------------------------------------------

def _bad_files(d, logits, labels):
    np.save(d / "short.npy", labels[:-1])
    np.save(d / "dense29.npy", np.full((len(labels), 29), 1 / 29))
    np.save(d / "complex.npy", logits.astype(np.complex64))
    np.save(d / "strings.npy", np.array(["cat"] * len(labels)))
    np.save(d / "range.npy", np.where(np.arange(len(labels)) == 123, 30, labels))
    np.save(d / "object.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    (d / "garbage.npy").write_bytes(b"this is not an array\n")
    (d / "empty.npy").write_bytes(b"")
    (d / "truncated.npy").write_bytes((d / "logits.npy").read_bytes()[:200])
    (d / "dir.npy").mkdir()
    # a compressed archive whose deflated data is damaged (headers intact)
    np.savez_compressed(d / "corrupt.npz", logits=logits, labels=labels)
    raw = bytearray((d / "corrupt.npz").read_bytes())
    mid = len(raw) // 3
    raw[mid:mid + 64] = bytes(64)
    (d / "corrupt.npz").write_bytes(bytes(raw))


BAD = [
    # (arguments, a fragment the one-line message must hold)
    (["missing.npy", "labels.npy"], "LOGITS file '{d}/missing.npy' does not exist"),
    (["logits.npy", "missing.npy"], "LABELS file '{d}/missing.npy' does not exist"),
    (["logits.npy", "short.npy"],
     "labels must have the shape of logits without its class axis (axis 1), got "
     "labels.shape=(499,) and logits.shape=(500, 30)"),
    (["logits.npy", "dense29.npy"],
     "labels and logits must have the same shape (or labels the shape of logits without its "
     "class axis, for class indices), got labels.shape=(500, 29) and logits.shape=(500, 30)"),
    (["logits.npy", "logits.npy"],   # logits passed as labels
     "is negative or NaN; dense labels must be class probabilities"),
    (["complex.npy", "labels.npy"], "logits must be an array of real floating-point or integer"),
    (["logits.npy", "strings.npy"], "labels must hold integer class indices or real class "
                                    "probabilities, got labels.dtype=<U3"),
    (["logits.npy", "range.npy"], "labels[123] = 30 is outside the valid range [0, 30)"),
    (["logits.npy", "labels.npy", "--axis", "2"], "axis 2 is out of bounds"),
    (["garbage.npy", "labels.npy"], "LOGITS file '{d}/garbage.npy' is not a .npy or .npz file"),
    (["empty.npy", "labels.npy"], "LOGITS file '{d}/empty.npy' is not a .npy or .npz file"),
    (["truncated.npy", "labels.npy"], "cannot read LOGITS file '{d}/truncated.npy'"),
    (["logits.npy", "object.npy"], "cannot read LABELS file '{d}/object.npy' as .npy or .npz"),
    (["dir.npy", "labels.npy"], "cannot read LOGITS file '{d}/dir.npy'"),
    (["both.npz", "both.npz", "--labels-key", "y"],
     "LABELS file '{d}/both.npz' has no array 'y' (it has 'logits', 'labels'); name one with "
     "--labels-key"),
    (["logits.npy"], "LABELS is required unless LOGITS is an .npz file"),
    (["missing.npy"], "LOGITS file '{d}/missing.npy' does not exist"),
    (["corrupt.npz"], "cannot read LOGITS file '{d}/corrupt.npz'"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_code_2(capsys, files_dir, argv, message):
    d, logits, labels = files_dir
    _bad_files(d, logits, labels)
    argv = [a if a.startswith("-") or not a.endswith((".npy", ".npz")) else str(d / a) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("xentc score: error: "), err
    assert message.format(d=d) in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, fragment", [
    (["--top-k", "1,x"], "argument --top-k: must be positive integers separated by commas"),
    (["--top-k", "0"], "argument --top-k: must be positive integers"),
    (["--batch-rows", "0"], "argument --batch-rows: must be a positive integer, got '0'"),
    (["--threads", "two"], "argument --threads: must be a positive integer, got 'two'"),
    (["--axis", "x"], "argument --axis: invalid int value"),
    (["a", "b", "c"], "unrecognized arguments: c"),
])
def test_bad_options_are_usage_errors_with_exit_code_2(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert fragment in err and "Traceback" not in err
    assert err.splitlines()[-1].startswith(("xentc score: error: ", "xentc: error: "))


def test_help_and_version(capsys):
    assert main(["score", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--axis", "--top-k", "--json", "--batch-rows", "--threads", "--scheduler",
                 "--no-progress", "--logits-key", "--labels-key"):
        assert flag in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("xentc ")
    assert main([]) == 2


# --------------------------------------------------------------------------
# the installed console script and python -m xentc
# --------------------------------------------------------------------------

def _script():
    name = "xentc.exe" if os.name == "nt" else "xentc"
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    return str(path)


@pytest.mark.parametrize("command", ["script", "module"])
def test_installed_commands(command, files_dir, tmp_path):
    d, logits, labels = files_dir
    prefix = [_script()] if command == "script" else [sys.executable, "-P", "-m", "xentc"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    ok = subprocess.run(prefix + ["score", "--json"], capture_output=True, text=True, timeout=120,
                        cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""  # not a terminal: no progress bar
    assert_json_matches(json.loads(ok.stdout), ref.score(*sample()))
    bad = subprocess.run(prefix + ["score", str(d / "logits.npy"), str(d / "nope.npy")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == f"xentc score: error: LABELS file '{d}/nope.npy' does not exist\n"


def test_the_readme_shows_what_xentc_score_prints(capsys):
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "pip install . && xentc score\n" in readme
    block = re.search(r"```\n(xentc score: logits .*?)```", readme, re.S).group(1)
    assert main(["score"]) == 0
    out = capsys.readouterr().out

    def split(text):  # words, and numbers to compare within float32 rounding
        tokens = text.split()
        nums = [float(t.replace(",", "")) for t in tokens if re.fullmatch(r"[\d,]+\.?\d*", t)]
        return [t for t in tokens if not re.fullmatch(r"[\d,]+\.?\d*", t)], nums

    words, nums = split(block)
    got_words, got_nums = split(out)
    assert words == got_words
    np.testing.assert_allclose(got_nums, nums, rtol=1e-6)


def test_an_unexpected_exception_is_still_one_line_and_exit_code_2(capsys, files_dir, monkeypatch):
    # e.g. a Dask worker lost mid-job: not one of the input errors above
    import xentc

    def boom(*args, **kwargs):
        raise RuntimeError("worker lost\nsecond line")

    monkeypatch.setattr(xentc, "score", boom)
    d, _, _ = files_dir
    code, out, err = run(capsys, d / "logits.npy", d / "labels.npy")
    assert code == 2 and out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("xentc score: error: RuntimeError: worker lost")
