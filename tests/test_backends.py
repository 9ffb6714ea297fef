"""Inference backends: every engine agrees with fp32 torch, tiles exactly, and ``auto`` chooses by measurement."""

import json

import numpy as np
import pytest
import tifffile
import torch

from virtualstain.errors import UserError
from virtualstain.inference import backend_choice
from virtualstain.inference.backend_choice import choose_engine, last_choice, probe_tile
from virtualstain.inference.engines import EngineSpec, build_engine, candidate_specs
from virtualstain.inference.options import PredictOptions
from virtualstain.inference.predict import predict
from virtualstain.models.bundle import ModelBundle, load_bundle
from virtualstain.models.registry import build, make_config

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test measures into its own cache folder (never the user's ~/.cache)."""
    monkeypatch.setenv("VIRTUALSTAIN_CACHE", str(tmp_path / "cache"))


def _bundle(seed: int = 0) -> ModelBundle:
    from virtualstain.data.normalization import Normalizer

    torch.manual_seed(seed)
    net = build("pics", make_config("pics", 1, 1, depth=3, base_width=8))
    for m in net.modules():  # non-trivial running statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return ModelBundle(net.eval(), "pics", Normalizer("zscore", [0.0], [1.0]), Normalizer("zscore", [5.0], [2.0]),
                       ["in"], ["out"])


def _image(shape=(1, 200, 168)) -> np.ndarray:
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(rng.normal(size=shape), (0, 3, 3)).astype(np.float32) * 5


def _specs():
    return candidate_specs(CPU)


@pytest.mark.filterwarnings("ignore:tiles of")  # small tiles on purpose: many seams
@pytest.mark.parametrize("spec", _specs(), ids=str)
def test_every_engine_tiles_exactly_and_stays_near_fp32_torch(spec):
    """tiled == whole ≤ 1e-4 of the range in fp32 and ≤ 2e-3 in reduced precision, on every installed backend."""
    bundle, image = _bundle(), _image()
    reference = predict(bundle, image, tile_size=0)
    whole = predict(bundle, image, tile_size=0, backend=spec.backend, precision=spec.precision)
    tiled = predict(bundle, image, tile_size=48, backend=spec.backend, precision=spec.precision)
    span = float(reference.max() - reference.min())
    tolerance = 1e-4 if spec.precision == "fp32" else 2e-3
    assert np.abs(tiled - whole).max() <= tolerance * span
    assert np.abs(whole - reference).max() <= (1e-4 if spec.precision == "fp32" else 2e-2) * span


def test_auto_takes_the_fastest_engine_within_the_deviation_and_caches_it(tmp_path, monkeypatch):
    bundle, image = _bundle(), _image()
    padded = bundle.input_normalizer(image)[:, :192, :168]
    engine, choice = choose_engine(bundle, padded, CPU)
    measured = {c.spec: c for c in choice.candidates}
    assert set(measured) == set(_specs()) and not choice.cached
    passing = [c for c in choice.candidates if c.seconds is not None and c.deviation <= 1e-3]
    assert choice.spec == min(passing, key=lambda c: c.seconds).spec == engine.spec
    assert all(c.passed == (c.deviation <= 1e-3) for c in choice.candidates if c.seconds is not None)
    lines = choice.explain()
    assert lines[0] == choice.summary() and len(lines) == 2 + len(choice.candidates)
    assert sum("chosen" in line for line in lines) == 1
    # a second process (a fresh bundle object) reads the cached choice instead of measuring again
    monkeypatch.setattr(backend_choice, "_timed", lambda *a: pytest.fail("measured again despite the cache"))
    again, cached = choose_engine(_bundle(), padded, CPU)
    assert cached.cached and cached.spec == choice.spec and "(cached)" in cached.explain()[1]
    # another model is measured anew
    monkeypatch.undo()
    monkeypatch.setenv("VIRTUALSTAIN_CACHE", str(tmp_path / "cache"))
    assert not choose_engine(_bundle(seed=1), padded, CPU)[1].cached


def test_auto_keeps_the_reference_when_nothing_else_is_exact():
    """With no deviation allowed, only fp32 torch itself (deviation 0) passes."""
    bundle = _bundle()
    engine, choice = choose_engine(bundle, bundle.input_normalizer(_image())[:, :192, :168], CPU, max_deviation=0.0)
    assert choice.spec == EngineSpec("torch", "fp32", "cpu") == engine.spec
    assert "reference" in choice.reason or "too far" in choice.reason


