"""The Python API: deblur numpy images without the command line.

    from dgn_cli import Deblurrer

    deblurrer = Deblurrer(weights="dgn-image", device="auto")    # loads the models once
    sharp = deblurrer.deblur(image)      # same type, dtype and shape as `image`
    sharps = deblurrer.deblur([a, b])    # a list in, a list out (one model, loaded once)
    depth = deblurrer.depth(image)       # (H, W) float32, normalised inverse depth, 1 = nearest
    soft = deblurrer.deblur(image, strength=0.5)               # half way, in linear light
    portrait = deblurrer.deblur(image, keep_background=True)   # the bokeh stays as shot
    mask = deblurrer.mask(image, keep_background=0.4)          # (H, W) float32, 1 = deblurred

`image` is an RGB (not BGR) numpy array: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA, of
uint8, uint16 or float (float in [0, 1]), read-only arrays included; or a PIL image, for which
a PIL image comes back (modes L, RGB, RGBA and I;16 kept; others, e.g. P, read as RGB(A)).
The result has the same dtype and shape: gray is deblurred as RGB and converted back (channel
mean), alpha is passed through unchanged. A list is processed image by image on the one
engine (the engine runs one frame at a time, tiled, so memory stays bounded and the images may
differ in size). For files use `dgn_cli.io.read_image` / `write_image`, which also handle EXIF
and ICC.
"""

from __future__ import annotations

import numpy as np

from dgn_cli import blend
from dgn_cli.engine import DEFAULT_OVERLAP, EngineConfig, build_engine
from dgn_cli.io import from_tensor, to_tensor
from dgn_cli.progress import Progress


class Deblurrer:
    """Deblur numpy images with a DGN (see the module docstring). Arguments are those of
    `EngineConfig`: weights (name | path | "random"), depth_model, device, precision,
    tile (None = from the memory budget, 0 = whole image), tile_overlap, self_ensemble (1, 2,
    4 or 8 flipped/transposed passes averaged, dgn_cli.ensemble)."""

    def __init__(
        self,
        weights: str | None = None,
        depth_model: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        tile: int | None = None,
        tile_overlap: int = DEFAULT_OVERLAP,
        seed: int = 0,
        self_ensemble: int = 1,
    ):
        self.engine = build_engine(
            EngineConfig(
                weights=weights,
                depth_model=depth_model,
                device=device,
                precision=precision,
                tile=tile,
                tile_overlap=tile_overlap,
                seed=seed,
                self_ensemble=self_ensemble,
            )
        )

    def deblur(
        self,
        image,
        progress: Progress | None = None,
        *,
        strength: float = 1.0,
        keep_background: bool | float | None = None,
        keep_foreground: bool | float | None = None,
    ):
        """Deblurred copy of `image` (numpy array or PIL image), same type, dtype and shape; a
        list or tuple of images -> a list of results.

        strength: 0..1, the result mixed with the input in linear light (0 = the input).
        keep_background: True (automatic threshold) or a depth threshold in [0, 1]: the input
        is kept where the refined depth is farther, softly and feathered (dgn_cli.blend);
        keep_foreground: the same the other way round (the input kept where nearer)."""
        control = make_control(strength, keep_background, keep_foreground)
        if isinstance(image, list | tuple):
            return [self.deblur(im, progress, **_kw(control)) for im in image]
        pil_mode = getattr(image, "mode", None) if _is_pil(image) else None
        array = _from_pil(image) if pil_mode else np.asarray(image)
        rgb, alpha, gray, dtype = _split(array)
        x = to_tensor(rgb)
        restored, depth, refined = self.engine.deblur(x, progress)
        guide = refined if refined is not None else depth
        restored, _ = self.engine.control(x, restored, guide, control)
        out = from_tensor(restored, dtype, gray=gray)
        if alpha is not None:
            out = np.dstack([out, alpha])
        out = out.reshape(array.shape)
        return _to_pil(out, pil_mode) if pil_mode else out

    def mask(
        self,
        image,
        *,
        keep_background: bool | float | None = None,
        keep_foreground: bool | float | None = None,
    ) -> np.ndarray:
        """(H, W) float32 depth mask in [0, 1]: how much of the deblurred image each pixel
        gets (1 = deblurred, 0 = input kept), as `deblur` would use it."""
        control = make_control(1.0, keep_background, keep_foreground)
        if not control.uses_mask:
            raise ValueError("give keep_background or keep_foreground")
        rgb, _, _, _ = _split(_from_pil(image) if _is_pil(image) else image)
        x = to_tensor(rgb)
        restored, depth, refined = self.engine.deblur(x)
        _, mask = self.engine.control(
            x, restored, refined if refined is not None else depth, control
        )
        return mask[0, 0].numpy()

    def depth(self, image: np.ndarray, refined: bool = False) -> np.ndarray:
        """(H, W) float32 depth in [0, 1] (1 = nearest): the estimator's initial depth, or the
        DGN's refined depth D_r with refined=True."""
        rgb, _, _, _ = _split(_from_pil(image) if _is_pil(image) else image)
        x = to_tensor(rgb)
        depth = self.engine.estimate_depth(x)
        if refined:
            _, depth = self.engine.restore(x, depth)
            if depth is None:
                raise ValueError("this DGN variant (baseline) has no refined depth")
        return depth[0, 0].numpy()


