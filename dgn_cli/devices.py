"""Device and precision: the one place inference, training and benchmarks resolve them.

    resolve_device("auto" | "cpu" | "cuda" | "cuda:N" | "mps", local_rank=None) -> torch.device
    resolve_precision(device, "auto" | "fp32" | "bf16" | "fp16", training=False) -> torch.dtype
    precision_warning(device, dtype) -> str | None   (the CLI prints it; the library never does)
    autocast(device, dtype) -> context manager for the forward pass
    memory_budget(device) -> bytes the engine may use for one tile's activations

Rules:
- "auto" device: CUDA if PyTorch sees a GPU, else Apple MPS, else CPU. Asking for a device
  that is not there is a `DeviceError`, never a silent fall-back to the CPU. Under torchrun
  (`local_rank` given) "auto" and a bare "cuda" mean this rank's GPU.
- "auto" precision is the fastest MEASURED precision for the hardware: bf16 on CUDA GPUs that
  support it (compute capability >= 8.0) and on CPUs with AMX tiles; fp32 everywhere else
  (older GPUs, MPS, other CPUs). CPUs with AVX512-BF16 but no AMX differ, so there "auto"
  times one 3x3 convolution in both precisions on one thread (a busy core skews a threaded
  timing) once per process and takes bf16 only when it is >= 1.2x faster: on such a Xeon
  (torch 2.13, 2 threads) the DGN at 1280x720 ran 1.26x SLOWER in bf16 autocast (single 3x3
  convs 1.1-1.8x slower), while on an AMD EPYC with AVX512-BF16 single convs ran 3x FASTER and
  training 1.9x faster (one thread). On an AMX Xeon bf16 trained 3x faster than fp32.
- An explicit precision is obeyed, the same rule for inference and training: bf16 on a CPU
  without native bf16 instructions runs (PyTorch emulates it: correct but slow) and
  `precision_warning` says so; bf16 on a CUDA GPU without bf16 is a `DeviceError` (cuDNN has
  no kernels for it). fp16 is inference only (training would need loss scaling) and never
  chosen automatically: its range overflows more easily (NaN/black tiles); the engine
  recomputes any non-finite tile in fp32 anyway.
- fp32 on CUDA means IEEE fp32: `autocast` switches TF32 convolutions off inside the block
  (the seam bound and the engine's fp32 recompute rely on it).
- Memory budget: CUDA: half of the free memory on the card (`torch.cuda.mem_get_info`);
  MPS: a quarter of `torch.mps.recommended_max_memory()`; CPU: a quarter of the available
  RAM (MemAvailable in /proc/meminfo, else a quarter of the physical RAM), capped at 8 GiB.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import time
from enum import StrEnum

import torch

from dgn_cli.errors import DeviceError


class Precision(StrEnum):
    """A --precision value; `auto` is resolved by `resolve_precision`."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAMES = {v: k for k, v in PRECISIONS.items()}
CPU_BUDGET_CAP = 8 * 2**30
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def resolve_device(spec: str = "auto", local_rank: int | None = None) -> torch.device:
    """Parse and check a --device value; raise `DeviceError` if it is not usable here.
    `local_rank` (torchrun): "auto" and a bare "cuda" pick that rank's GPU."""
    m = _DEVICE_RE.match(str(spec).strip().lower())
    if not m or (m.group(2) is not None and m.group(1) != "cuda"):
        raise DeviceError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    kind, index = m.group(1), m.group(2)
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", _default_cuda_index(local_rank))
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not _mps_available():
            raise DeviceError(
                "--device mps: Apple MPS is not available here; use --device cpu or auto"
            )
        return torch.device("mps")
    if not torch.cuda.is_available():
        build = "a CPU-only PyTorch build" if torch.version.cuda is None else "no visible GPU"
        raise DeviceError(
            f"--device {spec}: CUDA is not available ({build}, torch {torch.__version__}); "
            "use --device cpu or --device auto, or install a CUDA build of PyTorch"
        )
    n = torch.cuda.device_count()
    i = int(index) if index is not None else _default_cuda_index(local_rank)
    if i >= n:
        raise DeviceError(f"--device {spec}: only {n} CUDA device(s) here (cuda:0..cuda:{n - 1})")
    return torch.device("cuda", i)


def _default_cuda_index(local_rank: int | None) -> int:
    return local_rank if local_rank is not None else torch.cuda.current_device()


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def cpu_bf16_support() -> str | None:
    """This CPU's native bf16: "amx" (AMX tiles), "avx512_bf16", or None (emulated)."""
    for name, probe in (
        ("amx", "_is_amx_tile_supported"),
        ("avx512_bf16", "_is_avx512_bf16_supported"),
    ):
        check = getattr(getattr(torch, "cpu", None), probe, None)
        with contextlib.suppress(Exception):  # private probes may change between torch versions
            if check is not None and check():
                return name
    return None


def cpu_supports_bf16() -> bool:
    """True on CPUs whose bf16 matrix math beats fp32: those with AMX tiles, and those with
    AVX512-BF16 where a short timing says so (see the module docstring)."""
    support = cpu_bf16_support()
    return support == "amx" or (support == "avx512_bf16" and cpu_bf16_measured_faster())


