"""The README's Python API example runs as written (with the shipped weights, offline)."""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def test_readme_api_example_runs(monkeypatch, capsys):
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(REPO)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's warning on read-only numpy arrays
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 (the README's own code)
    assert capsys.readouterr().out.split() == [
        "(480,", "320)", "(320,", "480,", "3)", "(160,", "480,", "3)", "(160,", "480,", "3)",
        "(320,", "480)", "(320,", "480,", "3)",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def deblurrer(tiny_checkpoints):
    from dgn_cli import Deblurrer  # the package's top level

    ckpt = tiny_checkpoints
    return Deblurrer(str(ckpt["identity"]), str(ckpt["depth"]), "cpu", "fp32")


def test_pil_read_only_and_lists(deblurrer):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    frozen = array.copy()
    frozen.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = deblurrer.deblur(frozen)
    assert np.array_equal(out, deblurrer.deblur(array))
    for mode in ("RGB", "RGBA", "L", "I;16"):
        im = (
            Image.fromarray(array).convert(mode)
            if mode != "I;16"
            else Image.fromarray(array[..., 0].astype(np.uint16) * 257)
        )
        got = deblurrer.deblur(im)
        assert isinstance(got, Image.Image) and got.mode == im.mode and got.size == im.size
    pal = deblurrer.deblur(Image.fromarray(array).convert("P"))
    assert pal.mode == "RGB"
    many = deblurrer.deblur([array, array[:10], Image.fromarray(array)])
    assert isinstance(many, list) and len(many) == 3
    assert np.array_equal(many[0], out) and many[1].shape == (10, 40, 3)
    assert isinstance(many[2], Image.Image)
    assert deblurrer.depth(Image.fromarray(array)).shape == (24, 40)