def make_control(
    strength: float = 1.0,
    keep_background: bool | float | None = None,
    keep_foreground: bool | float | None = None,
) -> blend.Control:
    """The blend.Control of the API's keyword arguments (True = automatic threshold)."""
    if keep_background not in (None, False) and keep_foreground not in (None, False):
        raise ValueError("keep_background and keep_foreground exclude each other")
    keep, value = None, None
    for name, v in (("background", keep_background), ("foreground", keep_foreground)):
        if v is not None and v is not False:
            keep, value = name, v
    threshold = None if value is None or value is True else float(value)
    return blend.Control(strength=float(strength), keep=keep, threshold=threshold)


def _kw(control: blend.Control) -> dict:
    if control.keep is None:
        return {"strength": control.strength}
    value = True if control.threshold is None else control.threshold
    return {"strength": control.strength, f"keep_{control.keep}": value}


def _is_pil(image) -> bool:
    return type(image).__module__.startswith("PIL.")


def _from_pil(image) -> np.ndarray:
    """A PIL image -> numpy: L/RGB/RGBA as uint8, I;16 as uint16, other modes via RGB(A)."""
    if image.mode in ("L", "RGB", "RGBA"):
        return np.asarray(image)
    if image.mode in ("I;16", "I;16L", "I;16B"):
        return np.asarray(image).astype(np.uint16)
    has_alpha = "A" in image.mode or "transparency" in image.info
    return np.asarray(image.convert("RGBA" if has_alpha else "RGB"))


def _to_pil(array: np.ndarray, mode: str):
    from PIL import Image

    if mode in ("I;16", "I;16L", "I;16B"):
        return Image.fromarray(array.astype(np.uint16))  # 2-D uint16 -> mode I;16
    return Image.fromarray(array)  # L, RGB, RGBA; other modes were read (and return) as RGB(A)


def _split(image: np.ndarray):
    """-> (RGB (H, W, 3), alpha or None, gray flag, dtype); floats are computed in float32."""
    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.uint16) and image.dtype.kind != "f":
        raise ValueError(f"unsupported image dtype {image.dtype}; use uint8, uint16 or float")
    dtype = image.dtype
    if image.ndim in (2, 3) and 0 in image.shape[:2]:
        raise ValueError(f"empty image: shape {image.shape} has no pixels")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        rgb, alpha, gray = np.repeat(image[:, :, None], 3, axis=2), None, True
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        rgb, gray = image[:, :, :3], False
        alpha = image[:, :, 3].copy() if image.shape[2] == 4 else None
    else:
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    if dtype.kind == "f":
        rgb = np.clip(rgb, 0, 1).astype(np.float32)
    return rgb, alpha, gray, dtype
