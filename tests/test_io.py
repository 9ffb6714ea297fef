import numpy as np
import pytest
import tifffile
from PIL import Image

from virtualstain.data.io import read_image, to_channels_first, write_tiff
from virtualstain.errors import UserError


def test_write_read_roundtrip_keeps_values_pixel_size_and_channel_names(tmp_path, rng):
    a = rng.normal(size=(2, 17, 23)).astype(np.float32)
    write_tiff(tmp_path / "x.tif", a, pixel_size_um=0.325, channel_names=["dna", "membrane"])
    b, meta = read_image(tmp_path / "x.tif")
    assert b.dtype == np.float32 and np.array_equal(a, b)
    assert meta.pixel_size_um == pytest.approx(0.325)
    assert meta.channel_names == ["dna", "membrane"]
    assert meta.axes == "CYX"
    assert not list(tmp_path.glob(".*part*")), "temporary file left behind"


def test_reads_compressed_multipage_and_imagej_pixel_size(tmp_path, rng):
    stack = rng.integers(0, 4000, size=(5, 20, 30), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "z.tif", stack, imagej=True, compression="zlib",
                     resolution=(1 / 0.65, 1 / 0.65), metadata={"axes": "ZYX", "unit": "um"})
    b, meta = read_image(tmp_path / "z.tif")
    assert np.array_equal(b, stack)
    assert meta.axes == "ZYX"
    assert meta.pixel_size_um == pytest.approx(0.65, rel=1e-4)
    assert to_channels_first(b, meta, 2, "z.tif").shape == (5, 20, 30)
    assert to_channels_first(b, meta, 3, "z.tif").shape == (1, 5, 20, 30)


def test_reads_png(tmp_path, rng):
    a = rng.integers(0, 255, size=(12, 14), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    b, meta = read_image(tmp_path / "a.png")
    assert np.array_equal(a, b) and meta.axes == "YX"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match=r"nope\.tif: file not found"):
        read_image(tmp_path / "nope.tif")


def test_corrupt_tiff_is_named_with_fix(tmp_path, rng):
    write_tiff(tmp_path / "ok.tif", rng.normal(size=(1, 64, 64)))
    data = (tmp_path / "ok.tif").read_bytes()
    (tmp_path / "broken.tif").write_bytes(data[: len(data) // 3])
    (tmp_path / "garbage.tif").write_bytes(b"this is not a tiff at all")
    for name in ("broken.tif", "garbage.tif"):
        with pytest.raises(UserError, match=rf"{name}: not a readable TIFF .*re-export"):
            read_image(tmp_path / name)


def test_unsupported_suffix(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="unsupported file type '.jpg'"):
        read_image(tmp_path / "a.jpg")
