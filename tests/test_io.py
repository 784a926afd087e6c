"""Image I/O: bit depth, grayscale, alpha, EXIF orientation and metadata, corrupt files."""

import io as pyio

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from dgn_cli import io
from dgn_cli.errors import InputError, OutputError

RNG = np.random.default_rng(0)


def rand(shape, dtype=np.uint8):
    top = 65535 if dtype == np.uint16 else 255
    return RNG.integers(0, top + 1, size=shape).astype(dtype)


# Made once: an ICC header holds its creation time, so two calls can differ.
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def srgb_icc() -> bytes:
    return SRGB_ICC


def roundtrip(pic: io.Picture, path):
    """read -> tensor -> array -> write -> read: what the commands do with an identity model."""
    rgb = io.from_tensor(io.to_tensor(pic.rgb), pic.rgb.dtype, gray=pic.gray)
    notes = io.write_image(path, rgb, alpha=pic.alpha, exif=pic.exif, icc=pic.icc)
    return io.read_image(path), notes


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_rgb_png_bit_depth_exact(tmp_path, dtype):
    src = rand((37, 53, 3), dtype)
    cv2.imwrite(str(tmp_path / "a.png"), src[:, :, ::-1])
    pic = io.read_image(tmp_path / "a.png")
    assert pic.rgb.dtype == dtype and not pic.gray and pic.alpha is None
    np.testing.assert_array_equal(pic.rgb, src)
    out, notes = roundtrip(pic, tmp_path / "b.png")
    np.testing.assert_array_equal(out.rgb, src)
    assert notes == []
    assert cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_UNCHANGED).dtype == dtype


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_grayscale_stays_grayscale(tmp_path, dtype):
    src = rand((20, 31), dtype)
    cv2.imwrite(str(tmp_path / "g.png"), src)
    pic = io.read_image(tmp_path / "g.png")
    assert pic.gray and pic.rgb.shape == (20, 31, 3)
    assert (pic.rgb == src[:, :, None]).all()
    out, _ = roundtrip(pic, tmp_path / "o.png")
    raw = cv2.imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED)
    assert raw.ndim == 2 and raw.dtype == dtype
    np.testing.assert_array_equal(raw, src)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_rgba_alpha_untouched(tmp_path, dtype):
    src = rand((16, 24, 4), dtype)
    cv2.imwrite(str(tmp_path / "a.png"), src)
    pic = io.read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(pic.alpha, src[:, :, 3])
    np.testing.assert_array_equal(pic.rgb, src[:, :, 2::-1])
    out, _ = roundtrip(pic, tmp_path / "b.png")
    np.testing.assert_array_equal(out.alpha, src[:, :, 3])


def test_gray_alpha_png(tmp_path):
    la = rand((10, 12, 2))
    Image.fromarray(la).save(tmp_path / "la.png")
    pic = io.read_image(tmp_path / "la.png")
    assert pic.gray and pic.alpha is not None
    out, _ = roundtrip(pic, tmp_path / "o.png")
    with Image.open(tmp_path / "o.png") as im:
        assert im.mode == "LA"
        np.testing.assert_array_equal(np.asarray(im), la)


def _rotated_jpeg(path, upright: np.ndarray):
    """Store `upright` rotated 90 degrees with EXIF orientation 6, as phones do."""
    stored = np.rot90(upright, 1)  # orientation 6 = rotate the stored pixels 90 deg clockwise
    exif = Image.Exif()
    exif[io.ORIENTATION] = 6
    exif[0x010F] = "PhoneMaker"
    Image.fromarray(np.ascontiguousarray(stored)).save(
        path, "JPEG", quality=98, exif=exif.tobytes(), icc_profile=srgb_icc()
    )


def test_exif_orientation_applied_and_metadata_kept(tmp_path):
    upright = np.zeros((40, 64, 3), np.uint8)
    upright[:10, :20] = (255, 0, 0)  # red block top-left when upright
    _rotated_jpeg(tmp_path / "phone.jpg", upright)
    pic = io.read_image(tmp_path / "phone.jpg")
    assert pic.orientation == 6 and pic.rgb.shape == (40, 64, 3)
    assert pic.rgb[2:8, 2:18, 0].min() > 200 and pic.rgb[30:, 40:, 0].max() < 60
    # OpenCV's IMREAD_COLOR applies the orientation too: same pixels
    ref = cv2.imread(str(tmp_path / "phone.jpg"), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(pic.rgb, ref)
    for ext in (".jpg", ".png", ".webp", ".tiff"):
        roundtrip(pic, tmp_path / f"out{ext}")
        with Image.open(tmp_path / f"out{ext}") as im:
            assert im.size == (64, 40), ext  # upright, and no second rotation by viewers
            exif = im.getexif()
            assert exif.get(io.ORIENTATION) == 1 and exif.get(0x010F) == "PhoneMaker", ext
            assert im.info.get("icc_profile") == srgb_icc(), ext


def test_sixteen_bit_to_jpeg_is_noted(tmp_path):
    notes = io.write_image(tmp_path / "o.jpg", rand((8, 8, 3), np.uint16), alpha=rand((8, 8)))
    assert any("8-bit" in n for n in notes) and any("alpha" in n for n in notes)
    assert cv2.imread(str(tmp_path / "o.jpg")).dtype == np.uint8


def test_float_tiff(tmp_path):
    src = RNG.random((9, 11, 3), dtype=np.float32)
    io.write_image(tmp_path / "f.tiff", src)
    pic = io.read_image(tmp_path / "f.tiff")
    assert pic.rgb.dtype == np.float32
    np.testing.assert_allclose(pic.rgb, src, atol=1e-6)


def test_pillow_fallback_for_tiff_with_metadata(tmp_path):
    src = rand((12, 14, 3))
    Image.fromarray(src).save(tmp_path / "m.tiff", icc_profile=srgb_icc())
    pic = io.read_image(tmp_path / "m.tiff")
    np.testing.assert_array_equal(pic.rgb, src)
    assert pic.icc == srgb_icc()


def test_corrupt_and_truncated_inputs(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match="bad.png: cannot decode"):
        io.read_image(tmp_path / "bad.png")
    buf = pyio.BytesIO()
    Image.fromarray(rand((64, 64, 3))).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="cut.jpg"):
        io.read_image(tmp_path / "cut.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        io.read_image(tmp_path / "empty.jpg")
    with pytest.raises(InputError, match="cannot read"):
        io.read_image(tmp_path / "missing.png")


def test_output_format_choice(tmp_path):
    assert io.output_ext("x.JPEG") == ".jpeg" and io.output_ext("x.png", "tiff") == ".tiff"
    with pytest.raises(OutputError, match="format"):
        io.output_ext("x.gif")
    with pytest.raises(OutputError, match="unknown format"):
        io.output_ext("x.png", "gif")


def test_tensor_conversions_exact_for_8_and_16_bit():
    for dtype in (np.uint8, np.uint16):
        src = rand((300, 7, 3), dtype)  # more rows than one conversion block
        t = io.to_tensor(src)
        assert t.shape == (1, 3, 300, 7) and 0 <= t.min() and t.max() <= 1
        np.testing.assert_array_equal(io.from_tensor(t, dtype), src)