def test_probe_is_the_central_window_on_the_size_multiple_grid():
    array = np.arange(1 * 1000 * 40, dtype=np.float32).reshape(1, 1000, 40)
    probe = probe_tile(array, (8, 8))
    assert probe.shape == (1, 512, 40)
    assert probe[0, 0, 0] == array[0, 240, 0]  # (1000 − 512) / 2 = 244, down to the grid: 240


def test_impossible_engines_are_refused_with_the_fix():
    bundle = _bundle()
    with pytest.raises(UserError, match=r"--precision fp16 needs a CUDA GPU with --backend torch"):
        build_engine(bundle, EngineSpec("torch", "fp16", "cpu"))
    with pytest.raises(UserError, match=r"--backend onnxruntime --precision bf16: onnxruntime runs this network in "
                                        r"fp32 on the CPU"):
        build_engine(bundle, EngineSpec("onnxruntime", "bf16", "cpu"))
    with pytest.raises(UserError, match=r"--backend 'tensorflow' must be one of \['auto', 'torch', 'onnxruntime', "
                                        r"'openvino'\]"):
        PredictOptions(backend="tensorflow")
    with pytest.raises(UserError, match=r"--max-deviation 2 must be a fraction of the output range in \[0, 1\)"):
        PredictOptions(max_deviation=2)


def test_a_backend_that_is_not_installed_names_its_extra(monkeypatch):
    from virtualstain.inference import engines

    monkeypatch.setattr(engines, "installed", lambda backend: backend == "torch")
    with pytest.raises(UserError, match=r'the openvino package is not installed; pip install "virtualstain\[openvino\]"'):
        build_engine(_bundle(), EngineSpec("openvino", "fp32", "cpu"))
    assert candidate_specs(CPU)[0] == EngineSpec("torch", "fp32", "cpu")
    assert all(s.backend == "torch" for s in candidate_specs(CPU))


def test_cli_predict_explains_its_choice_and_records_the_engine(trained_run, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from virtualstain.cli import cli
    from virtualstain.data.io import read_image

    image = tmp_path / "field.tif"
    tifffile.imwrite(image, _image((1, 64, 72))[0])
    result = CliRunner().invoke(cli, ["predict", str(trained_run.model_dir), str(image), "--out", str(tmp_path / "out"),
                                      "--explain"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("backend: "))
    assert "measured on a " in lines[first + 1] and "allowed ≤ 0.001" in lines[first + 1]
    chosen = [line for line in lines if line.rstrip().endswith("chosen")]
    assert len(chosen) == 1
    _, meta = read_image(tmp_path / "out" / "field.tif")
    assert meta.description["engine"] in chosen[0]
    bundle = load_bundle(trained_run.model_dir)
    predict(bundle, tifffile.imread(image)[None], backend="torch", precision="fp32")
    assert last_choice(bundle).reason == "as asked (--backend torch --precision fp32)"


def test_exported_onnx_reproduces_the_bundle(trained_run, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from click.testing import CliRunner

    from virtualstain.cli import cli
    from virtualstain.data.normalization import Normalizer

    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(cli, ["export", str(trained_run.model_dir), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(trained_run.model_dir)
    image = _image((1, 96, 136))
    expected = predict(bundle, image, tile_size=0, border="none")  # the network on the image as it is
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["virtualstain"])["model"]
    norm_in = Normalizer.from_dict(meta["normalization"]["input"])
    norm_out = Normalizer.from_dict(meta["normalization"]["target"])
    (y,) = session.run(None, {"input": norm_in(image)[None]})
    got = norm_out.inverse(y[0])
    assert np.abs(got - expected).max() <= 1e-4 * float(expected.max() - expected.min())
    # dynamic size: another shape (still a multiple of the size multiple) runs too
    outputs = len(bundle.output_channel_names)
    assert session.run(None, {"input": np.zeros((2, 1, 64, 32), np.float32)})[0].shape == (2, outputs, 64, 32)
    from virtualstain.cli import main

    assert main(["export", str(trained_run.model_dir), "--format", "onnx", "--out", str(tmp_path / "m.zip")]) == 2
    assert "--out must end in .onnx (an ONNX graph is written)" in capsys.readouterr().err
