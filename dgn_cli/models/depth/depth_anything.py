"""Depth Anything V2 Small: a DINOv2 ViT-S/14 encoder and a DPT head, in plain PyTorch.

The module tree mirrors the released checkpoint `depth_anything_v2_vits.pth` key for key
(`pretrained.*` for the encoder, `depth_head.*` for the head), so that file loads strictly
with no renaming. Reference: Yang et al., "Depth Anything V2" (2024); DINOv2 (Oquab et al.
2023); DPT (Ranftl et al. 2021).

forward: ImageNet-normalised RGB (B, 3, H, W), H and W multiples of 14
      -> (B, H, W) relative disparity (non-negative, larger = nearer, unknown scale/shift).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PATCH = 14
PRETRAIN_GRID = 37  # position embeddings are stored for 518 / 14 = 37 patches a side
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --- encoder: DINOv2 ViT-S/14 ------------------------------------------------------------------


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, dim)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, head_dim)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """ViT-S/14 as trained by DINOv2 (no register tokens). `mask_token` is unused at inference
    but is part of the checkpoint."""

    def __init__(self, dim: int = 384, depth: int = 12, heads: int = 6):
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, PRETRAIN_GRID**2 + 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """(1, 1 + grid_h * grid_w, dim): the stored 37x37 grid resampled to the token grid.

        Matches the reference: bicubic, no antialias, and a scale factor of
        (grid + 0.1) / 37 (the +0.1 avoids a floor rounding one grid cell short), which also
        sets the sampling positions; the result is exactly grid_h x grid_w.
        """
        n = self.pos_embed.shape[1] - 1
        if grid_h * grid_w == n and grid_h == grid_w:
            return self.pos_embed
        pos = self.pos_embed.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        side = math.sqrt(n)
        dim = pos.shape[-1]
        grid = patch_pos.reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)
        grid = F.interpolate(
            grid,
            scale_factor=((grid_h + 0.1) / side, (grid_w + 0.1) / side),
            mode="bicubic",
            antialias=False,
        )
        if grid.shape[-2:] != (grid_h, grid_w):  # guard the float rounding the offset prevents
            raise RuntimeError(f"position grid {tuple(grid.shape[-2:])} != {(grid_h, grid_w)}")
        patch_pos = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
        return torch.cat([cls_pos, patch_pos], dim=1).to(self.pos_embed.dtype)

    def intermediate_features(self, x: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """Patch tokens (B, N, dim) after the final norm, for each block index in `layers`."""
        b, _, h, w = x.shape
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(h // PATCH, w // PATCH).to(tokens.dtype)
        outputs = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i in layers:
                outputs.append(self.norm(tokens)[:, 1:])
        return outputs


# --- head: DPT ---------------------------------------------------------------------------------


class ResidualConvUnit(nn.Module):
    def __init__(self, chs: int):
        super().__init__()
        self.conv1 = nn.Conv2d(chs, chs, 3, padding=1)
        self.conv2 = nn.Conv2d(chs, chs, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """Adds the (refined) skip, refines, upsamples (bilinear, align_corners) and projects.

    `resConfUnit1` refines the skip input; the deepest block has no skip, so its
    resConfUnit1 is unused (but present in the checkpoint)."""

    def __init__(self, chs: int):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(chs)
        self.resConfUnit2 = ResidualConvUnit(chs)
        self.out_conv = nn.Conv2d(chs, chs, 1)

    def forward(
        self,
        x: torch.Tensor,
        skip: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        size = size or (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Scratch(nn.Module):
    def __init__(self, in_chs: tuple[int, ...], features: int):
        super().__init__()
        self.layer1_rn = nn.Conv2d(in_chs[0], features, 3, padding=1, bias=False)
        self.layer2_rn = nn.Conv2d(in_chs[1], features, 3, padding=1, bias=False)
        self.layer3_rn = nn.Conv2d(in_chs[2], features, 3, padding=1, bias=False)
        self.layer4_rn = nn.Conv2d(in_chs[3], features, 3, padding=1, bias=False)
        self.refinenet1 = FusionBlock(features)
        self.refinenet2 = FusionBlock(features)
        self.refinenet3 = FusionBlock(features)
        self.refinenet4 = FusionBlock(features)
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, 1),
            nn.ReLU(),
        )


class DPTHead(nn.Module):
    """Four token maps (1/14 scale) -> pyramid (x4, x2, x1, x1/2) -> fused -> disparity."""

    def __init__(
        self, dim: int = 384, features: int = 64, chs: tuple[int, ...] = (48, 96, 192, 384)
    ):
        super().__init__()
        self.projects = nn.ModuleList(nn.Conv2d(dim, c, 1) for c in chs)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(chs[0], chs[0], 4, stride=4),
                nn.ConvTranspose2d(chs[1], chs[1], 2, stride=2),
                nn.Identity(),
                nn.Conv2d(chs[3], chs[3], 3, stride=2, padding=1),
            ]
        )
        self.scratch = Scratch(chs, features)

    def forward(self, tokens: list[torch.Tensor], grid_h: int, grid_w: int) -> torch.Tensor:
        maps = []
        for t, project, resize in zip(tokens, self.projects, self.resize_layers, strict=True):
            x = t.transpose(1, 2).reshape(t.shape[0], t.shape[-1], grid_h, grid_w)
            maps.append(resize(project(x)))
        s = self.scratch
        l1, l2, l3, l4 = (
            s.layer1_rn(maps[0]),
            s.layer2_rn(maps[1]),
            s.layer3_rn(maps[2]),
            s.layer4_rn(maps[3]),
        )
        x = s.refinenet4(l4, size=l3.shape[-2:])
        x = s.refinenet3(x, l3, size=l2.shape[-2:])
        x = s.refinenet2(x, l2, size=l1.shape[-2:])
        x = s.refinenet1(x, l1)
        x = s.output_conv1(x)
        x = F.interpolate(
            x, size=(grid_h * PATCH, grid_w * PATCH), mode="bilinear", align_corners=True
        )
        return s.output_conv2(x)  # (B, 1, H, W)


class DepthAnythingV2Small(nn.Module):
    """Depth Anything V2 Small (24.8 M parameters, Apache-2.0 weights).

    (B, 3, H, W) ImageNet-normalised RGB, H and W multiples of 14 -> (B, H, W) relative
    disparity >= 0 (larger = nearer). Features of blocks 2, 5, 8 and 11 feed the head.
    """

    layers = (2, 5, 8, 11)

    def __init__(self):
        super().__init__()
        self.pretrained = DinoVisionTransformer()
        self.depth_head = DPTHead()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % PATCH or w % PATCH:
            raise ValueError(f"input {h}x{w}: height and width must be multiples of {PATCH}")
        tokens = self.pretrained.intermediate_features(x, self.layers)
        disparity = self.depth_head(tokens, h // PATCH, w // PATCH)
        return F.relu(disparity).squeeze(1)
