"""VGG-19 feature extractor for the perceptual loss (paper Eq. 5: features of conv3-3).

Layer indices and state-dict keys follow torchvision's `vgg19().features` exactly
(`features.0.weight` ... `features.14.bias`), so a standard ImageNet VGG-19 state dict loads
after the unused layers (conv3_4 onwards and the classifier) are dropped with
`vgg19_conv3_3_state`.

Choice: the features are taken at the OUTPUT OF conv3_3, BEFORE its ReLU (torchvision index 14),
literally the layer the paper names and what DeblurGAN's perceptual loss uses; the ReLU would
zero out every negative response and with it half the signal. `after_relu=True` appends the
ReLU (index 15) for those who want "relu3_3".

Input: RGB (B, 3, H, W) in [-1, 1]; mapped to [0, 1] then ImageNet mean/std inside.
"""

from __future__ import annotations

import torch
from torch import nn

# torchvision vgg19 "E" layout up to conv3_3: numbers are conv widths, "M" a 2x2 max pool.
_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256)
CONV3_3_INDEX = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Conv33(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> conv3_3 features (B, 256, H/4, W/4). Frozen, always eval."""

    def __init__(self, after_relu: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        in_chs = 3
        for item in _LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_chs, item, 3, padding=1), nn.ReLU(inplace=True)]
                in_chs = item
        if not after_relu:
            layers.pop()  # conv3_3's ReLU
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Conv33:
        return super().train(False)  # a fixed loss network: never leaves eval mode

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = ((image + 1) / 2 - self.mean) / self.std
        return self.features(x)


def vgg19_conv3_3_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the keys of a torchvision-layout VGG-19 state dict that VGG19Conv33 uses.

    Accepts `features.N.*` keys, optionally behind a `module.` or `vgg.` style prefix
    (e.g. a full `vgg19` model's state dict); drops the classifier and layers past conv3_3.
    """
    wanted = {f"features.{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14) for p in ("weight", "bias")}
    out = {}
    for key, value in state.items():
        tail = key[key.index("features.") :] if "features." in key else key
        if tail in wanted:
            out[tail] = value
    return out
