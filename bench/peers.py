"""What bench/run.py times: xentc, its peers, and the float64 reference they are checked against.

Every implementation is a small class with the same three steps:

``load(threads)``
    import the library (an ImportError means "skip this peer") and apply its own
    thread setting; returns the version string.  Called once per worker process,
    after run.py has set the thread environment variables and before any input exists.
``supports(task)``
    False for the tasks the library has no API for (scikit-learn has no dense labels).
``prepare(task, labels, logits, threads)``
    convert the NumPy inputs to the library's own arrays (outside the timed region)
    and return a `Prepared`: ``call()`` runs the task once and returns the library's
    own result, ready (JAX is blocked on); ``reset()`` runs before every call,
    untimed (a fresh copy of the logits for the in-place variant, a cleared
    ``.grad`` for PyTorch); ``unpack(result)`` turns that result into a `Result`
    for the check.

The tasks: ``dense-loss``, ``dense-grad`` (loss and gradient), ``sparse-loss``,
``sparse-grad``.  Dense labels are probabilities of the logits' shape and dtype;
sparse labels are int64 class indices of shape ``(N,)``.  The gradient checked is
the one xentc returns: of the SUM of the row losses, ``softmax * labels.sum(-1) -
labels``.  A peer whose natural API differs says so in its `Result` (a mean loss, a
gradient of the mean to be scaled by N).
"""
import dataclasses
import importlib
import os

import numpy as np

TASKS = ("dense-loss", "dense-grad", "sparse-loss", "sparse-grad")
TASK_TITLES = {"dense-loss": "dense loss", "dense-grad": "dense loss+grad",
               "sparse-loss": "sparse loss", "sparse-grad": "sparse loss+grad"}
# items of the logits' dtype each task must move per logit: logits read (+ dense labels read)
# (+ gradient written).  float32: 8/12/4/8 bytes; float64 twice that.
ITEMS_MOVED = {"dense-loss": 2, "dense-grad": 3, "sparse-loss": 1, "sparse-grad": 2}


def is_dense(task):
    return task.startswith("dense")


def has_grad(task):
    return task.endswith("grad")


@dataclasses.dataclass
class Result:
    """A result in NumPy terms, for the check against the reference.

    loss_kind is "rows" (one loss per row), "mean" or "sum" (a scalar over rows);
    grad is multiplied by grad_scale before the comparison (N for a gradient of the mean).
    """
    loss: np.ndarray
    loss_kind: str = "rows"
    grad: np.ndarray = None
    grad_scale: float = 1.0


@dataclasses.dataclass
class Prepared:
    call: object
    unpack: object
    reset: object = None
    setting: str = ""  # what exactly is called, for the report


def _rows(result):
    """xentc / NumPy convention: loss or (loss, grad) as ndarrays."""
    if isinstance(result, tuple):
        return Result(np.asarray(result[0]), "rows", np.asarray(result[1]))
    return Result(np.asarray(result))


class Impl:
    name = ""        # column name in the report
    dists = ()       # distributions whose versions the report prints
    note = ""        # one line on how it is called

    def load(self, threads):
        raise NotImplementedError

    def supports(self, task):
        return True

    def prepare(self, task, labels, logits, threads):
        raise NotImplementedError


# --------------------------------------------------------------------------
# xentc
# --------------------------------------------------------------------------

class Xentc(Impl):
    name = "xentc"
    dists = ("xentc",)
    note = "default call (allocates its outputs), num_threads=None (OMP_NUM_THREADS)"

    def load(self, threads):
        self.x = importlib.import_module("xentc")
        return self.x.__version__

    def _fn(self, task):
        return (self.x.softmax_cross_entropy_with_logits if is_dense(task)
                else self.x.sparse_softmax_cross_entropy_with_logits)

    def prepare(self, task, labels, logits, threads):
        fn, grad = self._fn(task), has_grad(task)
        return Prepared(lambda: fn(labels, logits, return_grad=grad), _rows,
                        setting=f"{fn.__name__}(labels, logits, return_grad={grad})")


class XentcInplace(Xentc):
    name = "in-place"
    note = "grad_out=logits on a fresh copy of the logits per run (the copy is not timed)"

    def supports(self, task):
        return has_grad(task)

    def prepare(self, task, labels, logits, threads):
        fn = self._fn(task)
        work = np.empty_like(logits)
        return Prepared(lambda: fn(labels, work, grad_out=work), _rows,
                        reset=lambda: np.copyto(work, logits),
                        setting=f"{fn.__name__}(labels, work, grad_out=work)")


