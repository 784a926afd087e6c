"""The one inference engine every command uses (image, video, depth, benchmark).

    cfg = EngineConfig(weights="dgn-image", device="auto", precision="auto")
    engine = build_engine(cfg)                 # loads the DGN and the depth estimator once;
                                               # build_engine(cfg, "onnxruntime"): ONNX graphs
    depth = engine.estimate_depth(image)       # (1,3,H,W) [0,1] -> (1,1,H,W) [0,1]
    sharp, refined = engine.restore(frames, depth, progress=cb)   # frames (1,3F,H,W) [0,1]
    sharp, depth, refined = engine.deblur(image)   # estimate_depth + restore (image model)
    out, mask = engine.control(image, sharp, refined, blend.Control(keep="background"))

    Engine(cfg, dgn=model, depth_estimator=est)   # in-memory models (training, tests); they
                                                  # are moved to the device, channels-last
    engine.info()        # {"device", "device_name", "precision", "weights", "depth_model", ...}
    engine.last_run      # RunStats of the last restore: tile, tiles, oom_retries, fp32_recomputed
    engine.auto_tile(h, w)   # the tile size restore would use now (0 = whole image)

restore(..., return_depth=False) skips the refined-depth buffer (video). For the no-depth
baseline variant, depths are None and no depth estimator is loaded unless asked for.

All tensors in and out are float32 on the CPU, (B, C, H, W) with B = 1; images are RGB in
[0, 1] (the engine converts to the network's [-1, 1] per tile), depth is normalised inverse
depth in [0, 1] (1 = nearest). The engine moves tiles to `engine.device` and back, so a
full-resolution image never has to fit on the GPU. It never prints: `progress(done, total)`
is called after each tile.

EngineConfig fields:
- weights: a registry name ("dgn-image"), a checkpoint path, or "random" (a seeded random
  default-config DGN with `frames` input frames plus a random small depth net: for tests
  only, the CLI says so loudly). None = the default for `kind` (DEFAULT_DGN[kind]).
- depth_model: a registry name or a path; None = DEFAULT_DEPTH (or a random small depth net
  when weights == "random").
- device: auto | cpu | cuda | cuda:N | mps; precision: auto | fp32 | bf16 | fp16
  (see dgn_cli.devices for the rules).
- tile: None = chosen from the memory budget, 0 = whole image, N = tiles of N x N px (the
  size the network sees, context included). The budget (dgn_cli.devices.memory_budget) is
  half the free CUDA memory, or a quarter of the available RAM (at most 8 GiB) on the CPU;
  with bpp = dgn_bytes_per_pixel(cfg) = 8 * (8*w1 + 2*sft_chs + 3*frames + 2) bytes
  (2600 for the default image DGN; the measured CPU fp32 peak is ~1300), the whole image is
  run in one piece when H*W*bpp <= budget, else tile = floor(sqrt(budget / bpp)) rounded
  down to a multiple of 32, at least max(MIN_TILE = 128, 2 * overlap).
- kind: "image" | "video": the default weights (DEFAULT_DGN[kind]) and, for "random",
  the number of input frames (1 | 5).
- load_dgn: False builds a depth-only engine (`dgn depth` without --refined).
- tile_overlap: px shared by neighbouring tiles; default 64. The outer quarter of every
  shared edge (16 px) is context only and a 32-px raised-cosine ramp blends the rest (see
  dgn_cli.tiling). Why 64: with the default DGN, the difference between a tile's output and
  the whole-image output falls below 0.05/255 at 16 px from a cut edge (measured on random
  weights: 35/255 at the edge, 0.3/255 at 8 px, 0.04/255 at 16 px, < 0.001/255 at 32 px);
  the theoretical receptive field (~370 px radius for the two cascaded encoder-decoders) is
  far larger than any useful overlap, but its far reach carries almost no weight.
  tests/test_engine_seams.py checks the 2/255 bound on 1280x720 with 256-px tiles.
- self_ensemble: 1 (default) | 2 | 4 | 8: each tile runs that many times, on flipped and
  transposed copies, and the outputs are mapped back and averaged (dgn_cli.ensemble: +0.09 dB
  at 8 on the handheld split, for 8x the time). The depth estimator runs once.
- align: "auto" (default) | "all" | "off": before a multi-frame (video) DGN runs, neighbours
  in the window are warped onto the centre frame by optical flow, the centre's pixels used
  where the flow is not trusted, a neighbour with no match replaced by the centre
  (dgn_cli.frame_align). "auto" warps only neighbours that moved farther than the DGN saw in
  training, "all" every one, "off" none (the benchmarks before stretch 8);
  `last_run.alignment` says what was done. No effect on the image DGN.
- video_depth: "auto" (default) | "estimator" | "parallax": where a video DGN's initial depth
  D_b comes from when none is given: the depth estimator on the centre frame, or the motion
  parallax between the window's frames (dgn_cli.parallax_depth; the estimator where a window
  has none, e.g. a still camera). "auto" gives the weights the D_b they were trained on:
  parallax when their train_config says `depth_model: parallax`, else the estimator.
  `initial_depth(frames)` computes it; `last_depth_source` says which.
- depth_max_side: the depth estimator runs on the whole frame (never per tile), downscaled
  so its long side is at most this many px (default 2048), and its output is upsampled
  bilinearly to full resolution. This bounds its memory on huge images; depth maps are smooth.

Robustness:
- Each tile runs under `torch.inference_mode`, channels-last, and autocast in the chosen
  precision; a tile whose output has NaN/Inf is recomputed in fp32 (counted in `last_run`).
- Out of memory (CUDA, or a failed CPU allocation): the engine frees what it can and
  restarts the image with tiles half as large, down to MIN_TILE (or 2 x overlap), then
  raises `DeviceError`. The smaller tile is remembered for later frames.

Memory bound (images larger than memory): besides its inputs (the frames, 3F channels, and
the initial depth, 1 channel), `restore` allocates exactly two full-resolution float32
buffers: the blended image (3 channels) and the refined depth (1 channel, skipped with
return_depth=False): 16 bytes per pixel (and, for a video DGN with align on, one aligned
copy of the window, 3F channels). Everything else is per tile. `deblur` on an RGB
image therefore holds at most 8 float32 channels at full resolution (input 3, depth 1,
output 3, refined depth 1) = 32 bytes per pixel, plus the tile's activations
(`dgn_bytes_per_pixel(cfg) * tile**2`) and the depth estimator's working copy at
`depth_max_side`. tests/test_engine_memory.py checks this on a 4000x3000 image.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from dgn_cli import blend, checkpoints, devices, ensemble, frame_align, parallax_depth, tiling
from dgn_cli.errors import DeviceError, DgnError, InputError
from dgn_cli.models import DGN, DGNConfig
from dgn_cli.models.depth import DepthEstimator, SmallDepthConfig, SmallDepthNet
from dgn_cli.models.dgn import randomize_outputs
from dgn_cli.progress import Progress
from dgn_cli.tensors import centre_frame, to_signed, to_unit

DEFAULT_OVERLAP = 64
DEFAULT_DEPTH_MAX_SIDE = 2048
MIN_TILE = 128
MIN_USER_TILE = 64  # smaller explicit tiles give no valid plan (1 px) or thousands of tiles
MIN_DEPTH_SIDE = 256
RANDOM = "random"
VIDEO_DEPTHS = ("auto", "estimator", "parallax")

DEFAULT_DGN = checkpoints.DEFAULT_DGN  # {"image": "dgn-image", "video": "dgn-video"}
DEFAULT_DEPTH = checkpoints.DEFAULT_DEPTH  # "dgn-depth-small"


@dataclass
class EngineConfig:
    """How to build an `Engine` (field meanings in the module docstring)."""

    weights: str | None = None
    depth_model: str | None = None
    device: str = "auto"
    precision: str = "auto"
    tile: int | None = None
    tile_overlap: int = DEFAULT_OVERLAP
    seed: int = 0
    kind: str = "image"  # image | video: picks the default weights and random frames
    depth_max_side: int = DEFAULT_DEPTH_MAX_SIDE
    load_dgn: bool = True  # False: depth estimation only (`dgn depth` without --refined)
    refine_depth: bool = True  # False: the depth given is used as D_r (G_D bypassed; ablation)
    self_ensemble: int = 1  # 1 | 2 | 4 | 8 passes per tile over flips/transposes (ensemble.py)
    align: str = "auto"  # video DGN: auto | all | off, neighbours warped onto t (frame_align)
    video_depth: str = "auto"  # video DGN's D_b: auto | estimator | parallax (parallax_depth)

    def __post_init__(self):
        if self.kind not in DEFAULT_DGN:
            raise DgnError(f"unknown engine kind {self.kind!r}; use one of {list(DEFAULT_DGN)}")
        if self.tile is not None and self.tile < 0:
            raise DgnError(f"--tile must be 0 (whole image) or a positive size, got {self.tile}")
        if self.tile and self.tile < MIN_USER_TILE:
            raise DgnError(
                f"--tile {self.tile} is too small: use 0 (whole image) or at least "
                f"{MIN_USER_TILE} px (tiny tiles run for minutes and tile 1 cannot work)"
            )
        if self.tile_overlap < 0:
            raise DgnError(f"--tile-overlap must be >= 0, got {self.tile_overlap}")
        if self.tile and self.tile_overlap > self.tile // 2:
            raise DgnError(
                f"--tile-overlap {self.tile_overlap} is more than half of --tile {self.tile}; "
                f"use an overlap <= {self.tile // 2} or a larger tile"
            )
        if self.align not in frame_align.MODES:
            raise DgnError(
                f"--align must be one of {', '.join(frame_align.MODES)}, got {self.align!r}"
            )
        if self.video_depth not in VIDEO_DEPTHS:
            raise DgnError(
                f"--video-depth must be one of {', '.join(VIDEO_DEPTHS)}, got {self.video_depth!r}"
            )
        if self.self_ensemble not in ensemble.SIZES:
            raise DgnError(
                f"--self-ensemble must be one of {', '.join(map(str, ensemble.SIZES))}, "
                f"got {self.self_ensemble}"
            )
        if self.weights is None:
            self.weights = DEFAULT_DGN[self.kind]


@dataclass
class RunStats:
    """What the last `restore` did (for --json and tests)."""

    tile: int = 0  # 0 = whole image
    tiles: int = 0
    oom_retries: int = 0
    fp32_recomputed: int = 0
    nonfinite_left: int = 0
    tile_sizes_tried: list[int] = field(default_factory=list)
    alignment: frame_align.WindowAlignment | None = None  # video window (align != off)


def dgn_bytes_per_pixel(cfg: DGNConfig) -> float:
    """Estimated peak activation bytes per input pixel of one DGN forward (fp32).

    At the full-resolution stages about 6 maps of width w1 are alive (skip, current, two conv
    outputs, the sum, SFT gamma/beta) plus the SFT condition maps and the inputs; the factor
    2 covers convolution workspaces and allocator slack.
    """
    w1 = cfg.widths[0]
    channels = 8 * w1 + 2 * cfg.sft_chs + cfg.image_chs * cfg.frames + 2
    return 2 * 4 * channels


def is_oom(error: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors and failed CPU allocations."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    msg = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in msg or "can't allocate memory" in msg
    )


def _random_models(cfg: EngineConfig) -> tuple[DGN, DepthEstimator]:
    """Seeded random default-config models, without disturbing the global RNG. A fresh DGN is
    the identity (zero Conv24, for training); "random" weights exist to exercise the pipeline,
    so their last convs get the default random initialisation and outputs differ from inputs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        frames = 5 if cfg.kind == "video" else 1
        dgn = randomize_outputs(DGN(DGNConfig(frames=frames)))
        depth = DepthEstimator(SmallDepthNet(SmallDepthConfig()), "small", name=RANDOM)
    return dgn, depth


