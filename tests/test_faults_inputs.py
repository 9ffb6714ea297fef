"""Nothing lost, nothing silent: bad inputs, configs, options and bundles are refused with one line naming the
file, field or option and the fix (exit 2), never garbage with exit 0 nor a traceback with exit 1 (issue 12)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from conftest import TINY_MODEL, tiny_config

from virtualstain.cli import main
from virtualstain.data.io import as_float32, read_image, read_text_utf8, to_channels_first, write_tiff
from virtualstain.data.normalization import Normalizer
from virtualstain.data.patches import augment, fit_patch_size
from virtualstain.data.samples import read_manifest, samples_from_arrays
from virtualstain.data.splits import Region
from virtualstain.data.synthetic import make_field
from virtualstain.errors import UserError
from virtualstain.inference.options import PredictOptions
from virtualstain.inference.predict import pick_device, predict
from virtualstain.models.bundle import ModelBundle, load_bundle, save_bundle
from virtualstain.models.bundle_meta import META_HASH_KEY, read_meta, seal
from virtualstain.models.registry import build, make_config
from virtualstain.optics.tie import solve_poisson, tie_phase
from virtualstain.training.config import check_hardware, config_from_dict, load_config
from virtualstain.workflows.stain.train import train

# --------------------------------------------------------------------------------------------------------------
# helpers


def _bundle(pixel_size_um: float | None = 0.5) -> ModelBundle:
    torch.manual_seed(0)
    cfg = make_config("pics", 1, 2, depth=2, base_width=4)
    net = build("pics", cfg).eval()
    return ModelBundle(net, "pics", Normalizer("zscore", [0.0], [1.0]), Normalizer("zscore", [10.0, 0.0], [2.0, 1.0]),
                       ["in"], ["a", "b"], pixel_size_um=pixel_size_um)


@pytest.fixture
def bundle_dir(tmp_path) -> Path:
    return save_bundle(_bundle(), tmp_path / "model")


@pytest.fixture
def image_file(tmp_path, rng) -> Path:
    return write_tiff(tmp_path / "img.tif", rng.normal(size=(1, 40, 40)).astype(np.float32), pixel_size_um=0.5)


def _edit_meta(folder: Path, change, reseal: bool = True) -> None:
    meta = json.loads((folder / "model.json").read_text())
    change(meta)
    (folder / "model.json").write_text(json.dumps(seal(meta) if reseal else meta, indent=2))


def _manifest(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _pair(tmp_path: Path, name: str, seed: int = 0) -> tuple[str, str]:
    field = make_field((48, 48), seed=seed)
    write_tiff(tmp_path / f"{name}_in.tif", field.input)
    write_tiff(tmp_path / f"{name}_tg.tif", field.target)
    return f"{name}_in.tif", f"{name}_tg.tif"


def _old_augment(x, y, rng):  # the augmentation before issue 12, for square patches
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    axes = (x.ndim - 2, x.ndim - 1)
    x, y = np.rot90(x, k, axes=axes), np.rot90(y, k, axes=axes)
    if flip:
        x, y = np.flip(x, axis=-1), np.flip(y, axis=-1)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


# --------------------------------------------------------------------------------------------------------------
# 1. non-square training patches


def test_augment_keeps_non_square_patches_in_shape_and_square_ones_as_before(rng):
    x = rng.normal(size=(2, 16, 24)).astype(np.float32)
    seen = set()
    for seed in range(40):
        xa, ya = augment(x, x.copy(), np.random.default_rng(seed))
        assert xa.shape == x.shape and np.array_equal(xa, ya)
        seen.add(next(name for name, t in {"id": x, "rot180": x[:, ::-1, ::-1], "flipx": x[:, :, ::-1],
                                           "flipy": x[:, ::-1, :]}.items() if np.array_equal(xa, t)))
    assert seen == {"id", "rot180", "flipx", "flipy"}  # every symmetry of a rectangle is used
    square = rng.normal(size=(1, 3, 16, 16)).astype(np.float32)
    for seed in range(16):  # square patches: the same transforms from the same random stream as before
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        new, old = augment(square, square + 1, a), _old_augment(square, square + 1, b)
        assert np.array_equal(new[0], old[0]) and np.array_equal(new[1], old[1])
        assert a.integers(1 << 30) == b.integers(1 << 30)


def test_augment_of_a_non_square_super_resolution_pair_transforms_input_and_target_alike(rng):
    x = rng.normal(size=(1, 8, 12)).astype(np.float32)
    y = np.kron(x, np.ones((1, 3, 3), np.float32))  # the same field at 3×
    for seed in range(16):
        xa, ya = augment(x, y, np.random.default_rng(seed))
        assert xa.shape == (1, 8, 12) and ya.shape == (1, 24, 36)
        assert np.array_equal(ya, np.kron(xa, np.ones((1, 3, 3), np.float32)))


def test_training_with_a_non_square_patch_size_runs(tmp_path, synthetic_manifest):
    config = {"model": TINY_MODEL, "data": {"patch_size": [32, 48]},
              "training": {"max_epochs": 1, "patches_per_epoch": 8, "batch_size": 4, "progress_bar": False,
                           "early_stopping_patience": None}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(synthetic_manifest), "--out", str(tmp_path / "run"), "--config",
                 str(tmp_path / "c.yaml")]) == 0
    assert json.loads((tmp_path / "run" / "model" / "model.json").read_text())["training"]["patch_size"] == [32, 48]


def test_training_on_a_region_thinner_than_the_patch_runs(tmp_path):
    field = make_field((40, 200), seed=2)  # cut along X: the training region is 40 px high, the patch 64²
    samples = samples_from_arrays([field.input], [field.target], pixel_size_um=0.5)
    config = config_from_dict({"model": TINY_MODEL, "data": {"patch_size": [64, 64]},
                               "training": {**tiny_config().training.model_dump(), "max_epochs": 1}})
    result = train(samples, tmp_path / "run", config)
    assert result.bundle is not None and result.bundle.training.patch_size == [40, 64]


def test_patch_sizes_below_the_size_multiple_are_refused():
    regions = [Region(0, "train", ((0, 64), (0, 64)))]
    with pytest.raises(UserError, match=r"data.patch_size \[2, 8\].*at least the network's size multiple \[4, 4\]"):
        fit_patch_size((2, 8), regions, (4, 4))
    with pytest.raises(UserError, match=r"data.patch_size: each value must be a positive number"):
        config_from_dict({"data": {"patch_size": [0, -5]}})


# --------------------------------------------------------------------------------------------------------------
# 2. silent garbage


def test_interleaved_rgb_tiff_puts_samples_first(tmp_path, rng):
    rgb = rng.integers(0, 255, size=(30, 40, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    array, meta = read_image(tmp_path / "rgb.tif")
    assert array.shape == (3, 30, 40) and meta.axes == "CYX"
    assert np.array_equal(array, np.moveaxis(rgb, -1, 0))
    assert to_channels_first(array, meta, 2, "rgb.tif").shape == (3, 30, 40)


def test_complex_images_are_refused(tmp_path, rng):
    field = (rng.normal(size=(24, 24)) + 1j * rng.normal(size=(24, 24))).astype(np.complex64)
    tifffile.imwrite(tmp_path / "c.tif", field)
    with pytest.raises(UserError, match=r"c.tif: the pixels are complex \(complex64\).*numpy.angle"):
        read_image(tmp_path / "c.tif")
    with pytest.raises(UserError, match="array0: the pixels are complex"):
        samples_from_arrays([field[None]], [np.abs(field)[None]])
    with pytest.raises(UserError, match="x: the pixels are complex"):
        predict(_bundle(), field[None], source="x", tile_size=0)


def test_bundle_with_nan_weights_is_refused(tmp_path, image_file):
    bundle = _bundle()
    with torch.no_grad():
        next(bundle.network.parameters())[0] = float("nan")
    folder = save_bundle(bundle, tmp_path / "nan")  # a diverged model, saved with a valid checksum
    with pytest.raises(UserError, match=r"weights.safetensors: 1 tensor\(s\) hold NaN or infinite values.*retrain"):
        load_bundle(folder)
    assert main(["predict", str(folder), str(image_file), "--out", str(tmp_path / "pred")]) == 2
    assert not (tmp_path / "pred" / "img.tif").exists()


@pytest.mark.parametrize("scale", [[0.0], [float("nan")], [float("inf")], [-1.0]])
def test_bundle_with_a_zero_or_nan_normalisation_scale_is_refused(bundle_dir, scale, capsys):
    _edit_meta(bundle_dir, lambda m: m["normalization"]["input"].update(scale=scale))
    with pytest.raises(UserError, match=r"model.json: normalization.input: scale .* must be finite and > 0"):
        load_bundle(bundle_dir)
    with pytest.raises(UserError, match=r"n.json: offset \[nan\] is not finite"):
        Normalizer.from_dict({"method": "zscore", "offset": [float("nan")], "scale": [1.0]}, "n.json")
    assert main(["info", str(bundle_dir)]) == 2
    assert "model.json: normalization.input" in capsys.readouterr().err


@pytest.mark.parametrize("section, key, value", [
    ("training", "lr", float("inf")), ("training", "lr", float("nan")), ("training", "betas", [float("nan"), 0.9]),
    ("training", "lr_factor", float("nan")), ("training", "max_minutes", float("inf")),
    ("data", "percentiles", [1.0, float("inf")]), ("data", "min_signal_fraction", float("nan")),
    ("split", "val_fraction", float("nan")), ("split", "test_fraction", float("nan")),
])
def test_non_finite_numbers_in_the_config_are_refused(tmp_path, synthetic_manifest, section, key, value, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({section: {key: value}}))  # written as .inf / .nan
    where = rf"c.yaml: {section}.{key}(\.\d| \(option --[a-z-]+\))?"  # betas.0; the option that sets the field
    with pytest.raises(UserError, match=rf"{where}: Input should be a finite number"):
        load_config(path)
    assert main(["train", str(synthetic_manifest), "--out", str(tmp_path / "run"), "--config", str(path)]) == 2
    assert "finite number" in capsys.readouterr().err and not (tmp_path / "run" / "model").exists()


# --------------------------------------------------------------------------------------------------------------
# 3. user errors that used to exit 1


def test_unknown_or_absent_devices_are_refused_with_the_available_ones(monkeypatch, bundle_dir, image_file, tmp_path,
                                                                        capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(UserError, match=r"--device 'foo' is not a device name; available here: cpu"):
        pick_device("foo")
    with pytest.raises(UserError, match=r"--device 'cuda': no CUDA GPU is available .*available here: cpu"):
        pick_device("cuda")
    assert pick_device("cpu") == torch.device("cpu")
    for device in ("foo", "cuda", "cuda:3"):
        assert main(["predict", str(bundle_dir), str(image_file), "--out", str(tmp_path / "p"), "--device", device]) == 2
        assert "available here: cpu" in capsys.readouterr().err


@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_a_gpu_accelerator_without_cuda_is_refused_naming_the_field(monkeypatch, accelerator):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(UserError, match=rf"training.accelerator: '{accelerator}' needs a CUDA GPU.*set "
                                        "training.accelerator: cpu"):
        check_hardware(config_from_dict({"training": {"accelerator": accelerator}}))
    check_hardware(config_from_dict({"training": {"accelerator": "cpu", "devices": 1}}))


@pytest.mark.parametrize("minutes", ["0", "-5"])
def test_max_minutes_zero_or_negative_names_the_option(tmp_path, synthetic_manifest, minutes, capsys):
    assert main(["train", str(synthetic_manifest), "--out", str(tmp_path / "run"), "--max-minutes", minutes]) == 2
    err = capsys.readouterr().err
    assert "training.max_minutes (option --max-minutes): Input should be greater than 0" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("encoding, words", [("utf-16", "is saved as UTF-16"), ("latin-1", "is not UTF-8")])
def test_manifests_and_configs_that_are_not_utf8_are_refused(tmp_path, synthetic_manifest, encoding, words, capsys):
    a_in, a_tg = _pair(tmp_path, "é")
    manifest = _manifest(tmp_path, f"input,target\n{a_in},{a_tg}\n", encoding)
    with pytest.raises(UserError, match=rf"m.csv: the manifest {words}.*save it as UTF-8"):
        read_manifest(manifest)
    assert main(["train", str(manifest), "--out", str(tmp_path / "run")]) == 2
    assert "save it as UTF-8" in capsys.readouterr().err
    config = tmp_path / "c.yaml"
    config.write_bytes("# pixel size in µm\ntraining:\n  max_epochs: 1\n".encode(encoding))
    with pytest.raises(UserError, match=rf"c.yaml: the config {words}.*save it as UTF-8"):
        load_config(config)
    assert main(["train", str(synthetic_manifest), "--out", str(tmp_path / "run"), "--config", str(config)]) == 2
    assert "save it as UTF-8" in capsys.readouterr().err
    (tmp_path / "bom.csv").write_bytes("\ufeffinput,target\n".encode())
    assert read_text_utf8(tmp_path / "bom.csv", "manifest", "give a CSV") == "input,target\n"  # a UTF-8 BOM is fine


def test_a_manifest_row_with_more_cells_than_columns_is_refused(tmp_path, capsys):
    a_in, a_tg = _pair(tmp_path, "a")
    manifest = _manifest(tmp_path, f"input,target\n{a_in},{a_tg}\n{a_in},{a_tg},extra\n")
    with pytest.raises(UserError, match=r"m.csv, line 3: 3 cells but the header has 2 columns.*quote a path"):
        read_manifest(manifest)
    assert main(["train", str(manifest), "--out", str(tmp_path / "run")]) == 2
    assert "line 3: 3 cells" in capsys.readouterr().err


@pytest.mark.parametrize("change", [
    lambda m: m.pop("normalization"),
    lambda m: m.pop("input_channel_names"),
    lambda m: m.update(input_channel_names=5),
    lambda m: m.update(output_channel_names=["only one"]),
    lambda m: m["normalization"].update(input="zscore"),
    lambda m: m["normalization"]["target"].pop("offset"),
    lambda m: m["network"].update(depth="four"),
    lambda m: m["network"].update(base_width=None),
    lambda m: m.update(pixel_size_um=float("nan")),
    lambda m: m.update(pixel_size_um="0.5"),
    lambda m: m.update(input_channels="0,1"),
    lambda m: m.update(training=[1, 2]),
    lambda m: m.update(validation="good"),
], ids=["no-normalization", "no-names", "names-int", "names-count", "normalizer-str", "no-offset", "depth-str",
        "width-null", "pixel-nan", "pixel-str", "channels-str", "training-list", "validation-str"])
def test_a_damaged_model_json_is_refused_naming_it(bundle_dir, change, capsys):
    _edit_meta(bundle_dir, change)
    with pytest.raises(UserError, match=r"model.json"):
        load_bundle(bundle_dir)
    assert main(["info", str(bundle_dir)]) == 2
    err = capsys.readouterr().err
    assert "model.json" in err and "Traceback" not in err


def test_a_model_json_that_is_not_an_object_and_an_empty_checksum_file_are_refused(bundle_dir, capsys):
    (bundle_dir / "weights.sha256").write_text("")
    with pytest.raises(UserError, match=r"weights.sha256: is empty; the bundle is damaged"):
        load_bundle(bundle_dir)
    assert main(["info", str(bundle_dir)]) == 2
    (bundle_dir / "model.json").write_text("[1, 2]")
    with pytest.raises(UserError, match=r"model.json: holds a JSON list, not an object"):
        read_meta(bundle_dir)
    assert main(["info", str(bundle_dir), "--json"]) == 2


def test_an_image_too_large_for_memory_is_refused_with_its_size(tmp_path, monkeypatch, bundle_dir, capsys):
    zeros = np.zeros((2048, 2048), np.uint8)
    big = tmp_path / "big.tif"  # a real 30000² file (1 MB compressed); reading it is what runs out of memory
    tifffile.imwrite(big, (zeros for _ in range(15 * 15)), shape=(30000, 30000), dtype=np.uint8, tile=(2048, 2048),
                     compression="zlib")

    def out_of_memory(self, *args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", out_of_memory)
    with pytest.raises(UserError, match=r"big.tif: an image of shape \(30000, 30000\) needs 0.8 GiB as uint8 and does "
                                        r"not fit in memory; cut it into smaller fields"):
        read_image(big)
    assert main(["predict", str(bundle_dir), str(big), "--out", str(tmp_path / "p")]) == 2
    assert "does not fit in memory" in capsys.readouterr().err

    class Huge(np.ndarray):
        def astype(self, *args, **kwargs):
            raise MemoryError

    with pytest.raises(UserError, match=r"x.tif: an image of shape \(1, 8, 8\) needs .* GiB as float32"):
        as_float32(np.zeros((1, 8, 8), np.uint16).view(Huge), "x.tif")


# --------------------------------------------------------------------------------------------------------------
# 4. duplicate manifest rows


def test_duplicate_inputs_in_a_manifest_are_refused_naming_both_lines(tmp_path, capsys):
    a_in, a_tg = _pair(tmp_path, "a")
    b_in, b_tg = _pair(tmp_path, "b", seed=1)
    manifest = _manifest(tmp_path, f"input,target,group\n{a_in},{a_tg},w1\n{b_in},{b_tg},w2\n./{a_in},{a_tg},w3\n")
    with pytest.raises(UserError, match=r"m.csv: lines 2 and 4 both use the input .*a_in.tif \(in different groups\); "
                                        r"the same image would leak"):
        read_manifest(manifest)
    assert main(["train", str(manifest), "--out", str(tmp_path / "run")]) == 2
    assert "lines 2 and 4" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------
# 5. numbers without range checks


@pytest.mark.parametrize("value", ["-0.5", "nan", "0", "inf"])
def test_implausible_pixel_sizes_are_refused(tmp_path, value):
    a_in, a_tg = _pair(tmp_path, "a")
    manifest = _manifest(tmp_path, f"input,target,pixel_size_um\n{a_in},{a_tg},{value}\n")
    with pytest.raises(UserError, match=r"m.csv, line 2: pixel_size_um .* is outside the plausible range"):
        read_manifest(manifest)
    field = make_field((32, 32))
    with pytest.raises(UserError, match=r"pixel_size_um .* is outside the plausible range"):
        samples_from_arrays([field.input], [field.target], pixel_size_um=float(value))


def test_tiles_smaller_than_the_size_multiple_and_a_zero_memory_budget_are_refused(bundle_dir, image_file, tmp_path,
                                                                                    capsys):
    for option in (["--tile-size", "1"], ["--tile-size", "-2"], ["--memory-mb", "0"], ["--memory-mb", "-1"]):
        assert main(["predict", str(bundle_dir), str(image_file), "--out", str(tmp_path / "p"), *option]) == 2
        assert option[0] in capsys.readouterr().err
    with pytest.raises(UserError, match=r"--memory-mb 0 must be a positive number of MB"):
        PredictOptions(memory_budget_mb=0)
    with pytest.raises(UserError, match=r"--tile-size 2: a tile core must be at least the model's size multiple"):
        predict(_bundle(), np.ones((1, 40, 40), np.float32), tile_size=2)


def test_tiles_far_smaller_than_their_margins_warn():
    bundle = _bundle()
    image = np.random.default_rng(0).normal(size=(1, 16, 16)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"tiles of \[4, 4\] px with margins of .* make the network do .*× the work"):
        tiled = predict(bundle, image, tile_size=4)
    assert np.allclose(tiled, predict(bundle, image, tile_size=0), atol=1e-4 * float(np.ptp(tiled)))


def test_more_training_devices_than_the_machine_has_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with pytest.raises(UserError, match=rf"training.devices: 64, but .* {cpus} usable CPU core\(s\); set "
                                        rf"training.devices to at most {cpus}"):
        check_hardware(config_from_dict({"training": {"devices": 64, "accelerator": "cpu"}}))
    with pytest.raises(UserError, match=r"training.devices: give a number of devices ≥ 1, or auto"):
        config_from_dict({"training": {"devices": 0}})


def test_negative_or_nan_tie_regularisation_is_refused():
    stack = np.stack([np.ones((16, 16)), 1 + 0.01 * np.eye(16)])
    for eps in (-1e-4, float("nan")):
        with pytest.raises(ValueError, match=r"regularization_per_um2 must be a finite number ≥ 0"):
            tie_phase(stack, [-1, 1], wavelength_um=0.55, pixel_size_um=0.5, regularization_per_um2=eps)
        with pytest.raises(ValueError, match=r"regularization_per_um2"):
            solve_poisson(np.zeros((8, 8)), 0.5, regularization_per_um2=eps)


# --------------------------------------------------------------------------------------------------------------
# 6. bundles


def test_bundles_are_readable_by_others(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    folder = save_bundle(_bundle(), tmp_path / "m")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_an_edited_model_json_is_detected_and_old_bundles_still_load(bundle_dir, capsys):
    meta = json.loads((bundle_dir / "model.json").read_text())
    assert len(meta[META_HASH_KEY]) == 64
    (bundle_dir / "model.json").write_text(json.dumps(meta))  # re-indented, same content: still fine
    load_bundle(bundle_dir)
    _edit_meta(bundle_dir, lambda m: m.update(pixel_size_um=0.65), reseal=False)
    with pytest.raises(UserError, match=r"model.json: its content does not match the SHA-256 it records"):
        load_bundle(bundle_dir)
    assert main(["info", str(bundle_dir), "--json"]) == 2
    assert "model.json was edited or damaged" in capsys.readouterr().err
    old = Path(__file__).parent / "data" / "bundles_format1" / "pics"
    assert META_HASH_KEY not in read_meta(old)
    assert load_bundle(old).config.in_channels == 1


def test_info_json_reads_json_only_without_torch(bundle_dir):
    code = (f"import sys\nfrom virtualstain.cli import main\nassert main(['info', r'{bundle_dir}', '--json']) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["architecture"] == "pics"


def test_segment_refuses_stacks_of_more_than_three_axes_and_implausible_lengths(tmp_path, capsys):
    image = np.random.default_rng(0).normal(size=(2, 3, 24, 24)).astype(np.float32)
    write_tiff(tmp_path / "zc.tif", image)
    assert main(["segment", str(tmp_path / "zc.tif"), "--out", str(tmp_path / "labels")]) == 2
    assert "zc.tif: segment takes 2D images, (Y, X) or (C, Y, X), but this file is (2, 3, 24, 24)" in \
        capsys.readouterr().err
    write_tiff(tmp_path / "one.tif", image[0, :1])
    for flag, value, words in (("--pixel-size-um", "-1", "--pixel-size-um -1.0: give a finite number ≥ 0 (µm)"),
                               ("--pixel-size-um", "1e4", "--pixel-size-um 10000.0 is outside the plausible range"),
                               ("--smooth-um", "-2", "--smooth-um -2.0: give a finite number ≥ 0 (µm)")):
        assert main(["segment", str(tmp_path / "one.tif"), "--out", str(tmp_path / "labels"), flag, value]) == 2
        assert words in capsys.readouterr().err
    assert not list(tmp_path.glob("labels/*"))  # no label file written
