"""xentc.dask: the losses, cross_entropy's reductions and score on Dask arrays
equal the in-memory results, on the local scheduler and on a real
dask.distributed LocalCluster (2 worker processes), and `xentc score
--scheduler` runs there.  Skipped when Dask is not installed (CI installs the
`dask` extra, so they run there)."""
import json
import logging
import os

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import xentc  # noqa: E402
import xentc.dask as xd  # noqa: E402
from xentc._cli import main  # noqa: E402



def data(seed=0, n=(40, 6), c=37, dtype=np.float32):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=n + (c,)).astype(dtype) * 2
    labels = rng.integers(0, c, size=n)
    return logits, labels


def assert_same_score(got, want):
    assert got.rows == want.rows
    assert got.top_k_accuracy == want.top_k_accuracy and got.accuracy == want.accuracy
    for name in ("loss_sum", "mean_loss", "perplexity", "expected_calibration_error"):
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-12), name


# --------------------------------------------------------------------------
# the local (synchronous) scheduler
# --------------------------------------------------------------------------

@pytest.mark.parametrize("chunks", [(7, 6, 37), (40, 1, 10), (1, 4, 5), (40, 6, 37)])
def test_per_row_losses_equal_in_memory(chunks):
    logits, labels = data()
    x = da.from_array(logits, chunks=chunks)           # the class axis split on purpose
    got = xd.sparse_softmax_cross_entropy_with_logits(labels, x)
    assert isinstance(got, da.Array) and got.shape == labels.shape
    np.testing.assert_array_equal(got.compute(scheduler="sync"),
                                  xentc.sparse_softmax_cross_entropy_with_logits(labels, logits))
    onehot = np.eye(37, dtype=np.float32)[labels]
    y = da.from_array(onehot, chunks=(3, 3, 3))
    got = xd.softmax_cross_entropy_with_logits(y, x)
    np.testing.assert_array_equal(got.compute(scheduler="sync"),
                                  xentc.softmax_cross_entropy_with_logits(onehot, logits))


def test_dense_loss_on_another_class_axis():
    logits, labels = data(n=(30,), c=9, dtype=np.float64)
    probs = np.random.default_rng(1).dirichlet(np.ones(9), size=30)
    x = da.from_array(logits.T, chunks=(4, 7))          # classes on axis 0
    got = xd.softmax_cross_entropy_with_logits(probs.T, x, axis=0).compute(scheduler="sync")
    np.testing.assert_allclose(got, xentc.softmax_cross_entropy_with_logits(probs, logits),
                               rtol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [{}, {"weight": np.linspace(0.1, 2, 37)},
                                     {"label_smoothing": 0.2, "ignore_index": 3},
                                     {"weight": np.linspace(0.1, 2, 37), "ignore_index": 5}])
def test_cross_entropy_reductions_combine_chunk_sums(reduction, options):
    logits, labels = data(dtype=np.float64)
    labels[::4, 0] = options.get("ignore_index", -100)
    x = da.from_array(logits, chunks=(9, 4, 37))
    got = xd.cross_entropy(x, labels, reduction=reduction, **options)
    assert isinstance(got, da.Array)
    want = xentc.cross_entropy(logits, labels, reduction=reduction, **options)
    np.testing.assert_allclose(got.compute(scheduler="sync"), want, rtol=1e-13)


def test_cross_entropy_mean_is_not_a_mean_of_chunk_means():
    # chunk 0 holds one counted row, chunk 1 three: the mean of the chunk means
    # would weigh that one row as much as the other three
    logits = np.log(np.array([[0.9, 0.1]] + [[0.5, 0.5]] * 3))
    target = np.array([0, 0, 0, -100, 1, 1, 1, 1])[[0, 4, 5, 6]]
    x = da.from_array(logits, chunks=(1, 2))
    got = float(xd.cross_entropy(x, target).compute(scheduler="sync"))
    assert got == pytest.approx((-np.log(0.9) + 3 * np.log(2)) / 4, rel=1e-14)
    probs = np.eye(2)[target]
    got = float(xd.cross_entropy(x, probs).compute(scheduler="sync"))
    assert got == pytest.approx((-np.log(0.9) + 3 * np.log(2)) / 4, rel=1e-14)