# bf16 must beat fp32 by this much to be chosen: it costs accuracy, and a closer call is noise.
BF16_MIN_SPEEDUP = 1.2


@functools.cache
def cpu_bf16_measured_faster() -> bool:
    """Whether a 3x3 convolution (32 -> 32 channels, 96x96, the DGN's typical layer) runs at
    least BF16_MIN_SPEEDUP times faster in bf16 autocast than in fp32 on this CPU, timed on
    one thread. Measured once per process (~0.3-0.6 s)."""
    return _conv_speedup_bf16() >= BF16_MIN_SPEEDUP


def _conv_speedup_bf16(trials: int = 7, reps: int = 4) -> float:
    """fp32 time / bf16 time of the probe convolution on one thread, median of paired
    `trials`; the process's thread count is restored afterwards."""
    # One thread: the choice is about the CPU's kernels, and on a busy machine a multi-threaded
    # probe times the wait for the busiest core instead (2 threads beside one training process
    # on a 2-core EPYC read 0.8x and 1.6x in two calls; one thread read 1.6x, 2.7x idle).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _time_conv_speedup(trials, reps)
    finally:
        torch.set_num_threads(threads)


def _time_conv_speedup(trials: int, reps: int) -> float:
    # its own generator: the probe must not move the global RNG a seeded run draws from
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(32, 32, 3, 3, generator=gen) * 0.05
    x = torch.randn(1, 32, 96, 96, generator=gen)

    def run(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for _ in range(reps):
                torch.nn.functional.conv2d(x, weight, padding=1)
        return time.perf_counter() - start

    run(False), run(True)  # first calls pick and pack kernels
    ratios = sorted(run(False) / max(run(True), 1e-9) for _ in range(trials))
    return ratios[len(ratios) // 2]


def resolve_precision(
    device: torch.device, precision: str = "auto", *, training: bool = False
) -> torch.dtype:
    """Turn a --precision value into the autocast dtype for `device` (rules in the module
    docstring). `training`: fp16 is refused (it would need loss scaling)."""
    precision = str(precision).lower()
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        if device.type == "cpu":
            return torch.bfloat16 if cpu_supports_bf16() else torch.float32
        return torch.float32
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    dtype = PRECISIONS[precision]
    if training and dtype == torch.float16:
        raise DeviceError(
            "--precision fp16 is not supported for training (it needs loss scaling); "
            "use bf16 or fp32"
        )
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(
            f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16 support; "
            "use --precision fp16 or fp32"
        )
    return dtype


def precision_warning(device: torch.device, dtype: torch.dtype) -> str | None:
    """A one-line warning when `dtype` will run slowly on `device`, else None."""
    if device.type != "cpu" or dtype == torch.float32:
        return None
    support = cpu_bf16_support()
    if dtype == torch.bfloat16 and support is None:
        return (
            "this CPU has no native bf16 instructions: bf16 runs emulated (correct but slow); "
            "--precision auto picks fp32 here"
        )
    if dtype == torch.bfloat16 and not cpu_supports_bf16():  # the rule auto follows
        return (
            "bf16 measured no faster than fp32 on this CPU (AVX512-BF16 without AMX; "
            "--precision auto picks fp32)"
        )
    if dtype == torch.float16:
        return (
            "fp16 on a CPU is slow and rarely supported natively; "
            "--precision auto picks fp32 or bf16"
        )
    return None


def autocast(device: torch.device, dtype: torch.dtype):
    """The forward pass's precision context: autocast for bf16/fp16; for fp32 on CUDA, TF32
    convolutions switched off so that "fp32" means IEEE fp32."""
    if dtype != torch.float32:
        return torch.autocast(device_type=device.type, dtype=dtype)
    if device.type == "cuda":
        return _no_tf32()
    return contextlib.nullcontext()


@contextlib.contextmanager
def _no_tf32():
    """cuDNN convolutions in full fp32 inside the block (the global flag is restored)."""
    cudnn = torch.backends.cudnn
    previous = cudnn.allow_tf32
    cudnn.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32 = previous


def precision_name(dtype: torch.dtype) -> str:
    return DTYPE_NAMES.get(dtype, str(dtype))


def device_name(device: torch.device) -> str:
    """Human-readable name: 'cuda:0 (NVIDIA H100)', 'cpu (AVX512, 16 threads)', 'mps'."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        try:
            capability = torch.backends.cpu.get_cpu_capability()
        except Exception:
            capability = "cpu"
        return f"cpu ({capability}, {torch.get_num_threads()} threads)"
    return str(device)


def available_ram() -> int:
    """Bytes of RAM available to a new allocation (Linux MemAvailable, else physical RAM / 4)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def memory_budget(device: torch.device) -> int:
    """Bytes the engine may spend on one tile's activations (formula in the module docstring)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free // 2
    if device.type == "mps":
        recommended = getattr(torch.mps, "recommended_max_memory", None)
        return (recommended() if recommended else 8 * 2**30) // 4
    return min(available_ram() // 4, CPU_BUDGET_CAP)
