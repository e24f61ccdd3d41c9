"""PyTorch interop: ``xentc.torch.cross_entropy``, a drop-in for
``torch.nn.functional.cross_entropy`` on CPU tensors.

The forward pass computes the loss and the gradient of the (reduced) loss with
respect to the input in one kernel pass, on zero-copy NumPy views of the
tensors, and saves the gradient; the backward pass only scales it by the
incoming gradient.  So a model trained on the CPU gets xentc's speed by
changing one import::

    from xentc.torch import cross_entropy   # instead of torch.nn.functional
"""
try:
    import torch
except ImportError as exc:  # torch is optional: only this module needs it
    raise ImportError(
        "xentc.torch needs PyTorch; install it (e.g. `pip install torch`) or use "
        "xentc.cross_entropy on NumPy arrays"
    ) from exc

from ._cross_entropy import cross_entropy as _cross_entropy

__all__ = ["cross_entropy"]

_DTYPES = (torch.float16, torch.float32, torch.float64)


def _numpy(name, tensor):
    """A zero-copy NumPy view of a CPU tensor, or a clear error."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.device.type != "cpu":
        raise ValueError(
            f"xentc runs on the CPU, got {name} on device {tensor.device}; move it with "
            f"{name}.cpu() or use torch.nn.functional.cross_entropy on that device"
        )
    if tensor.is_floating_point() and tensor.dtype not in _DTYPES:
        raise TypeError(
            f"{name}.dtype={tensor.dtype} is not supported; use float16, float32 or float64"
        )
    if tensor.is_complex():
        raise TypeError(f"{name} must be real, got {name}.dtype={tensor.dtype}")
    return tensor.detach().numpy()


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, weight, ignore_index, reduction, label_smoothing, num_threads):
        x = _numpy("input", input)
        t = _numpy("target", target)
        w = None if weight is None else _numpy("weight", weight)
        axis = 1 if x.ndim > 1 else 0
        options = dict(weight=w, ignore_index=ignore_index, reduction=reduction,
                       label_smoothing=label_smoothing, axis=axis, num_threads=num_threads)
        ctx.axis, ctx.reduction = axis, reduction
        if ctx.needs_input_grad[0]:
            loss, grad = _cross_entropy(x, t, return_grad=True, **options)
            ctx.save_for_backward(torch.from_numpy(grad))
        else:
            loss = _cross_entropy(x, t, **options)
        return torch.as_tensor(loss)

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        if ctx.reduction == "none" and grad_output.dim() > 0:
            # each row's loss depends on its own logits only
            grad_output = grad_output.unsqueeze(ctx.axis)
        return grad * grad_output, None, None, None, None, None, None


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, num_threads=None):
    """``torch.nn.functional.cross_entropy`` computed by xentc on CPU tensors.

    Parameters
    ----------
    input : torch.Tensor
        Logits of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)`` on the CPU;
        float16, float32 or float64.
    target : torch.Tensor
        Class indices (an integer tensor of the shape of `input` without the
        class dimension) or class probabilities (the shape of `input`).
    weight, ignore_index, reduction, label_smoothing
        As in ``torch.nn.functional.cross_entropy``.
    num_threads : int, optional
        xentc's OpenMP threads; None uses OpenMP's default.

    Returns
    -------
    torch.Tensor
        The loss; differentiable with respect to `input`.

    Raises
    ------
    ValueError
        A tensor on another device than the CPU, and every error of
        :func:`xentc.cross_entropy`.
    TypeError
        A dtype xentc cannot take (bfloat16, complex).
    NotImplementedError
        A `target` or `weight` that requires a gradient.

    Notes
    -----
    The forward pass computes and keeps the gradient (one array like `input`)
    when `input` requires a gradient; a "mean" with no counted row is 0 with
    a zero gradient where PyTorch returns NaN.

    Examples
    --------
    >>> import torch, xentc.torch
    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]], requires_grad=True)
    >>> loss = xentc.torch.cross_entropy(logits, torch.tensor([0, 2]))
    >>> loss.backward()
    >>> round(loss.item(), 5), logits.grad.shape
    (0.16812, torch.Size([2, 3]))
    """
    for name, tensor in (("target", target), ("weight", weight)):
        if isinstance(tensor, torch.Tensor) and tensor.requires_grad:
            raise NotImplementedError(
                f"xentc.torch.cross_entropy does not differentiate with respect to {name}; "
                f"pass {name}.detach()"
            )
    return _CrossEntropy.apply(input, target, weight, ignore_index, reduction, label_smoothing,
                               num_threads)
