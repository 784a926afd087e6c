"""Speed, size and compute of the DGN pipeline (the paper's Table VIII), for `dgn benchmark`.

    counts = parameter_counts_all(engine)        # {"depth_estimator", "refinement", ...}
    macs = gmacs_per_frame(engine, 1280, 720)    # GMACs per component and "total"
    result = time_pipeline(engine, TimingConfig(width=1280, height=720, runs=5))
    env = environment(engine)                    # torch, commit, cpu, gpu, threads, date

Definitions (what the numbers mean):
- Components: "depth_estimator" (the monocular estimator on the blurred frame, the initial
  depth D_b), "refinement" (G_D, D_r = D_b + G_D(D_b, B)) and "deblurring" (G_B). The no-depth
  baseline has only "deblurring": the other two count 0 parameters and have no timing.
- Timing: one run = what `dgn deblur-image` does after decoding the file: the estimator on
  the whole frame (`Engine.estimate_depth`) then tiled restoration (`Engine.restore`), input
  and output float32 on the CPU, so transfers to and from the device are included; file I/O
  is not. `end_to_end` is the wall time of a run (synchronised on CUDA/MPS before and after);
  each component's time is the time spent inside its module's forward during that same run
  (forward hooks; CUDA events, so no extra synchronisation; summed over tiles). The rest of
  end_to_end (transfers, padding, tile blending, depth resizing) is reported as "other".
  `warmup` runs come first and are discarded; then `runs` runs give the median, p90
  (numpy.percentile, linear interpolation), mean and min in milliseconds.
- Input: a seeded smooth random RGB frame of the chosen size (convolution time does not depend
  on the content).
- Peak memory: CUDA: `torch.cuda.max_memory_allocated` over the timed runs (weights
  included); CPU/MPS: the process's peak resident set size (VmHWM, reset before the timed runs
  where Linux allows it, else the lifetime peak), so it includes Python, PyTorch and the models.
- GMACs: multiply-accumulates of one whole frame (not tiled) per component, counted by
  `torch.utils.flop_counter.FlopCounterMode` on meta tensors (shapes only, nothing computed):
  convolutions, matrix products and attention; element-wise ops are not counted. MACs =
  FLOPs / 2. Tiling adds the overlap's recomputation on top (see "tiles" in the timing).
  With a self-ensemble of N passes the refinement and deblurring counts are N times one pass.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import os
import platform
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dgn_cli import devices
from dgn_cli.engine import Engine
from dgn_cli.errors import DgnError
from dgn_cli.models import parameter_counts
from dgn_cli.progress import Progress
from dgn_cli.tensors import centre_frame

COMPONENTS = ("depth_estimator", "refinement", "deblurring")
DEFAULT_SIZE = (1280, 720)


@dataclass
class TimingConfig:
    """What `time_pipeline` runs: `warmup` discarded runs, then `runs` timed ones at W x H."""

    width: int = DEFAULT_SIZE[0]
    height: int = DEFAULT_SIZE[1]
    runs: int = 5
    warmup: int = 2
    seed: int = 0

    def __post_init__(self):
        if self.runs < 1:
            raise DgnError(f"--runs must be at least 1, got {self.runs}")
        if self.warmup < 0:
            raise DgnError(f"--warmup must be >= 0, got {self.warmup}")
        if self.width < 16 or self.height < 16:
            raise DgnError(f"--size {self.width}x{self.height}: each side must be at least 16")


# ------------------------------------------------------------------------------- sizes
def _count(module: nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def parameter_counts_all(engine: Engine) -> dict[str, int]:
    """Parameters per component and "total" (their sum); 0 for a component not used."""
    if engine.dgn is None:
        raise DgnError("the benchmark needs a DGN; this engine was built without one")
    dgn = parameter_counts(engine.dgn)
    depth = _count(engine.depth_estimator) if engine.uses_depth else 0
    counts = {
        "depth_estimator": depth,
        "refinement": dgn["refinement"],
        "deblurring": dgn["deblurring"],
    }
    counts["total"] = sum(counts[c] for c in COMPONENTS)
    return counts


def params_in_millions(counts: dict[str, int]) -> dict[str, float]:
    """Counts -> millions (unrounded, so "total" is the sum of the components)."""
    out = {c: counts[c] / 1e6 for c in COMPONENTS}
    out["total"] = sum(out.values())
    return out


# ------------------------------------------------------------------------------- compute
def _macs(module: nn.Module, *inputs: torch.Tensor) -> float:
    """GMACs of one forward of `module` on `inputs`, counted on meta tensors."""
    meta = copy.deepcopy(module).to("meta")
    args = [x.to("meta") for x in inputs]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(*args)
    return counter.get_total_flops() / 2 / 1e9


def gmacs_per_frame(engine: Engine, width: int, height: int) -> dict[str, float]:
    """GMACs of one W x H frame per component and "total" (see the module docstring)."""
    dgn = engine.dgn
    if dgn is None:
        raise DgnError("the benchmark needs a DGN; this engine was built without one")
    cfg = dgn.config
    ph, pw = math.ceil(height / 4) * 4, math.ceil(width / 4) * 4  # the DGN pads to 4
    frames = torch.empty(1, cfg.image_chs * cfg.frames, ph, pw)
    centre = torch.empty(1, cfg.image_chs, ph, pw)
    depth = torch.empty(1, 1, ph, pw)
    out = {c: 0.0 for c in COMPONENTS}
    if cfg.uses_depth:
        # The engine runs the estimator on the frame downscaled to depth_max_side.
        scale = min(1.0, engine.config.depth_max_side / max(width, height))
        dh, dw = max(1, round(height * scale)), max(1, round(width * scale))
        out["depth_estimator"] = _macs(engine.depth_estimator, torch.empty(1, 3, dh, dw))
        out["refinement"] = _macs(dgn.refinement, depth, centre)
        out["deblurring"] = _macs(dgn.deblur, frames, depth)
    else:
        out["deblurring"] = _macs(dgn.deblur, frames)
    passes = engine.config.self_ensemble  # each tile runs the DGN this many times
    out["refinement"] *= passes
    out["deblurring"] *= passes
    out["total"] = sum(out[c] for c in COMPONENTS)
    return out


# ------------------------------------------------------------------------------- timing
def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class ComponentTimer:
    """Accumulates the time spent inside each named module's forward (forward hooks).

    CUDA: events recorded around each call, read after the run (no extra synchronisation);
    elsewhere: perf_counter around each call (MPS synchronised at both ends).
    """

    def __init__(self, modules: dict[str, nn.Module], device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.handles = []
        self._open: dict[str, list] = {name: [] for name in modules}
        self._spans: dict[str, list] = {name: [] for name in modules}
        for name, module in modules.items():
            self.handles.append(module.register_forward_pre_hook(self._start(name)))
            self.handles.append(module.register_forward_hook(self._stop(name)))

    def _mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        if self.device.type == "mps":
            torch.mps.synchronize()
        return time.perf_counter()

    def _start(self, name: str):
        def hook(_module, _args):
            self._open[name].append(self._mark())

        return hook

    def _stop(self, name: str):
        def hook(_module, _args, _output):
            self._spans[name].append((self._open[name].pop(), self._mark()))

        return hook

    def reset(self) -> None:
        for name in self._spans:
            self._spans[name].clear()
            self._open[name].clear()

    def elapsed_ms(self) -> dict[str, float]:
        """Milliseconds per module since the last reset (call after synchronising)."""
        out = {}
        for name, spans in self._spans.items():
            if self.cuda:
                out[name] = sum(a.elapsed_time(b) for a, b in spans)
            else:
                out[name] = sum(b - a for a, b in spans) * 1000.0
        return out

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def summarize(times_ms: list[float]) -> dict[str, float]:
    """median, p90 (linear interpolation), mean and min of a list of milliseconds."""
    a = np.asarray(times_ms, dtype=np.float64)
    return {
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "mean": float(a.mean()),
        "min": float(a.min()),
    }


class PeakMemory:
    """Peak memory over a span: CUDA max allocated, else the process's peak RSS (VmHWM)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "process_peak_rss"
        self.reset_ok = False

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.reset_ok = True
            return
        try:  # Linux >= 4.0: writing 5 resets the peak RSS to the current RSS
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset_ok = True
        except OSError:
            self.reset_ok = False

    def read_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if platform.system() == "Darwin" else peak / 1024  # bytes vs KiB


