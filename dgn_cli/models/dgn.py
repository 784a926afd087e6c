"""The Depth Guided Network (Li et al., IEEE TIP 2020), ordered small to large.

    DGNConfig        every size and choice, stored in each checkpoint
    EncoderDecoder   the 24-layer layout of the paper's Tables I-II (SRN-DeblurNet style)
    DepthRefinement  G_D:  D_r = D_b + G_D(D_b, B)                   (Eq. 1)
    Deblur           G_B:  I   = B   + G_B(B, D_r)                   (Eq. 2, Eq. 9 for video)
    DGN              both branches; pads any H x W to a multiple of 4 and crops back

Conventions: images in [-1, 1], depth = normalised inverse depth in [0, 1] (1 = nearest).

Choices where the paper is silent (all configurable in DGNConfig):
- Conv1 and Conv24 use `io_kernel_size` = 5 (a wider first look at the blur for ~3k params);
  every other conv is `kernel_size` = 3. Upconvs are 4x4 transposed convs, stride 2.
- tanh sits on the branch output (after Conv24), before the residual sum, so each branch
  predicts a bounded correction; the sum itself is not clamped (the engine clamps outputs).
- The SFT layer follows Conv1's leaky ReLU; its condition convs are 32 wide (`sft_chs`).
- Conv24 (each branch's last conv) starts at zero, so an untrained DGN is the exact identity
  (I = B + tanh(0), D_r = D_b) and training starts from the blurry input's score instead of
  from a random correction of ~17 grey levels (7.5 dB below the input).
- `baseline`: no depth branch and no SFT; four extra residual blocks between Conv9 and
  Upconv16 (paper Sec. V-B). The paper says they make the baseline "similar in size" to DGN
  but not how wide they are: plain 128-wide blocks would leave it ~25 % smaller, so each extra
  block widens inside to `baseline_extra_mid_chs` (default 2.25 x the bottom width: 288 for
  widths 32/64/128), which matches DGN's total to 0.1 % (3 % at half width).
- `concat` (Table X): the guidance is concatenated to each branch's input instead of SFT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from dgn_cli.jsonconfig import JsonConfig
from dgn_cli.models.blocks import ConvAct, ResBlock, SFTLayer, UpConvAct, conv
from dgn_cli.tensors import centre_frame, centre_index, pad_to_multiple


@dataclass(frozen=True)
class Variant:
    """How a DGN variant feeds depth to its branches."""

    uses_depth: bool  # has the refinement branch G_D and takes an initial depth
    depth_by_sft: bool  # depth/image guidance through SFT layers (else concatenated inputs)
    extra_blocks: bool  # extra bottom blocks (the baseline: size-matched to the DGN)


# The paper's DGN, its size-matched no-depth baseline, and the concatenation ablation (Table IX).
VARIANT_TABLE = {
    "dgn": Variant(uses_depth=True, depth_by_sft=True, extra_blocks=False),
    "baseline": Variant(uses_depth=False, depth_by_sft=False, extra_blocks=True),
    "concat": Variant(uses_depth=True, depth_by_sft=False, extra_blocks=False),
}
VARIANTS = tuple(VARIANT_TABLE)
PAD_MULTIPLE = 4  # two stride-2 stages


@dataclass(frozen=True)
class DGNConfig(JsonConfig):
    """Architecture of a DGN checkpoint; saved as JSON in every checkpoint's metadata."""

    variant: str = "dgn"  # dgn | baseline | concat
    frames: int = 1  # 1 = image model, 5 = video model (frames t-2 .. t+2 stacked)
    image_chs: int = 3
    widths: tuple[int, int, int] = (32, 64, 128)
    kernel_size: int = 3
    io_kernel_size: int = 5  # Conv1 and Conv24
    blocks_per_scale: int = 3  # Res2-4, Res6-8, Res17-19, Res21-23
    bottom_blocks: int = 6  # Res10-15
    sft_chs: int = 32
    baseline_extra_blocks: int = 4
    baseline_extra_mid_chs: int | None = None  # None = round(2.25 * widths[2]), size-matched
    slope: float = 0.2
    extra: dict = field(default_factory=dict)  # free-form notes (kept, never interpreted)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown DGN variant {self.variant!r}; choose one of {VARIANTS}")
        if self.frames < 1 or self.frames % 2 == 0:
            raise ValueError(
                f"frames must be odd and positive (centre frame restored), got {self.frames}"
            )
        if len(self.widths) != 3:
            raise ValueError(f"widths needs three numbers (one per scale), got {self.widths}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.baseline_extra_mid_chs is None:
            object.__setattr__(self, "baseline_extra_mid_chs", round(2.25 * self.widths[2]))

    @property
    def uses_depth(self) -> bool:
        return VARIANT_TABLE[self.variant].uses_depth

    @property
    def variant_spec(self) -> Variant:
        return VARIANT_TABLE[self.variant]


class DGNOutput(NamedTuple):
    image: torch.Tensor  # (B, 3, H, W), [-1, 1] up to the residual's overshoot
    depth: torch.Tensor | None  # refined depth D_r (B, 1, H, W); None for the baseline


class EncoderDecoder(nn.Module):
    """Conv1 -> [SFT] -> Res2-4 -> Conv5 -> Res6-8 -> Conv9 -> Res10-15 [-> extra] ->
    Upconv16 (+Res8) -> Res17-19 -> Upconv20 (+Res4) -> Res21-23 -> Conv24 -> tanh.

    (B, in_chs, H, W) -> (B, out_chs, H, W) in [-1, 1]; H and W multiples of 4.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        cfg: DGNConfig,
        guide_chs: int | None = None,
        extra_blocks: int = 0,
    ):
        super().__init__()
        w1, w2, w3 = cfg.widths
        k, s = cfg.kernel_size, cfg.slope

        def res(chs: int, n: int, mid: int | None = None) -> nn.Sequential:
            return nn.Sequential(*(ResBlock(chs, k, mid, s) for _ in range(n)))

        self.conv1 = ConvAct(in_chs, w1, cfg.io_kernel_size, slope=s)
        self.sft = SFTLayer(guide_chs, w1, cfg.sft_chs, k, s) if guide_chs else None
        self.res2_4 = res(w1, cfg.blocks_per_scale)
        self.conv5 = ConvAct(w1, w2, k, stride=2, slope=s)
        self.res6_8 = res(w2, cfg.blocks_per_scale)
        self.conv9 = ConvAct(w2, w3, k, stride=2, slope=s)
        self.res10_15 = res(w3, cfg.bottom_blocks)
        self.res_extra = res(w3, extra_blocks, cfg.baseline_extra_mid_chs) if extra_blocks else None
        self.upconv16 = UpConvAct(w3, w2, s)
        self.res17_19 = res(w2, cfg.blocks_per_scale)
        self.upconv20 = UpConvAct(w2, w1, s)
        self.res21_23 = res(w1, cfg.blocks_per_scale)
        self.conv24 = conv(w1, out_chs, cfg.io_kernel_size)
        nn.init.zeros_(self.conv24.weight)  # identity at initialisation (see module docstring)
        nn.init.zeros_(self.conv24.bias)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor | None = None) -> torch.Tensor:
        features = self.conv1(x)  # (B, w1, H, W)
        if self.sft is not None:
            features = self.sft(features, guidance)
        skip_full = self.res2_4(features)  # (B, w1, H, W)
        skip_half = self.res6_8(self.conv5(skip_full))  # (B, w2, H/2, W/2)
        bottom = self.res10_15(self.conv9(skip_half))  # (B, w3, H/4, W/4)
        if self.res_extra is not None:
            bottom = self.res_extra(bottom)
        up_half = self.res17_19(self.upconv16(bottom) + skip_half)
        up_full = self.res21_23(self.upconv20(up_half) + skip_full)
        return torch.tanh(self.conv24(up_full))


class DepthRefinement(nn.Module):
    """G_D: refines the initial depth D_b (B, 1, H, W) guided by the blurred centre frame."""

    def __init__(self, cfg: DGNConfig):
        super().__init__()
        self.sft = cfg.variant_spec.depth_by_sft
        in_chs = 1 if self.sft else 1 + cfg.image_chs
        self.net = EncoderDecoder(in_chs, 1, cfg, guide_chs=cfg.image_chs if self.sft else None)

    def forward(self, depth: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if self.sft:
            return depth + self.net(depth, image)
        return depth + self.net(torch.cat([depth, image], dim=1))


class Deblur(nn.Module):
    """G_B: restores the centre frame from `frames` stacked frames (B, 3*frames, H, W),
    guided by the refined depth (B, 1, H, W) unless the variant is the no-depth baseline."""

    def __init__(self, cfg: DGNConfig):
        super().__init__()
        spec = cfg.variant_spec
        self.image_chs, self.frames = cfg.image_chs, cfg.frames
        self.depth_by_sft = spec.uses_depth and spec.depth_by_sft
        self.depth_in_input = spec.uses_depth and not spec.depth_by_sft
        in_chs = cfg.image_chs * cfg.frames + (1 if self.depth_in_input else 0)
        guide = 1 if self.depth_by_sft else None
        extra = cfg.baseline_extra_blocks if spec.extra_blocks else 0
        self.net = EncoderDecoder(in_chs, cfg.image_chs, cfg, guide_chs=guide, extra_blocks=extra)

    def centre_frame(self, frames: torch.Tensor) -> torch.Tensor:
        return centre_frame(frames, self.frames, self.image_chs)

    def forward(self, frames: torch.Tensor, depth: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.cat([frames, depth], dim=1) if self.depth_in_input else frames
        correction = self.net(x, depth if self.depth_by_sft else None)
        return self.centre_frame(frames) + correction


class DGN(nn.Module):
    """Depth Guided Network: (blurred frames, initial depth) -> (deblurred image, refined depth).

    frames: (B, 3*cfg.frames, H, W) in [-1, 1], any H x W; depth: (B, 1, H, W) in [0, 1]
    (ignored, and may be None, for the baseline). `refine=False` bypasses G_D: the depth given
    is used as D_r (the Table IX rows "reference depth" and "initial depth").
    """

    def __init__(self, cfg: DGNConfig | None = None):
        super().__init__()
        self.config = cfg or DGNConfig()
        self.refinement = DepthRefinement(self.config) if self.config.uses_depth else None
        self.deblur = Deblur(self.config)

    def forward(
        self, frames: torch.Tensor, depth: torch.Tensor | None = None, refine: bool = True
    ) -> DGNOutput:
        h, w = frames.shape[-2:]
        frames = pad_to_multiple(frames, PAD_MULTIPLE)
        if self.refinement is None:
            image = self.deblur(frames)
            return DGNOutput(image[..., :h, :w], None)
        if depth is None:
            raise ValueError("this DGN variant needs the initial depth map (B, 1, H, W)")
        depth = pad_to_multiple(depth, PAD_MULTIPLE)
        refined = self.refinement(depth, self.deblur.centre_frame(frames)) if refine else depth
        image = self.deblur(frames, refined)
        return DGNOutput(image[..., :h, :w], refined[..., :h, :w])


def parameter_counts(model: DGN) -> dict[str, int]:
    """Parameters per branch: {"refinement", "deblurring", "total"} (refinement 0 for baseline)."""

    def count(module: nn.Module | None) -> int:
        return sum(p.numel() for p in module.parameters()) if module is not None else 0

    counts = {"refinement": count(model.refinement), "deblurring": count(model.deblur)}
    counts["total"] = counts["refinement"] + counts["deblurring"]
    return counts


def randomize_outputs(model: DGN) -> DGN:
    """Give each branch's Conv24 the default random initialisation, in place; returns `model`.
    A fresh DGN is the identity (zero Conv24, the right start for training); an untrained
    model used to exercise a pipeline (tests, timing, "random" weights) should change its input."""
    for module in model.modules():
        if isinstance(module, EncoderDecoder):
            module.conv24.reset_parameters()
    return model


def expand_image_state_to_video(state: dict[str, torch.Tensor], frames: int) -> dict:
    """An image DGN's state dict as a `frames`-frame video DGN's: the deblurring branch's Conv1
    gets the image weights on the centre frame's input channels and zeros on the others, so
    the video model starts as exactly the image model (and training teaches it to use the
    neighbours). Every other tensor is shared unchanged. Returns a new dict."""
    key = "deblur.net.conv1.0.weight"
    weight = state[key]
    image_chs = weight.shape[1]
    expanded = weight.new_zeros(weight.shape[0], image_chs * frames, *weight.shape[2:])
    centre = centre_index(frames)
    expanded[:, centre * image_chs : (centre + 1) * image_chs] = weight
    return {**state, key: expanded}
