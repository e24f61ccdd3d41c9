"""xentc.torch.cross_entropy against torch.nn.functional.cross_entropy, live:
values and autograd gradients for every option (skipped without torch)."""
import doctest
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
import xentc.torch  # noqa: E402

OPTIONS = [
    dict(reduction=r, label_smoothing=s, weighted=w, ignore=i)
    for r, s, w, i in itertools.product(["mean", "sum", "none"], [0.0, 0.15], [False, True], [False, True])
]


def _case(kind, shape, dtype, options, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2).to(dtype)
    c = shape[1] if len(shape) > 1 else shape[0]
    if kind == "index":
        tshape = (shape[0],) + tuple(shape[2:]) if len(shape) > 1 else ()
        target = torch.randint(0, c, tshape, generator=g)
        if options["ignore"] and target.dim() > 0:
            target.view(-1)[::3] = 1 if options["ignore"] == "class" else -100
    else:
        target = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), dim=1 if len(shape) > 1 else 0).to(dtype)
    weight = torch.rand(c, generator=g, dtype=torch.float64).to(dtype) + 0.5 if options["weighted"] else None
    return x, target, weight


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("kind", ["index", "probability"])
@pytest.mark.parametrize("shape", [(7, 5), (3, 40, 2), (6,), (4, 100)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_values_and_gradients_as_torch(options, kind, shape, dtype):
    x, target, weight = _case(kind, shape, dtype, options, seed=hash((kind, shape)) % 1000)
    kw = dict(weight=weight, reduction=options["reduction"], label_smoothing=options["label_smoothing"])
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    ours = xentc.torch.cross_entropy(a, target, **kw)
    theirs = F.cross_entropy(b, target, **kw)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours, theirs, **tol)
    upstream = torch.rand_like(ours) + 0.5  # a non-trivial incoming gradient
    ours.backward(upstream)
    theirs.backward(upstream)
    torch.testing.assert_close(a.grad, b.grad, **tol)


def test_ignore_index_and_class_dim_1_with_spatial_dims():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    target = torch.randint(0, 4, (2, 3, 3), generator=g)
    target[0, 0, :] = 7
    ours = xentc.torch.cross_entropy(x, target, ignore_index=7, label_smoothing=0.1)
    theirs = F.cross_entropy(y, target, ignore_index=7, label_smoothing=0.1)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(x.grad, y.grad)


def test_no_grad_forward_and_in_a_training_step():
    model = torch.nn.Linear(8, 5).double()
    data = torch.randn(32, 8, dtype=torch.float64)
    target = torch.randint(0, 5, (32,))
    with torch.no_grad():
        assert torch.isclose(xentc.torch.cross_entropy(model(data), target),
                             F.cross_entropy(model(data), target))
    grads = []
    for fn in (xentc.torch.cross_entropy, F.cross_entropy):
        model.zero_grad()
        fn(model(data), target).backward()
        grads.append(model.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_clear_errors():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="xentc runs on the CPU, got input on device meta"):
        xentc.torch.cross_entropy(torch.empty(3, 4, device="meta"), torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match=r"input.dtype=torch.bfloat16 is not supported"):
        xentc.torch.cross_entropy(x.bfloat16(), torch.tensor([0, 1, 2]))
    with pytest.raises(NotImplementedError, match="with respect to target"):
        xentc.torch.cross_entropy(x, torch.softmax(torch.randn(3, 4), 1).requires_grad_(True))
    with pytest.raises(ValueError, match=r"target\[2\] = 9 is outside the valid range \[0, 4\)"):
        xentc.torch.cross_entropy(x, torch.tensor([0, 1, 9]))


def test_docstring_example():
    result = doctest.testmod(xentc.torch)
    assert result.attempted > 0 and result.failed == 0