@pytest.mark.parametrize("chunks", [(7, 6, 37), (40, 2, 5), (13, 1, 37)])
def test_score_equals_in_memory(chunks):
    logits, labels = data()
    x = da.from_array(logits, chunks=chunks)
    lazy = xd.score(x, labels, top_k=(1, 3, 40))
    assert hasattr(lazy, "compute") and not isinstance(lazy, xentc.ScoreResult)
    assert_same_score(lazy.compute(scheduler="sync"), xentc.score(logits, labels, top_k=(1, 3, 40)))
    dense = np.eye(37, dtype=np.float32)[labels]
    got = xd.score(x, da.from_array(dense, chunks=(5, 5, 5))).compute(scheduler="sync")
    assert_same_score(got, xentc.score(logits, dense))


def test_graph_time_errors_have_the_numpy_messages():
    x = da.zeros((4, 5), chunks=2)
    with pytest.raises(ValueError, match=r"labels must have the shape of logits without its class "
                                         r"axis \(axis 1\), got labels.shape=\(3,\)"):
        xd.score(x, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"labels and logits must have the same shape"):
        xd.softmax_cross_entropy_with_logits(np.zeros((4, 4)), x)
    with pytest.raises(TypeError, match=r"logits must be an array of real floating-point"):
        xd.sparse_softmax_cross_entropy_with_logits([0, 1, 2, 3], x.astype(complex))
    with pytest.raises(ValueError, match=r"reduction must be one of"):
        xd.cross_entropy(x, [0, 1, 2, 3], reduction="avg")
    with pytest.raises(ValueError, match=r"weight must have shape \(5,\)"):
        xd.cross_entropy(x, [0, 1, 2, 3], weight=np.ones(4))
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        xd.cross_entropy(x, [0, 1, 2, 3], label_smoothing=2.0)
    with pytest.raises(ValueError, match=r"top_k must hold positive integers"):
        xd.score(x, [0, 1, 2, 3], top_k=0)
    with pytest.raises(np.exceptions.AxisError):
        xd.score(x, [0, 1, 2, 3], axis=3)


def test_chunk_errors_name_the_label_and_the_chunk():
    logits, labels = data()
    labels[22, 4] = 99
    x = da.from_array(logits, chunks=(10, 3, 37))
    msg = (r"labels\[2, 1\] = 99 is outside the valid range \[0, 37\) \(indices within the Dask "
           r"chunk at \[20:30, 3:6\], class axis last\)")
    with pytest.raises(ValueError, match=msg):
        xd.score(x, labels).compute(scheduler="sync")
    with pytest.raises(ValueError, match=msg):
        xd.sparse_softmax_cross_entropy_with_logits(labels, x).compute(scheduler="sync")


def test_read_npy_chunks_rows_and_reads_lazily(tmp_path):
    logits, labels = data(n=(50,))
    np.save(tmp_path / "x.npy", logits)
    np.save(tmp_path / "y.npy", labels)
    x = xd.read_npy(tmp_path / "x.npy", chunk_rows=8)
    assert x.chunks == ((8,) * 6 + (2,), (37,))
    y = xd.read_npy(tmp_path / "y.npy", axis=None, chunk_rows=16)
    assert y.chunks == ((16, 16, 16, 2),)
    xt = xd.read_npy(_save(tmp_path / "xt.npy", logits.T), axis=0, chunk_rows=8)
    assert xt.chunks == ((37,), (8,) * 6 + (2,))
    assert_same_score(xd.score(x, y).compute(scheduler="sync"), xentc.score(logits, labels))
    assert_same_score(xd.score(xt, y, axis=0).compute(scheduler="sync"), xentc.score(logits, labels))


