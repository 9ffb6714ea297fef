"""BioImage Model Zoo export: the package passes the Model Zoo's own test, and loads back as a bundle."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from virtualstain.data.normalization import Normalizer
from virtualstain.errors import UserError
from virtualstain.models.bundle import CHECKSUM, META, WEIGHTS, ModelBundle, save_bundle
from virtualstain.models.registry import build, make_config


def _need_bmz():
    pytest.importorskip("bioimageio.spec", reason="BioImage Model Zoo export needs bioimageio.spec")
    pytest.importorskip("bioimageio.core", reason="the Model Zoo's test_model needs bioimageio.core")
    pytest.importorskip("onnx", reason="the package's ONNX weights need onnx")
    pytest.importorskip("onnxruntime", reason="the Model Zoo runs ONNX weights with onnxruntime")


def _bundle(folder: Path, input_normalizer: Normalizer) -> ModelBundle:
    """A tiny pics-like 2D model (depth 2, width 4) with non-trivial batch-norm statistics, saved to ``folder``."""
    torch.manual_seed(0)
    net = build("pics", make_config("pics", 1, 2, spatial_dims=2, depth=2, base_width=4))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    net.eval()
    bundle = ModelBundle(net, "pics", input_normalizer, Normalizer("zscore", [300.0, 5.0], [40.0, 2.0]),
                         ["phase"], ["DAPI", "DiI"], pixel_size_um=0.65)
    save_bundle(bundle, folder)
    return bundle


@pytest.fixture(scope="module")
def dataset_package(tmp_path_factory):
    """A dataset-scope percentile-normalised model and its package (exported once for the module)."""
    _need_bmz()
    from virtualstain.export.bmz import export_bmz

    root = tmp_path_factory.mktemp("bmz")
    bundle = _bundle(root / "model", Normalizer("percentile", [120.0], [80.0]))
    return bundle, export_bmz(root / "model", root / "model.zip")  # the folder: its files attached as they are


def _assert_model_zoo_test_passes(path: Path) -> None:
    from bioimageio.core import test_model

    summary = test_model(path)
    names = [d.name for d in summary.details]
    assert summary.status == "passed", summary.format()
    assert any("Reproduce test outputs" in n and "onnx" in n for n in names), names


def test_dataset_scope_package_passes_model_zoo_test(dataset_package):
    _, path = dataset_package
    _assert_model_zoo_test_passes(path)


def test_image_scope_package_passes_model_zoo_test(tmp_path, monkeypatch):
    _need_bmz()
    monkeypatch.setenv("VIRTUALSTAIN_CACHE", str(tmp_path / "cache"))
    from virtualstain.export.bmz import export_bmz

    normalizer = Normalizer("percentile", [120.0], [80.0], scope="image", percentiles=(2.0, 99.5))
    bundle = _bundle(tmp_path / "model", normalizer)
    rng = np.random.default_rng(5)
    raw = (200.0 + 50.0 * rng.standard_normal((1, 75, 90))).astype(np.float32)  # cropped to 72 × 88
    path = export_bmz(bundle, tmp_path / "image.zip", test_input=raw)
    with zipfile.ZipFile(path) as zf:
        assert np.load(zf.open("test_input.npy")).shape == (1, 1, 72, 88)
        rdf = zf.read("rdf.yaml").decode()
    assert "scale_range" in rdf and "max_percentile: 99.5" in rdf
    _assert_model_zoo_test_passes(path)
    from virtualstain.export.bmz import expected_output
    from virtualstain.inference.predict import predict

    image = raw[:, :72, :88]  # per-image statistics: the same image on both sides
    m = bundle.margin[0]
    diff = np.abs(predict(bundle, image, tile_size=0) - expected_output(bundle, image[None])[0])[:, m:-m, m:-m]
    assert diff.max() < 1e-2  # the Model Zoo's ε = 1e-6 in the range, on outputs of scale 40
    from virtualstain.models.bundle import load_bundle

    loaded = load_bundle(path)  # exported from the object: saved anew, the same tensors
    assert loaded.input_normalizer == normalizer
    reference = bundle.network.state_dict()
    assert all(torch.equal(t, reference[k]) for k, t in loaded.network.state_dict().items())


def test_package_contents(dataset_package):
    import yaml

    bundle, path = dataset_package
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        readme = zf.read(rdf["documentation"]["source"]).decode()
        test_in = np.load(zf.open("test_input.npy"))
        test_out = np.load(zf.open("test_output.npy"))
    assert {"rdf.yaml", "weights.onnx", "test_input.npy", "test_output.npy", "cover.png", "README.md",
            META, WEIGHTS, CHECKSUM} <= names
    assert rdf["weights"]["onnx"]["opset_version"] == 17
    assert test_in.shape == (1, 1, 68, 68) and test_out.shape == (1, 2, 68, 68)  # 2·32 + 1 → 68 (multiple of 4)
    inp, out = rdf["inputs"][0], rdf["outputs"][0]
    assert [a.get("id", a["type"]) for a in inp["axes"]] == ["batch", "channel", "y", "x"]
    assert inp["axes"][1]["channel_names"] == ["phase"] and out["axes"][1]["channel_names"] == ["DAPI", "DiI"]
    assert inp["axes"][2]["size"] == {"min": 68, "step": 4} and out["axes"][2]["halo"] == 32
    assert out["axes"][3]["size"] == {"tensor_id": "input", "axis_id": "x"}
    linear = next(p for p in inp["preprocessing"] if p["id"] == "scale_linear")["kwargs"]
    assert linear["gain"] == pytest.approx([1 / 80.0]) and linear["offset"] == pytest.approx([-1.5])
    post = out["postprocessing"][0]["kwargs"]
    assert post["gain"] == [40.0, 2.0] and post["offset"] == [300.0, 5.0]
    assert rdf["license"] == "CC-BY-4.0" and rdf["cite"][0]["doi"] == "10.1038/s41467-020-20062-x"
    assert "mirror border and exact tiling are not part of the Model Zoo runner" in readme
    assert "## Validation" in readme and bundle.weights_sha256 in readme


def test_expected_output_matches_virtualstain_away_from_edges(dataset_package):
    """The numpy emulation of the Model Zoo's processing agrees with virtualstain's own prediction inside the
    image (the border differs: virtualstain mirrors, the Model Zoo runner does not)."""
    from virtualstain.export.bmz import expected_output
    from virtualstain.inference.predict import predict

    bundle, _ = dataset_package
    raw = np.random.default_rng(2).uniform(100, 250, (1, 96, 96)).astype(np.float32)
    ours = predict(bundle, raw, tile_size=0)
    zoo = expected_output(bundle, raw[None])[0]
    m = bundle.margin[0]
    assert np.abs(ours - zoo)[:, m:-m, m:-m].max() < 1e-3


def test_package_loads_back_as_the_bundle(dataset_package, tmp_path, monkeypatch):
    import hashlib

    import virtualstain
    from virtualstain.inference.predict import predict

    monkeypatch.setenv("VIRTUALSTAIN_CACHE", str(tmp_path / "cache"))
    bundle, path = dataset_package
    loaded = virtualstain.load_model(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    folder = tmp_path / "cache" / "bmz" / digest
    assert sorted(p.name for p in folder.iterdir()) == sorted([META, WEIGHTS, CHECKSUM])
    assert loaded.weights_sha256 == bundle.weights_sha256 and loaded.created == bundle.created
    assert loaded.output_channel_names == ["DAPI", "DiI"] and loaded.pixel_size_um == pytest.approx(0.65)
    image = np.random.default_rng(3).uniform(100, 250, (1, 83, 101)).astype(np.float32)
    assert np.abs(predict(loaded, image) - predict(bundle, image)).max() <= 1e-6
    again = virtualstain.load_model(str(path))  # from the cache, checked again
    assert again.weights_sha256 == bundle.weights_sha256


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


@pytest.fixture
def bundle_files(tmp_path) -> dict[str, bytes]:
    folder = tmp_path / "plain"
    _bundle(folder, Normalizer("zscore", [0.0], [1.0]))
    return {name: (folder / name).read_bytes() for name in (META, WEIGHTS, CHECKSUM)}


@pytest.mark.parametrize("evil", ["../evil", "pkg/../../evil", "/tmp/evil", "C:/evil"])
def test_unsafe_archive_is_refused_and_nothing_extracted(tmp_path, monkeypatch, bundle_files, evil):
    from virtualstain.models.bundle import load_bundle

    monkeypatch.setenv("VIRTUALSTAIN_CACHE", str(tmp_path / "cache"))
    path = _zip(tmp_path / "evil.zip", {**bundle_files, evil: b"x"})
    assert evil in zipfile.ZipFile(path).namelist()
    with pytest.raises(UserError, match=r"evil\.zip: member .*evil.* absolute path or a '\.\.'.*nothing was extracted"):
        load_bundle(path)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_archive_without_bundle_is_refused(tmp_path, monkeypatch, bundle_files):
    from virtualstain.models.bundle import load_bundle

    monkeypatch.setenv("VIRTUALSTAIN_CACHE", str(tmp_path / "cache"))
    path = _zip(tmp_path / "other.zip", {"rdf.yaml": b"type: model\n", WEIGHTS: bundle_files[WEIGHTS]})
    with pytest.raises(UserError, match=r"other\.zip: not a virtualstain model package \(no model\.json in it\); "
                                        r"export the model with .*export_bmz"):
        load_bundle(path)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(UserError, match=r"junk\.zip: not a readable zip archive"):
        load_bundle(tmp_path / "junk.zip")


def test_bundle_files_in_a_subfolder_load_and_others_are_ignored(tmp_path, monkeypatch, bundle_files):
    from virtualstain.models.bundle import load_bundle

    monkeypatch.setenv("VIRTUALSTAIN_CACHE", str(tmp_path / "cache"))
    path = _zip(tmp_path / "nested.zip", {**{f"pkg/{k}": v for k, v in bundle_files.items()}, "pkg/extra.txt": b"x"})
    bundle = load_bundle(path)
    assert bundle.output_channel_names == ["DAPI", "DiI"]
    extracted = [p.name for p in (tmp_path / "cache" / "bmz").rglob("*") if p.is_file()]
    assert sorted(extracted) == sorted([META, WEIGHTS, CHECKSUM])


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    from virtualstain._cache import cache_dir

    monkeypatch.setenv("VIRTUALSTAIN_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("VIRTUALSTAIN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "virtualstain"


def test_cli_export_takes_a_real_test_image(trained_run, tmp_path, monkeypatch):
    pytest.importorskip("bioimageio.spec")
    from virtualstain.cli import main
    from virtualstain.data.io import write_tiff

    monkeypatch.setenv("VIRTUALSTAIN_CACHE", str(tmp_path / "cache"))
    field = np.random.default_rng(3).random((1, 400, 360)).astype(np.float32) * 50 + 7
    write_tiff(tmp_path / "field.tif", field)
    out = tmp_path / "m.zip"
    assert main(["export", str(trained_run.model_dir), "--format", "bmz", "--out", str(out), "--test-image",
                 str(tmp_path / "field.tif")]) == 0
    with zipfile.ZipFile(out) as z:
        with z.open("test_input.npy") as f:
            test_input = np.load(f)
    assert test_input.ndim == 4 and test_input.shape[:2] == (1, 1)
    assert np.isin(test_input, field).all()  # a crop of the given image, not the synthetic default
