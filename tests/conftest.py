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
