"""The tiny model sizes and tiny inputs every test uses, defined once.

conftest.py builds its fixtures (`tiny_config`, `tiny_depth_net`, `tiny_checkpoints`,
`tiny_train_args`) on these; a test module imports them (`from tiny import TINY`) only where a
plain value is needed outside a test function (test_train.py's `cfg()` helper)."""

# DGNConfig fields: a forward/backward in milliseconds. The baseline fields only matter for
# `variant="baseline"` (one extra block of 8 channels instead of four of 2.25 x widths[2]).
TINY = dict(
    widths=(4, 8, 8),
    blocks_per_scale=1,
    bottom_blocks=1,
    sft_chs=4,
    baseline_extra_blocks=1,
    baseline_extra_mid_chs=8,
)

# SmallDepthConfig fields of the tiny depth net.
TINY_DEPTH = dict(widths=(4, 8))


def train_args(config: dict = TINY) -> list[str]:
    """`dgn train` options for `config`: --widths W1,W2,W3 and one --config KEY=VALUE per field."""
    args = ["--widths", ",".join(map(str, config["widths"]))]
    for key, value in config.items():
        if key != "widths":
            args += ["--config", f"{key}={value}"]
    return args


def write_smooth_photos(folder, count: int = 3, size: tuple[int, int] = (90, 120), seed: int = 1):
    """`count` smooth-noise RGB 'photos' p0.png, p1.png, ... of (height, width) `size`, contrast
    stretched to 0..255, in `folder` (made if needed): food for the synthetic blur generator."""
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        img = cv2.GaussianBlur(rng.random((*size, 3)).astype(np.float32), (0, 0), 2)
        img = (img - img.min()) / (img.max() - img.min())
        cv2.imwrite(str(folder / f"p{i}.png"), (img * 255).astype(np.uint8))
    return folder


def dihedral(x):
    """All 8 flips / 90-degree rotations of a (C, H, W) tensor, in a fixed order: the set the
    training augmentation draws from, to find which one an augmented item got."""
    import torch

    out = []
    for k in range(4):
        r = torch.rot90(x, k, dims=(1, 2))
        out += [r, torch.flip(r, dims=(2,))]
    return out