def test_read_npy_refuses_an_npz_and_closes_it(tmp_path):
    # the archive must be closed before the error (filterwarnings=error turns an
    # unclosed file's ResourceWarning into a failure)
    np.savez(tmp_path / "x.npz", logits=np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"x\.npz' is not a \.npy file"):
        xd.read_npy(tmp_path / "x.npz")


def test_read_npy_keys_change_when_the_file_is_rewritten(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((6, 3), np.float32))
    first = xd.read_npy(path).name
    assert xd.read_npy(path).name == first
    np.save(path, np.ones((6, 3), np.float32))  # same shape and dtype, new contents
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10**9))
    assert xd.read_npy(path).name != first


def _save(path, a):
    np.save(path, a)
    return path


# --------------------------------------------------------------------------
# a real dask.distributed cluster: 2 worker processes
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
        silence_logs=logging.ERROR, death_timeout=60)
    c = distributed.Client(cluster, timeout="60s")
    try:
        c.wait_for_workers(2, timeout=60)
        yield c
    finally:
        c.close(timeout=30)
        cluster.close(timeout=30)


def test_local_cluster_has_two_worker_processes(client):
    info = client.scheduler_info()
    assert len(info["workers"]) == 2
    pids = client.run(lambda: __import__("os").getpid())
    assert len(set(pids.values())) == 2


def test_on_the_cluster_results_equal_in_memory(client):
    logits, labels = data(n=(300,), c=101)
    x = da.from_array(logits, chunks=(40, 101))
    got = client.compute(xd.score(x, labels, top_k=(1, 5))).result(timeout=60)
    assert_same_score(got, xentc.score(logits, labels, top_k=(1, 5)))
    losses = client.compute(xd.sparse_softmax_cross_entropy_with_logits(labels, x)).result(timeout=60)
    np.testing.assert_array_equal(losses, xentc.sparse_softmax_cross_entropy_with_logits(labels, logits))
    w = np.linspace(0.5, 1.5, 101)
    mean = client.compute(xd.cross_entropy(x, labels, weight=w)).result(timeout=60)
    assert float(mean) == pytest.approx(float(xentc.cross_entropy(logits, labels, weight=w)), rel=1e-12)


def test_cli_with_a_scheduler_reads_npy_files_on_the_workers(client, tmp_path, capsys):
    logits, labels = data(n=(500,), c=64)
    np.save(tmp_path / "x.npy", logits)
    np.save(tmp_path / "y.npy", labels)
    address = client.scheduler.address
    code = main(["score", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--scheduler", address,
                 "--batch-rows", "64", "--json", "--top-k", "1,5"])
    out, err = capsys.readouterr()
    assert code == 0, err
    got = json.loads(out)
    want = xentc.score(logits, labels, top_k=(1, 5))
    assert got["rows"] == 500 and got["accuracy"] == want.accuracy
    assert got["top_k_accuracy"] == {"1": want.top_k_accuracy[1], "5": want.top_k_accuracy[5]}
    assert got["loss_sum"] == pytest.approx(want.loss_sum, rel=1e-12)
    assert got["expected_calibration_error"] == pytest.approx(want.expected_calibration_error,
                                                              rel=1e-12)
    # the sample (an .npz, read here and sent to the workers)
    assert main(["score", "--scheduler", address]) == 0
    assert "the sample shipped with xentc" in capsys.readouterr().out


def test_cli_with_an_unreachable_scheduler_is_one_line(capsys):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):  # what the CLI waits
        code = main(["score", "--scheduler", "tcp://127.0.0.1:1", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("xentc score: error: cannot connect to the Dask scheduler at "
                          "'tcp://127.0.0.1:1'") and err.count("\n") == 1


def test_docstring_examples():
    import doctest

    result = doctest.testmod(xd, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10 and result.failed == 0