BACKENDS = ("torch", "onnxruntime")


def trained_video_depth(path: str | os.PathLike) -> str:
    """ "parallax" when a DGN checkpoint's train_config metadata says it trained on parallax
    D_b (`dgn train --task video --depth-model parallax`), else "estimator". Metadata that
    cannot be read as that JSON counts as "estimator": it only picks a default."""
    text = checkpoints.read_metadata(path).get("train_config", "")
    try:
        recipe = json.loads(text) if text else {}
    except ValueError:
        return "estimator"
    depth_model = recipe.get("depth_model") if isinstance(recipe, dict) else None
    return "parallax" if depth_model == "parallax" else "estimator"


def build_engine(cfg: EngineConfig, backend: str = "torch") -> Engine:
    """The one way commands, the Python API and the benchmark build an engine from a config
    (variants through `dataclasses.replace(cfg, ...)`). backend "onnxruntime": cfg.weights is
    a graph made by `dgn export` (float32), run by onnxruntime; tiling, depth and masks work
    as with torch."""
    backend = str(backend)
    if backend == "torch":
        return Engine(cfg)
    if backend != "onnxruntime":
        raise DgnError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    from dgn_cli import onnx_export  # onnxruntime is optional: imported only when asked for

    if cfg.weights is None or not str(cfg.weights).endswith(".onnx"):
        raise InputError(
            "--backend onnxruntime runs a graph made by `dgn export`: give --weights FILE.onnx"
        )
    cfg = dataclasses.replace(cfg, precision="fp32")  # autocast does not reach onnxruntime
    device = devices.resolve_device(cfg.device)
    dgn, depth = onnx_export.load_onnx(cfg.weights, device)
    if cfg.kind == "image" and dgn.config.frames != 1:
        raise InputError(f"{cfg.weights} is a video model; use dgn deblur-video")
    if cfg.depth_model is not None or (depth is None and dgn.config.uses_depth):
        depth = load_depth(cfg.depth_model or DEFAULT_DEPTH, device)
    return Engine(cfg, dgn=dgn, depth_estimator=depth)


