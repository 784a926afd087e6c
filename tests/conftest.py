"""Shared fixtures: tiny models and their checkpoints, an offline Hugging Face cache, photos.

The tiny sizes themselves are in tiny.py (one definition)."""

import hashlib
import os
from pathlib import Path

import pytest
import torch
from tiny import TINY, TINY_DEPTH, train_args, write_smooth_photos

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
        return DGNConfig(**{**TINY, **overrides})

    return make


def make_tiny_depth_net(**overrides):
    """The tiny SmallDepthNet with random weights (torch's global generator), its head included:
    a fresh net's head is zero (it says 0.5 everywhere), a trained one's is not, and the tests
    want depth that varies over the frame."""
    from dgn_cli.models.depth import SmallDepthConfig, SmallDepthNet

    net = SmallDepthNet(SmallDepthConfig(**{**TINY_DEPTH, **overrides}))
    torch.nn.init.normal_(net.head.weight, std=0.5)
    return net


@pytest.fixture
def tiny_depth_net():
    """make_tiny_depth_net as a fixture: tiny_depth_net(**config overrides) -> SmallDepthNet."""
    return make_tiny_depth_net


class TinyCheckpoints:
    """Tiny checkpoints written once per session, each from `torch.manual_seed(0)`:

    image, video               DGN (frames 1 / 5) with a random Conv24 in each branch
                               (`randomize_outputs`): the output differs from the input
    identity, identity-video   fresh DGN (frames 1 / 5): output = input exactly, D_r = D_b
    baseline                   fresh baseline variant (no depth branch): output = input
    depth                      the tiny SmallDepthNet

    Shared by every test: read them, never write into their folder."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __getitem__(self, name: str) -> Path:
        return self.folder / f"{name}.safetensors"

    def args(self, name: str = "image") -> list[str]:
        """Options for the `name` DGN and the depth net, on the CPU in fp32 (bf16 on a CPU
        compiles kernels per shape)."""
        return [
            "--weights", str(self[name]), "--depth-model", str(self["depth"]),
            "--device", "cpu", "--precision", "fp32",
        ]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """The TinyCheckpoints; torch's global generator is left as it was."""
    from dgn_cli import checkpoints
    from dgn_cli.models import DGN, DGNConfig
    from dgn_cli.models.dgn import randomize_outputs

    saved = TinyCheckpoints(tmp_path_factory.mktemp("tiny-checkpoints"))
    dgns = {
        "image": lambda: randomize_outputs(DGN(DGNConfig(**TINY))),
        "video": lambda: randomize_outputs(DGN(DGNConfig(frames=5, **TINY))),
        "identity": lambda: DGN(DGNConfig(**TINY)),
        "identity-video": lambda: DGN(DGNConfig(frames=5, **TINY)),
        "baseline": lambda: DGN(DGNConfig(variant="baseline", **TINY)),
    }
    with torch.random.fork_rng(devices=[]):
        for name, make in dgns.items():
            torch.manual_seed(0)
            checkpoints.save_dgn(make(), saved[name])
        torch.manual_seed(0)
        checkpoints.save_depth_net(make_tiny_depth_net(), saved["depth"])
    return saved


@pytest.fixture
def tiny_train_args():
    """`tiny_train_args(task="image")`: the `dgn train` options (--widths, --config KEY=VALUE)
    of the tiny DGN, or of the tiny depth net for task="depth"."""
    return lambda task="image": train_args(TINY_DEPTH if task == "depth" else TINY)


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
    return write_smooth_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache (HF_HUB_CACHE), offline (HF_HUB_OFFLINE=1), and no
    DGN_WEIGHTS_DIR: checkpoint resolution sees only the repository's weights/ and this."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DGN_WEIGHTS_DIR", raising=False)
    return cache


@pytest.fixture
def hub_file(hf_cache):
    """`hub_file(repo_id, filename, revision, data, blob_name=None, ref="main") -> path`: lay out
    one file in `hf_cache` as huggingface_hub's cache does: blobs/<etag> (default: the
    sha256 of `data`, as for an LFS file) + snapshots/<revision>/<filename> linking to it, and
    refs/<ref> naming `revision` (ref=None: no ref, as a download pinned to a commit leaves)."""

    def add(repo_id, filename, revision, data, blob_name=None, ref="main") -> Path:
        repo = hf_cache / f"models--{repo_id.replace('/', '--')}"
        blob = repo / "blobs" / (blob_name or hashlib.sha256(data).hexdigest())
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / revision / filename
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
        if ref is not None:
            (repo / "refs").mkdir(exist_ok=True)
            (repo / "refs" / ref).write_text(revision)
        return link

    return add