class XentcGradOut(Xentc):
    name = "grad_out"
    note = ("grad_out= a separate array, allocated once per cell (a training loop's buffer: "
            "pages already mapped)")

    def supports(self, task):
        return has_grad(task)

    def prepare(self, task, labels, logits, threads):
        fn = self._fn(task)
        buf = np.empty_like(logits)
        buf.fill(0)   # map its pages before timing, as a reused buffer's are
        return Prepared(lambda: fn(labels, logits, grad_out=buf), _rows,
                        setting=f"{fn.__name__}(labels, logits, grad_out=buf)")


# --------------------------------------------------------------------------
# NumPy and SciPy: careful vectorised code, one N x C temporary where possible
# --------------------------------------------------------------------------

def numpy_dense(labels, logits, grad):
    m = logits.max(axis=1, keepdims=True)
    z = np.subtract(logits, m)              # the one N x C temporary (it becomes the gradient)
    dot = np.einsum("ij,ij->i", labels, z)  # sum_j y_j z_j without a temporary
    np.exp(z, out=z)
    s = z.sum(axis=1)
    w = labels.sum(axis=1)
    loss = np.log(s) * w - dot              # sum_j y_j (log s - z_j)
    if not grad:
        return loss
    z *= (w / s)[:, None]                   # softmax * sum(y)
    z -= labels
    return loss, z


def numpy_sparse(labels, logits, grad):
    m = logits.max(axis=1, keepdims=True)
    z = np.subtract(logits, m)
    rows = np.arange(z.shape[0])
    picked = z[rows, labels]
    np.exp(z, out=z)
    s = z.sum(axis=1)
    loss = np.log(s) - picked
    if not grad:
        return loss
    z /= s[:, None]
    z[rows, labels] -= 1
    return loss, z


class NumPy(Impl):
    name = "numpy"
    dists = ("numpy",)
    note = "max shift, exp in place, einsum for the label dot, one N x C temporary"

    def load(self, threads):
        return np.__version__

    def prepare(self, task, labels, logits, threads):
        fn, grad = (numpy_dense if is_dense(task) else numpy_sparse), has_grad(task)
        return Prepared(lambda: fn(labels, logits, grad), _rows)


class SciPy(Impl):
    name = "scipy"
    dists = ("scipy",)
    note = "special.logsumexp for the loss, special.log_softmax (then exp in place) for loss+grad"

    def load(self, threads):
        import scipy
        import scipy.special
        self.sp = scipy.special
        return scipy.__version__

    def prepare(self, task, labels, logits, threads):
        sp = self.sp
        rows = np.arange(logits.shape[0])

        def dense_loss():
            return (sp.logsumexp(logits, axis=1) * labels.sum(axis=1)
                    - np.einsum("ij,ij->i", labels, logits))

        def dense_grad():
            lsm = sp.log_softmax(logits, axis=1)
            loss = -np.einsum("ij,ij->i", labels, lsm)
            g = np.exp(lsm, out=lsm)
            g *= labels.sum(axis=1)[:, None]
            g -= labels
            return loss, g

        def sparse_loss():
            return sp.logsumexp(logits, axis=1) - logits[rows, labels]

        def sparse_grad():
            lsm = sp.log_softmax(logits, axis=1)
            loss = -lsm[rows, labels]
            g = np.exp(lsm, out=lsm)
            g[rows, labels] -= 1
            return loss, g

        fn = {"dense-loss": dense_loss, "dense-grad": dense_grad,
              "sparse-loss": sparse_loss, "sparse-grad": sparse_grad}[task]
        return Prepared(fn, _rows)


# --------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------

class Torch(Impl):
    name = "torch"
    dists = ("torch",)
    note = ("F.cross_entropy(reduction='none') under inference_mode; loss+grad: default mean "
            "reduction + backward() on requires_grad logits (gradient scaled by N for the check); "
            "dense labels are probability targets")

    def load(self, threads):
        self.torch = importlib.import_module("torch")
        self.F = importlib.import_module("torch.nn.functional")
        self.torch.set_num_threads(threads)
        try:
            self.torch.set_num_interop_threads(threads)
        except RuntimeError:  # already set (only allowed once per process)
            pass
        return self.torch.__version__

    def prepare(self, task, labels, logits, threads):
        torch, F = self.torch, self.F
        t = torch.from_numpy(labels)  # float probabilities, or int64 class indices
        n = logits.shape[0]
        if not has_grad(task):
            x = torch.from_numpy(logits)

            def call():
                with torch.inference_mode():
                    return F.cross_entropy(x, t, reduction="none")
            return Prepared(call, lambda r: Result(r.numpy()),
                            setting="F.cross_entropy(x, t, reduction='none')")
        # a leaf that shares memory with the NumPy logits; autograd does not write to it
        x = torch.from_numpy(logits).requires_grad_(True)

        def reset():
            x.grad = None  # backward() allocates a fresh gradient, as in a training step

        def call():
            loss = F.cross_entropy(x, t)
            loss.backward()
            return loss.detach(), x.grad

        return Prepared(call, lambda r: Result(r[0].numpy(), "mean", r[1].numpy(), float(n)),
                        reset=reset, setting="F.cross_entropy(x, t).backward()")


