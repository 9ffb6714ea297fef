"""OME-Zarr plates: TIFF → plate → predict → plate equals per-file prediction, napari's reader reads it, reruns resume."""

import shutil

import numpy as np
import pytest

pytest.importorskip("ome_zarr")

from virtualstain.cli import main  # noqa: E402
from virtualstain.data.io import read_image, write_tiff  # noqa: E402
from virtualstain.data.ome_zarr import Position, plate_positions, position_for_file, read_position  # noqa: E402


@pytest.fixture
def tiffs(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name in ("run_B03_s1", "run_B03_s2", "run_C10"):
        paths.append(write_tiff(tmp_path / f"{name}.tif", rng.random((1, 56, 64)).astype(np.float32) * 100,
                                pixel_size_um=0.5, channel_names=["bf"]))
    return paths


def test_a_plate_round_trips_and_predicts_as_the_files_do(trained_run, tiffs, tmp_path, capsys):
    plate, pred = tmp_path / "plate.zarr", tmp_path / "pred.zarr"
    assert main(["convert", *map(str, tiffs), "--out", str(plate)]) == 0
    assert plate_positions(plate) == [Position("B", "3", "0"), Position("B", "3", "1"), Position("C", "10", "0")]
    first = read_position(plate, Position("B", "3", "0"))
    assert first.array.shape == (1, 1, 1, 56, 64) and first.channel_names == ["bf"] and first.pixel_size_um == 0.5
    assert np.array_equal(first.array[0, :, 0], read_image(tiffs[0])[0][None])
    args = ["--backend", "torch", "--precision", "fp32"]
    assert main(["predict", str(trained_run.model_dir), str(plate), "--out", str(pred), *args]) == 0
    assert main(["predict", str(trained_run.model_dir), *map(str, tiffs), "--out", str(tmp_path / "files"), *args]) == 0
    for position, tiff in zip(plate_positions(pred), tiffs):
        got = read_position(pred, position)
        expected, meta = read_image(tmp_path / "files" / tiff.name)
        assert got.channel_names == meta.channel_names
        assert np.abs(got.array[0, :, 0] - expected).max() <= 1e-5 * float(np.ptp(expected))
        assert got.attributes["recipe"]["model_sha256"] == meta.description["model_sha256"]
        assert got.attributes["ood_outside"] == [meta.description.get("ood_outside")]  # the same check per frame
    # napari's OME-Zarr reader (ome-zarr-py's Reader) finds the plate, its wells and the image metadata
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = list(Reader(parse_url(str(pred)))())
    assert type(nodes[0].specs[0]).__name__ == "Plate"
    image_nodes = list(Reader(parse_url(str(pred / "B" / "3" / "0")))())
    assert image_nodes[0].metadata["channel_names"] == got.channel_names
    assert image_nodes[0].data[0].shape == (1, len(got.channel_names), 1, 56, 64)


def test_a_rerun_predicts_only_the_missing_positions(trained_run, tiffs, tmp_path, capsys):
    plate, pred = tmp_path / "plate.zarr", tmp_path / "pred.zarr"
    assert main(["convert", *map(str, tiffs), "--out", str(plate)]) == 0
    cmd = ["predict", str(trained_run.model_dir), str(plate), "--out", str(pred), "--backend", "torch",
           "--precision", "fp32"]
    assert main(cmd) == 0
    # as if killed while writing C/10/0: its temporary group exists, the well does not list it yet
    shutil.move(pred / "C" / "10" / "0", pred / "C" / "10" / ".0.part")
    import zarr

    zarr.open_group(str(pred), mode="r+")["C/10"].attrs["well"] = {"images": [], "version": "0.4"}
    capsys.readouterr()
    assert main(cmd) == 0
    out = capsys.readouterr().out
    assert "C/10/0: 1 frame(s) in " in out and "2 position(s) already predicted" in out
    assert not (pred / "C" / "10" / ".0.part").exists() and len(plate_positions(pred)) == 3


def test_plate_refusals_name_the_fix(trained_run, tiffs, tmp_path, capsys):
    plate = tmp_path / "plate.zarr"
    assert main(["convert", *map(str, tiffs), "--out", str(plate)]) == 0
    assert main(["predict", str(trained_run.model_dir), str(plate), "--out", str(plate)]) == 2
    assert "--out is the input plate; write predictions to a new plate" in capsys.readouterr().err
    assert main(["convert", str(tiffs[0]), "--out", str(tmp_path / "plate.tif")]) == 2
    assert "--out must end in .zarr" in capsys.readouterr().err
    assert position_for_file("img_H12_w1.tif", 0) == Position("H", "12", "0")
    assert position_for_file("field.tif", 4) == Position("A", "5", "0")


def test_two_dask_workers_predict_the_plate_as_one_process_does(trained_run, tiffs, tmp_path):
    pytest.importorskip("distributed")
    from virtualstain.workflows.stain.predict_plate import predict_plate

    plate = tmp_path / "plate.zarr"
    assert main(["convert", *map(str, tiffs), "--out", str(plate)]) == 0
    lines: list[str] = []
    local = predict_plate(trained_run.model_dir, plate, tmp_path / "one.zarr", workers=0, log=lines.append)
    spread = predict_plate(trained_run.model_dir, plate, tmp_path / "two.zarr", workers=2, log=lines.append)
    assert sorted(local) == sorted(spread) == ["B/3/0", "B/3/1", "C/10/0"]
    assert any("on a local dask cluster of 2 worker(s)" in line for line in lines)
    for position in plate_positions(tmp_path / "one.zarr"):
        a = read_position(tmp_path / "one.zarr", position).array
        b = read_position(tmp_path / "two.zarr", position).array
        assert np.abs(a - b).max() <= 1e-5 * float(np.ptp(a))
    assert predict_plate(trained_run.model_dir, plate, tmp_path / "two.zarr", workers=2, log=lines.append) == []


def test_a_position_reads_wherever_a_file_does(trained_run, tiffs, tmp_path):
    from virtualstain.workflows.stain.predict import predict_files

    plate = tmp_path / "exp.zarr"
    assert main(["convert", *map(str, tiffs), "--out", str(plate)]) == 0
    array, meta = read_image(plate / "B" / "3" / "1")
    assert meta.axes == "CYX" and meta.channel_names == ["bf"] and meta.pixel_size_um == 0.5
    assert np.array_equal(array, read_image(tiffs[1])[0][None])
    from_plate = predict_files(trained_run.model_dir, [plate / "B" / "3" / "1"], tmp_path / "a", progress=False)
    from_file = predict_files(trained_run.model_dir, [tiffs[1]], tmp_path / "b", progress=False)
    assert from_plate[0].name == "exp_B3_1.tif"
    assert np.array_equal(read_image(from_plate[0])[0], read_image(from_file[0])[0])


def test_a_manifest_may_point_at_plate_positions(tiffs, tmp_path):
    from virtualstain.data.samples import read_manifest

    plate = tmp_path / "exp.zarr"
    assert main(["convert", *map(str, tiffs), "--out", str(plate)]) == 0
    (tmp_path / "m.csv").write_text("input,target\nexp.zarr/B/3/0,exp.zarr/C/10/0\n")
    (sample,) = read_manifest(tmp_path / "m.csv")
    assert sample.pixel_size_um == 0.5 and sample.input_channel_names == ["bf"]
    assert np.array_equal(sample.input, read_image(tiffs[0])[0][None])
    assert np.array_equal(sample.target, read_image(tiffs[2])[0][None])
