"""xentc: fast, accurate softmax cross-entropy with logits on the CPU.

Loss and gradient in one fused pass (the gradient written in place when
asked), for dense (probability) and sparse (integer) labels, plus the
softmax family they are built from, and `score` (loss, perplexity,
accuracy, top-k and calibration, streamed over memory-mapped files).
`xentc.dask` (optional) runs the losses and `score` on Dask arrays.  See the README for the semantics.
"""
from ._version import __version__
from ._cross_entropy import cross_entropy
from ._api import (
    empty_buffer_cache,
    log_softmax,
    logsumexp,
    openmp_enabled,
    set_buffer_cache,
    show_config,
    softmax,
    softmax_cross_entropy_with_logits,
    sparse_softmax_cross_entropy_with_logits,
)
from ._score import ScoreResult, score
from ._binary import (
    binary_crossentropy,
    categorical_crossentropy,
    sigmoid_cross_entropy_with_logits,
)

__all__ = [
    "ScoreResult",
    "__version__",
    "binary_crossentropy",
    "categorical_crossentropy",
    "cross_entropy",
    "empty_buffer_cache",
    "log_softmax",
    "logsumexp",
    "openmp_enabled",
    "score",
    "set_buffer_cache",
    "show_config",
    "sigmoid_cross_entropy_with_logits",
    "softmax",
    "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits",
]