# --------------------------------------------------------------------------
# TensorFlow
# --------------------------------------------------------------------------

class TensorFlow(Impl):
    name = "tf"
    dists = ("tensorflow", "tensorflow-cpu", "tensorflow-intel")
    note = ("eager; loss: tf.nn.(sparse_)softmax_cross_entropy_with_logits; loss+grad: the fused "
            "tf.raw_ops.(Sparse)SoftmaxCrossEntropyWithLogits (its dense backprop is softmax - labels)")

    def load(self, threads):
        tf = importlib.import_module("tensorflow")
        # must run before TensorFlow creates its thread pools (the first op)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        self.tf = tf
        return tf.__version__

    def prepare(self, task, labels, logits, threads):
        tf = self.tf
        with tf.device("/CPU:0"):
            x = tf.constant(logits)
            y = tf.constant(labels)
        raw, nn = tf.raw_ops, tf.nn
        calls = {
            "dense-loss": lambda: nn.softmax_cross_entropy_with_logits(labels=y, logits=x),
            "sparse-loss": lambda: nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
            "dense-grad": lambda: raw.SoftmaxCrossEntropyWithLogits(features=x, labels=y),
            "sparse-grad": lambda: raw.SparseSoftmaxCrossEntropyWithLogits(features=x, labels=y),
        }

        def unpack(r):
            if has_grad(task):
                return Result(r[0].numpy(), "rows", r[1].numpy())
            return Result(r.numpy())
        return Prepared(calls[task], unpack)


# --------------------------------------------------------------------------
# JAX / optax
# --------------------------------------------------------------------------

def _thread_ids():
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


class Jax(Impl):
    name = "jax"
    dists = ("jax", "jaxlib", "optax")
    note = ("jax.jit(optax.softmax_cross_entropy / _with_integer_labels); loss+grad: "
            "jax.jit(jax.value_and_grad(sum of row losses, has_aux=rows)); block_until_ready")

    def load(self, threads):
        # XLA:CPU has no dependable thread-count setting: --xla_cpu_multi_thread_eigen=false
        # (set by run.py for 1 thread) held in some processes and not in others (1.8 cores
        # used at "1 thread").  What holds: XLA sizes its thread pool from the CPU affinity of
        # the thread that creates the client.  So this thread is pinned to `threads` CPUs
        # while JAX starts; then it and every thread JAX started get all CPUs back (the pool
        # keeps its size; threads pinned to one fixed CPU would stall whenever another
        # process sits on that CPU).  run.py's thread check shows whether this held.
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        pin = 0 < threads < len(cpus)
        before = _thread_ids()
        if pin:
            os.sched_setaffinity(0, cpus[:threads])
        try:
            jax = importlib.import_module("jax")
            jax.config.update("jax_enable_x64", True)  # float64 inputs stay float64
            optax = importlib.import_module("optax")
            jax.block_until_ready(jax.jit(lambda a: a + 1)(np.ones(4)))  # creates the client now
        finally:
            if pin:
                os.sched_setaffinity(0, cpus)
                for tid in _thread_ids() - before:
                    try:
                        os.sched_setaffinity(tid, cpus)
                    except OSError:  # the thread has ended
                        pass
        self.jax = jax
        self.sized = threads if pin else None

        def with_rows(loss_fn):
            def total(lg, lb):
                rows = loss_fn(lg, lb)
                return rows.sum(), rows
            return jax.jit(jax.value_and_grad(total, has_aux=True))

        self.fns = {
            "dense-loss": jax.jit(optax.softmax_cross_entropy),
            "sparse-loss": jax.jit(optax.softmax_cross_entropy_with_integer_labels),
            "dense-grad": with_rows(optax.softmax_cross_entropy),
            "sparse-grad": with_rows(optax.softmax_cross_entropy_with_integer_labels),
        }
        where = (f", XLA pool sized for {self.sized} CPU by the affinity at start-up"
                 if self.sized else "")
        return f"{jax.__version__} (backend {jax.default_backend()}, {jax.device_count()} device{where})"

    def prepare(self, task, labels, logits, threads):
        jax = self.jax
        x = jax.block_until_ready(jax.device_put(logits))
        y = jax.block_until_ready(jax.device_put(labels))
        fn = self.fns[task]

        def call():
            return jax.block_until_ready(fn(x, y))

        def unpack(r):
            if has_grad(task):
                (_, rows), grad = r
                return Result(np.asarray(rows), "rows", np.asarray(grad))
            return Result(np.asarray(r))
        return Prepared(call, unpack)


