"""Shared fixtures: tiny model configs, offline Hub, deterministic seeds."""

import os

import pytest
import torch

# No test may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_config():
    """A DGN small enough to run a forward/backward in milliseconds."""
    from dgn_cli.models import DGNConfig

    def make(**overrides):
        base = dict(
            widths=(4, 8, 8),
            blocks_per_scale=1,
            bottom_blocks=1,
            sft_chs=4,
            baseline_extra_blocks=1,
            baseline_extra_mid_chs=8,
        )
        base.update(overrides)
        return DGNConfig(**base)

    return make


@pytest.fixture
def untrained_weights(tmp_path_factory, monkeypatch):
    """The registry as a fresh checkout without trained weights would have it: the project's
    own entries untrained, no files in weights/. Tests of the "not trained yet" paths use this
    so they do not depend on which checkpoints the repository ships."""
    import json
    import shutil

    from dgn_cli import registry

    shipped = registry.manifest_path()
    folder = tmp_path_factory.mktemp("weights")
    data = json.loads(shipped.read_text())
    for entry in data["entries"]:
        if entry["name"].startswith("dgn-"):
            entry.update(status="untrained", sha256=None, size=None)
            entry.pop("training", None)
    (folder / shipped.name).write_text(json.dumps(data))
    shutil.copy(shipped, folder / "manifest.shipped.json")  # for debugging only
    monkeypatch.setattr(registry, "weights_dir", lambda: folder)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three small smooth-noise 'photos' for `--data synth` training runs."""
    import cv2
    import numpy as np

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    for i in range(3):
        img = cv2.GaussianBlur(rng.random((90, 120, 3)).astype(np.float32), (0, 0), 2)
        img = (img - img.min()) / (img.max() - img.min())
        cv2.imwrite(str(folder / f"p{i}.png"), (img * 255).astype(np.uint8))
    return folder
