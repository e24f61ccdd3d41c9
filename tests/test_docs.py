"""The examples users read: docstring doctests and the README's Python block."""
import doctest
import re
from pathlib import Path

import numpy as np
import pytest

import xentc
import xentc._api

README = Path(__file__).resolve().parents[1] / "README.md"


def test_docstring_examples():
    result = doctest.testmod(xentc._api, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8
    assert result.failed == 0


def test_readme_example_runs_and_its_comments_are_right():
    text = README.read_text()
    block = re.search(r"## Example\n\n```python\n(.*?)```", text, re.S)
    assert block, "README has no python example block"
    code = block.group(1)
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    logits = namespace["logits"]
    # the in-place call overwrote logits with the gradient: each row sums to 0
    np.testing.assert_allclose(logits.sum(axis=1), 0, atol=1e-6)
    assert namespace["grad"] is logits
    # the numbers quoted in the comments are what the calls return
    quoted = re.findall(r"# array\(\[([^\]]*)\]\)", code)
    got = [
        xentc.softmax_cross_entropy_with_logits([[0.1, 0.02, 0.88]], [[1.0, -3.0, 10.0]]),
        xentc.softmax([0.1, 0.3, 0.5, 0.9]),
    ]
    assert len(quoted) == len(got)
    for text_values, values in zip(quoted, got):
        expected = np.array([float(v) for v in text_values.split(",")])
        np.testing.assert_allclose(values, expected, rtol=1e-7)


@pytest.mark.parametrize("name", xentc.__all__)
def test_public_names_are_documented(name):
    obj = getattr(xentc, name)
    if callable(obj):
        assert obj.__doc__ and "Examples" in obj.__doc__