def timing_input(channels: int, width: int, height: int, seed: int = 0) -> torch.Tensor:
    """A seeded smooth random (1, channels, H, W) float32 frame in [0, 1] on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, max(2, height // 16), max(2, width // 16), generator=gen)
    fine = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    noise = torch.rand(1, channels, height, width, generator=gen)
    return (0.85 * fine + 0.15 * noise).clamp_(0, 1)


def time_pipeline(engine: Engine, cfg: TimingConfig, progress: Progress | None = None) -> dict:
    """Time `cfg.runs` runs of the whole pipeline after `cfg.warmup` (module docstring).

    Returns {"timing_ms": {component | "other" | "end_to_end": summary or None},
    "peak_memory_mb", "peak_memory_kind", "peak_memory_reset", "tile", "tiles", "runs",
    "warmup", "size", "fp32_recomputed_tiles"}.
    """
    dgn = engine.dgn
    if dgn is None:
        raise DgnError("the benchmark needs a DGN; this engine was built without one")
    c = dgn.config
    frames = timing_input(c.image_chs * c.frames, cfg.width, cfg.height, cfg.seed)
    centre = centre_frame(frames, c.frames, c.image_chs)
    modules = {"deblurring": dgn.deblur}
    if c.uses_depth:
        modules = {
            "depth_estimator": engine.depth_estimator,
            "refinement": dgn.refinement,
            "deblurring": dgn.deblur,
        }
    timer = ComponentTimer(modules, engine.device)
    memory = PeakMemory(engine.device)

    def run() -> float:
        _synchronize(engine.device)
        start = time.perf_counter()
        depth = engine.estimate_depth(centre) if c.uses_depth else None
        engine.restore(frames, depth, return_depth=True)
        _synchronize(engine.device)
        return (time.perf_counter() - start) * 1000.0

    total = cfg.warmup + cfg.runs
    per_component: dict[str, list[float]] = {name: [] for name in modules}
    end_to_end, other = [], []
    recomputed = 0
    try:
        for i in range(total):
            if i == cfg.warmup:
                memory.reset()
            timer.reset()
            ms = run()
            if i >= cfg.warmup:
                spent = timer.elapsed_ms()
                for name, value in spent.items():
                    per_component[name].append(value)
                end_to_end.append(ms)
                other.append(max(0.0, ms - sum(spent.values())))
                recomputed += engine.last_run.fp32_recomputed
            if progress is not None:
                progress(i + 1, total)
    finally:
        timer.close()
    timing: dict[str, dict | None] = {
        name: summarize(per_component[name]) if name in per_component else None
        for name in COMPONENTS
    }
    timing["other"] = summarize(other)
    timing["end_to_end"] = summarize(end_to_end)
    return {
        "timing_ms": timing,
        "peak_memory_mb": memory.read_mb(),
        "peak_memory_kind": memory.kind,
        "peak_memory_reset": memory.reset_ok,
        "tile": engine.last_run.tile,
        "tiles": engine.last_run.tiles,
        "runs": cfg.runs,
        "warmup": cfg.warmup,
        "size": [cfg.width, cfg.height],
        "fp32_recomputed_tiles": recomputed,
    }


# ------------------------------------------------------------------------------- environment
def git_commit(folder: str | os.PathLike | None = None) -> str | None:
    """`git rev-parse HEAD` of the checkout holding this package (None outside a checkout)."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = done.stdout.strip()
    return text if done.returncode == 0 and len(text) == 40 else None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(engine: Engine) -> dict:
    """Where the numbers come from: device, precision, versions, commit, CPU/GPU, date."""
    gpu = None
    if engine.device.type == "cuda":
        gpu = torch.cuda.get_device_name(engine.device)
    return {
        "device": str(engine.device),
        "device_name": devices.device_name(engine.device),
        "precision": engine.precision,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "commit": git_commit(),
        "cpu": cpu_model(),
        "cpu_capability": _cpu_capability(),
        "gpu": gpu,
        "threads": torch.get_num_threads(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _cpu_capability() -> str | None:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # private API; may change between torch versions
        return None