def load_models(
    cfg: EngineConfig, device: torch.device
) -> tuple[DGN | None, DepthEstimator | None]:
    """The DGN (None when cfg.load_dgn is False) and the depth estimator (None when the DGN
    does not use depth and depth is not needed), through the checkpoints API."""
    if cfg.weights == RANDOM:
        dgn, depth = _random_models(cfg)
        dgn = dgn if cfg.load_dgn else None
        if cfg.depth_model is not None:
            depth = load_depth(cfg.depth_model, device)
        return dgn, depth
    dgn = checkpoints.load_dgn(cfg.weights, device) if cfg.load_dgn else None
    needs_depth = dgn is None or dgn.config.uses_depth
    depth = load_depth(cfg.depth_model or DEFAULT_DEPTH, device) if needs_depth else None
    return dgn, depth


def load_depth(name_or_path: str, device: torch.device) -> DepthEstimator:
    return checkpoints.load_depth_estimator(name_or_path, device)


class Engine:
    """Loads the models once; runs depth estimation and tiled restoration (module docstring)."""

    def __init__(
        self,
        cfg: EngineConfig | None = None,
        *,
        dgn: DGN | None = None,
        depth_estimator: DepthEstimator | None = None,
    ):
        """Load the models named in `cfg`; or pass in-memory models (`dgn=`, and optionally
        `depth_estimator=`), e.g. from training or tests, and only the device, precision and
        tiling settings of `cfg` are used."""
        self.config = cfg or EngineConfig()
        self.device = devices.resolve_device(self.config.device)
        # Denormal floats slow x86 math ~10x and change nothing visible: flush them to zero.
        torch.set_flush_denormal(True)
        self.dtype = devices.resolve_precision(self.device, self.config.precision)
        # For the CLI to show (e.g. bf16 emulated on this CPU); the library never prints.
        self.precision_warning = devices.precision_warning(self.device, self.dtype)
        self.weights_sha256: str | None = None  # of the DGN's file: --json and the log
        # the D_b the weights trained on ("parallax" or "estimator"), for video_depth "auto"
        self.trained_video_depth = "estimator"
        if dgn is None and depth_estimator is None:
            dgn, depth = load_models(self.config, self.device)
            if dgn is not None and self.config.weights != RANDOM:
                path = checkpoints.resolve_checkpoint(self.config.weights, kind="dgn")
                self.weights_sha256 = checkpoints.sha256_file(path)
                self.trained_video_depth = trained_video_depth(path)
        else:
            depth = depth_estimator
        self.dgn = dgn.to(self.device, memory_format=torch.channels_last).eval() if dgn else None
        self._depth_estimator = depth.to(self.device).eval() if depth is not None else None
        self.last_run = RunStats()
        self._tile_cap: int | None = None  # lowered after an out-of-memory retry
        self._depth_side = self.config.depth_max_side
        self.last_depth_source = "estimator"  # of the last initial_depth: estimator | parallax
        # the last window, its version and its flows: parallax depth and alignment both need
        # them (see _window_flows)
        self._last_flows: tuple[torch.Tensor, int, frame_align.WindowFlows] | None = None

    # ----------------------------------------------------------------- description
    @property
    def depth_estimator(self) -> DepthEstimator:
        """The depth estimator, loaded on first use when the DGN did not need one."""
        if self._depth_estimator is None:
            name = self.config.depth_model or DEFAULT_DEPTH
            self._depth_estimator = load_depth(name, self.device).to(self.device).eval()
        return self._depth_estimator

    @property
    def precision(self) -> str:
        return devices.precision_name(self.dtype)

    @property
    def align(self) -> str:
        """The window alignment in effect: config.align for a video DGN, "off" otherwise."""
        return self.config.align if self.window_frames > 1 else "off"

    @property
    def video_depth(self) -> str:
        """Where D_b comes from for a video DGN: config.video_depth, "auto" resolved to what the
        weights trained on; "estimator" for the image DGN."""
        if self.window_frames <= 1:
            return "estimator"
        if self.config.video_depth == "auto":
            return self.trained_video_depth
        return self.config.video_depth

    @property
    def window_frames(self) -> int:
        """Frames the DGN reads per window (1 for the image DGN or a depth-only engine)."""
        return self.dgn.config.frames if self.dgn is not None else 1

    @property
    def uses_depth(self) -> bool:
        return self.dgn is None or self.dgn.config.uses_depth

    def info(self) -> dict:
        """What the engine runs on, for reports and --json."""
        return {
            "device": str(self.device),
            "device_name": devices.device_name(self.device),
            "precision": self.precision,
            "weights": self.config.weights,
            "weights_sha256": self.weights_sha256,
            "depth_model": (
                self._depth_estimator.name
                if self._depth_estimator is not None
                else self.config.depth_model
            ),
            "tile": self.config.tile,
            "tile_overlap": self.config.tile_overlap,
            "self_ensemble": self.config.self_ensemble,
            "align": self.config.align,
            "video_depth": self.video_depth,
            "random_weights": self.config.weights == RANDOM,
        }

    # ----------------------------------------------------------------- helpers
    def _free_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)

    # ----------------------------------------------------------------- depth
    def initial_depth(self, frames: torch.Tensor) -> torch.Tensor:
        """D_b (1, 1, H, W) [0, 1] of the centre frame of a (1, 3F, H, W) [0, 1] window: from
        the window's motion parallax (video_depth "parallax", when the window has any), else
        the estimator on the centre frame. Sets `last_depth_source`."""
        if self.video_depth == "parallax":
            depth = parallax_depth.window_parallax_depth(
                frames, self.window_frames, self._window_flows(frames)
            )
            if depth is not None:
                self.last_depth_source = "parallax"
                return depth
        self.last_depth_source = "estimator"
        chs = self.dgn.config.image_chs if self.dgn is not None else 3
        return self.estimate_depth(centre_frame(frames, self.window_frames, chs))

    def _window_flows(self, frames: torch.Tensor) -> frame_align.WindowFlows:
        """The flows of a (1, 3F, H, W) window, measured once when `initial_depth` (parallax)
        and `restore` (alignment) are called on the same tensor one after the other. The key
        is the tensor itself and its version counter, which in-place writes bump, so a
        reused frame buffer is measured again."""
        last = self._last_flows
        if last is None or last[0] is not frames or last[1] != frames._version:
            last = (frames, frames._version, frame_align.window_flows(frames, self.window_frames))
            self._last_flows = last
        return last[2]

    def estimate_depth(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) RGB [0, 1] -> (1, 1, H, W) normalised inverse depth [0, 1], computed on
        the whole frame (downscaled to `depth_max_side` if larger), never per tile."""
        _check_image(image, 3)
        h, w = image.shape[-2:]
        while True:
            retry = False
            try:
                return self._estimate_depth_at(image, self._depth_side)
            except Exception as e:
                if not is_oom(e):
                    raise
                retry = True
            if retry:
                self._free_memory()
                if self._depth_side <= MIN_DEPTH_SIDE or max(h, w) <= MIN_DEPTH_SIDE:
                    raise DeviceError(
                        f"out of memory on {self.device} estimating depth even at "
                        f"{MIN_DEPTH_SIDE} px; free memory or use --device cpu"
                    )
                self._depth_side = max(MIN_DEPTH_SIDE, min(self._depth_side, max(h, w)) // 2)

    def _estimate_depth_at(self, image: torch.Tensor, max_side: int) -> torch.Tensor:
        h, w = image.shape[-2:]
        scale = min(1.0, max_side / max(h, w))
        small = image
        if scale < 1.0:
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            small = F.interpolate(image, size=size, mode="area")
        x = self._to_device(small)
        net = self.depth_estimator
        with torch.inference_mode():
            with devices.autocast(self.device, self.dtype):
                depth = net(x)
            if self.dtype != torch.float32 and not torch.isfinite(depth).all():
                depth = net(x)  # fp32 recompute
        # Out-of-place ops outside inference mode: callers get ordinary tensors.
        depth = torch.nan_to_num(depth.float(), nan=0.0).cpu()
        if depth.shape[-2:] != (h, w):
            depth = F.interpolate(depth, size=(h, w), mode="bilinear", align_corners=False)
        return depth.clamp_(0, 1).contiguous()

    # ----------------------------------------------------------------- restoration
    def auto_tile(self, height: int, width: int) -> int:
        """The tile size the engine would use now for an H x W input (0 = whole image)."""
        if self.dgn is None:
            raise DgnError("this engine was built without a DGN (load_dgn=False)")
        cfg_tile = self.config.tile
        if cfg_tile is None:
            bpp = dgn_bytes_per_pixel(self.dgn.config)
            budget = devices.memory_budget(self.device)
            tile = 0 if height * width * bpp <= budget else tiling.tile_for_budget(budget, bpp)
            tile = tile and max(tile, self._min_tile())
        else:
            tile = cfg_tile
        if self._tile_cap is not None:
            tile = self._tile_cap if tile == 0 else min(tile, self._tile_cap)
        if tile >= max(height, width):
            tile = 0
        return tile

    def _min_tile(self) -> int:
        return max(MIN_TILE, 2 * self.config.tile_overlap)

    def restore(
        self,
        frames: torch.Tensor,
        depth_init: torch.Tensor | None = None,
        progress: Progress | None = None,
        *,
        return_depth: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Deblur the centre frame of (1, 3F, H, W) [0, 1] frames, guided by the initial depth
        (1, 1, H, W) of the centre frame (estimated here when None and the DGN needs it).

        Returns (image (1, 3, H, W) in [0, 1], refined depth (1, 1, H, W) in [0, 1] or None for
        the no-depth baseline or return_depth=False). Tiled per `auto_tile` with smooth blending.
        """
        if self.dgn is None:
            raise DgnError("this engine was built without a DGN (load_dgn=False)")
        cfg = self.dgn.config
        _check_image(frames, cfg.image_chs * cfg.frames)
        h, w = frames.shape[-2:]
        if cfg.uses_depth:
            if depth_init is None:
                depth_init = self.initial_depth(frames)
            _check_image(depth_init, 1, (h, w))
        else:
            depth_init = None
            return_depth = False
        stats = RunStats()
        if self.align != "off":
            frames, stats.alignment = frame_align.align_window(
                frames, cfg.frames, self.align, self._window_flows(frames)
            )
        tile = self.auto_tile(h, w)
        while True:
            stats.tile_sizes_tried.append(tile)
            retry = False
            try:
                image, depth = self._restore_tiled(frames, depth_init, tile, progress, stats)
                break
            except Exception as e:
                if not is_oom(e):
                    raise
                retry = True
            if retry:  # outside the except block, so the failed tiles' tensors are freed
                self._free_memory()
                tile = self._smaller_tile(tile, h, w)
                self._tile_cap = tile
                stats.oom_retries += 1
        stats.tile = tile
        self.last_run = stats
        return image, (depth if return_depth else None)

    def _smaller_tile(self, tile: int, h: int, w: int) -> int:
        current = tile if tile > 0 else max(h, w)
        floor = self._min_tile()
        if current <= floor:
            raise DeviceError(
                f"out of memory on {devices.device_name(self.device)} even with {current}-px "
                f"tiles ({w}x{h} image); close other GPU programs, try --precision bf16, "
                "or use --device cpu"
            )
        return max(floor, current // 2 // 32 * 32)

    def _restore_tiled(self, frames, depth_init, tile, progress, stats):
        h, w = frames.shape[-2:]
        overlap = self.config.tile_overlap
        overlap = min(overlap, tile // 2) if tile else 0
        total = len(tiling.plan_tiles(h, w, tile, overlap))
        stats.tiles = total
        if progress:
            progress(0, total)
        if total == 1:  # whole image: the tile's output is the result, no blending buffer
            image, depth = self._run_tile(frames, depth_init, stats)
            if progress:
                progress(1, 1)
            return image.clamp_(0, 1), (depth.clamp_(0, 1) if depth is not None else None)
        image = torch.zeros(1, 3, h, w)
        depth = torch.zeros(1, 1, h, w) if depth_init is not None else None
        for i, (t, weight) in enumerate(tiling.tile_weights(h, w, tile, overlap)):
            sl = (..., slice(t.y0, t.y1), slice(t.x0, t.x1))
            d_in = depth_init[sl] if depth_init is not None else None
            tile_image, tile_depth = self._run_tile(frames[sl], d_in, stats)
            image[sl].addcmul_(tile_image, weight)
            if depth is not None and tile_depth is not None:
                depth[sl].addcmul_(tile_depth, weight)
            del tile_image, tile_depth
            if progress:
                progress(i + 1, total)
        return image.clamp_(0, 1), (depth.clamp_(0, 1) if depth is not None else None)

    def _run_tile(self, frames, depth, stats: RunStats):
        """A (1, 3F, h, w) [0, 1] CPU slice -> CPU float32 results: one network pass, or the
        mean of `self_ensemble` passes over flipped/transposed copies (dgn_cli.ensemble)."""
        return ensemble.average(
            lambda x, d: self._run_pass(x, d, stats), frames, depth, self.config.self_ensemble
        )

    def _run_pass(self, frames, depth, stats: RunStats):
        """One network pass on a (1, 3F, h, w) [0, 1] CPU slice -> CPU float32 results."""
        x = to_signed(self._to_device(frames))
        d = self._to_device(depth) if depth is not None else None
        out = self._forward(x, d, self.dtype)
        if self.dtype != torch.float32 and not _finite(out):
            stats.fp32_recomputed += 1
            out = self._forward(x, d, torch.float32)
        if not _finite(out):
            stats.nonfinite_left += 1
            out = type(out)(*(torch.nan_to_num(t, nan=0.0) if t is not None else None for t in out))
        # Out-of-place ops outside inference mode: the results are ordinary tensors.
        image = to_unit(out.image.float()).cpu()
        refined = out.depth.float().add(0).cpu() if out.depth is not None else None
        return image, refined

    def _forward(self, x, d, dtype):
        with torch.inference_mode(), devices.autocast(self.device, dtype):
            return self.dgn(x, d, refine=self.config.refine_depth)

    def deblur(
        self, image: torch.Tensor, progress: Progress | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(1, 3, H, W) [0, 1] -> (deblurred image, initial depth, refined depth); the depths
        are None for the no-depth baseline. Image model only (frames == 1)."""
        if self.dgn is None or self.dgn.config.frames != 1:
            raise DgnError("deblur() needs an image DGN (frames=1); use restore() for video")
        depth = self.estimate_depth(image) if self.dgn.config.uses_depth else None
        restored, refined = self.restore(image, depth, progress)
        return restored, depth, refined

    def control(
        self,
        original: torch.Tensor,
        restored: torch.Tensor,
        depth: torch.Tensor | None,
        control: blend.Control | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Strength and depth mask (dgn_cli.blend): -> (image, mask or None). `depth` is the
        depth the mask follows (the refined one); estimated from `original` when None and a
        mask is asked for (the no-depth baseline)."""
        if control is None or not control.active:
            return restored, None
        if control.uses_mask and depth is None:
            depth = self.estimate_depth(original[:, :3])
        return blend.apply(original, restored, depth, control)


def _finite(out) -> bool:
    # NaN and Inf propagate through a sum: one reduction instead of a full boolean mask.
    ok = bool(torch.isfinite(out.image.sum()))
    return ok and (out.depth is None or bool(torch.isfinite(out.depth.sum())))


def _check_image(x: torch.Tensor, channels: int, size: tuple[int, int] | None = None) -> None:
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != channels:
        raise ValueError(f"expected a (1, {channels}, H, W) tensor, got {tuple(x.shape)}")
    if x.shape[-2] < 1 or x.shape[-1] < 1:
        raise ValueError(f"empty image: shape {tuple(x.shape)} has no pixels")
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(f"expected spatial size {size}, got {tuple(x.shape[-2:])}")