# --------------------------------------------------------------------------
# scikit-learn
# --------------------------------------------------------------------------

class Sklearn(Impl):
    name = "sklearn"
    dists = ("scikit-learn",)
    note = ("sklearn._loss.loss.HalfMultinomialLoss .loss / .loss_gradient with n_threads "
            "(integer labels only: no dense task)")

    def load(self, threads):
        sklearn = importlib.import_module("sklearn")
        self.cls = importlib.import_module("sklearn._loss.loss").HalfMultinomialLoss
        return sklearn.__version__

    def supports(self, task):
        return not is_dense(task)

    def prepare(self, task, labels, logits, threads):
        loss = self.cls(n_classes=logits.shape[1])
        y = labels.astype(logits.dtype)  # its y_true is float, of the raw predictions' dtype
        if has_grad(task):
            return Prepared(lambda: loss.loss_gradient(y, logits, n_threads=threads), _rows)
        return Prepared(lambda: loss.loss(y, logits, n_threads=threads), _rows)


XENTC = (Xentc(), XentcInplace(), XentcGradOut())
PEERS = {"numpy": NumPy(), "scipy": SciPy(), "torch": Torch(), "tensorflow": TensorFlow(),
         "jax": Jax(), "sklearn": Sklearn()}
ALIASES = {"np": "numpy", "pytorch": "torch", "tf": "tensorflow", "optax": "jax",
           "scikit-learn": "sklearn"}


# --------------------------------------------------------------------------
# float64 reference and the check
# --------------------------------------------------------------------------

# (rtol, atol) for the loss and for the gradient, by the logits' dtype.  float32 sums of up
# to 256000 terms carry relative errors of a few 1e-6 in careful code; the margins leave room
# for a peer that sums naively, but not for a wrong formula.
TOLERANCES = {
    "float32": {"loss": (1e-4, 1e-4), "grad": (1e-3, 1e-6)},
    "float64": {"loss": (1e-10, 1e-10), "grad": (1e-9, 1e-12)},
}


def _chunks(n_rows, n_cols, elements=1 << 23):
    step = max(1, elements // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def reference_chunk(labels, logits, dense, rows, grad):
    """float64 loss (and gradient of the sum) of rows `rows`, straight from the formulas."""
    x = logits[rows].astype(np.float64)
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1)
    lse = np.log(s)
    if dense:
        y = labels[rows].astype(np.float64)
        w = y.sum(axis=1)
        loss = lse * w - (y * z).sum(axis=1)
        g = e * (w / s)[:, None] - y if grad else None
    else:
        idx = labels[rows]
        r = np.arange(x.shape[0])
        loss = lse - z[r, idx]
        if grad:
            g = e / s[:, None]
            g[r, idx] -= 1
        else:
            g = None
    return loss, g


def reference_loss(labels, logits, dense):
    n, c = logits.shape
    out = np.empty(n)
    for rows in _chunks(n, c):
        out[rows] = reference_chunk(labels, logits, dense, rows, False)[0]
    return out


def _excess(actual, expected, rtol, atol):
    """max |a - e| / (atol + rtol |e|): <= 1 passes; NaN or a shape mismatch is inf."""
    actual = np.asarray(actual, dtype=np.float64)
    if actual.shape != np.shape(expected):
        return float("inf")
    if actual.size == 0:
        return 0.0
    err = np.abs(actual - expected) / (atol + rtol * np.abs(expected))
    worst = float(np.max(err))
    return worst if np.isfinite(worst) else float("inf")


def check(result, labels, logits, dense, ref_loss, dtype_name):
    """Compare a Result with the float64 reference; returns a dict (ok, loss_excess, grad_excess)."""
    tol = TOLERANCES[dtype_name]
    if result.loss_kind == "rows":
        loss_excess = _excess(result.loss, ref_loss, *tol["loss"])
    elif result.loss_kind == "mean":
        loss_excess = _excess(np.reshape(result.loss, ()), ref_loss.mean(), *tol["loss"])
    else:
        loss_excess = _excess(np.reshape(result.loss, ()), ref_loss.sum(), *tol["loss"])
    out = {"loss_excess": loss_excess}
    if result.grad is not None:
        grad = result.grad
        if grad.shape != logits.shape:
            grad_excess = float("inf")
        else:
            grad_excess = 0.0
            for rows in _chunks(*logits.shape):
                ref_grad = reference_chunk(labels, logits, dense, rows, True)[1]
                got = grad[rows].astype(np.float64)
                if result.grad_scale != 1:
                    got *= result.grad_scale
                grad_excess = max(grad_excess, _excess(got, ref_grad, *tol["grad"]))
        out["grad_excess"] = grad_excess
    out["ok"] = all(v <= 1.0 for k, v in out.items() if k.endswith("excess"))
    return out
