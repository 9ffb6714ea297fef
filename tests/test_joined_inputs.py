"""A manifest's input may join several image files with ';': their channels are stacked in order."""

import numpy as np
import pytest
import yaml

from virtualstain.cli import main
from virtualstain.data.io import read_image, write_tiff
from virtualstain.data.normalization import Normalizer
from virtualstain.data.samples import manifest_sha256, names_from_files, read_manifest
from virtualstain.data.splits import plan_splits
from virtualstain.data.synthetic import make_field
from virtualstain.errors import UserError
from virtualstain.models.bundle import load_bundle


def _manifest(folder, rows, header="input,target", name="m.csv"):
    path = folder / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _fields(folder, n=3, shape=(64, 64), pixel_size_um=0.5):
    """Field i in folder f{i}: actin.tif and nuclei.tif (one channel each), their merge merged.tif, target mito.tif."""
    for i in range(n):
        f, field = make_field(shape, seed=i), folder / f"f{i}"
        field.mkdir()
        second = np.random.default_rng(10 + i).normal(size=(1, *shape))
        write_tiff(field / "actin.tif", f.input, pixel_size_um=pixel_size_um)
        write_tiff(field / "nuclei.tif", second, pixel_size_um=pixel_size_um)
        write_tiff(field / "merged.tif", np.concatenate([f.input, second]), pixel_size_um=pixel_size_um)
        write_tiff(field / "mito.tif", f.target[1:])


SPLITS = ("train", "val", "test")
JOINED_ROWS = [f"f{i}/actin.tif;f{i}/nuclei.tif,f{i}/mito.tif,{s}" for i, s in enumerate(SPLITS)]


def test_two_joined_files_equal_the_premerged_file(tmp_path):
    _fields(tmp_path)
    header = "input,target,split"
    joined = read_manifest(_manifest(tmp_path, JOINED_ROWS, header, "joined.csv"))
    merged = read_manifest(_manifest(tmp_path, [f"f{i}/merged.tif,f{i}/mito.tif,{s}" for i, s in enumerate(SPLITS)],
                                     header, "merged.csv"))
    for j, m in zip(joined, merged):
        assert j.input.dtype == np.float32 and j.input.shape == (2, 64, 64)
        assert np.array_equal(j.input, m.input) and np.array_equal(j.target, m.target)
        assert (j.pixel_size_um, j.split, j.scale, j.acquisition) == (m.pixel_size_um, m.split, m.scale, m.acquisition)
        assert j.input_file_channels == [1, 1] and m.input_file_channels == [2]
    assert joined[0].name == "actin"
    assert joined[0].input_paths == [str(tmp_path / "f0" / "actin.tif"), str(tmp_path / "f0" / "nuclei.tif")]
    plan_j, plan_m = plan_splits(joined), plan_splits(merged)  # the same regions, normalisation and patch area
    assert (plan_j.mode, plan_j.description) == (plan_m.mode, plan_m.description)
    assert [(r.sample, r.split, r.bounds) for r in plan_j.regions] == [(r.sample, r.split, r.bounds) for r in plan_m.regions]
    fits = [Normalizer.fit([r.crop(samples[r.sample])[0] for r in plan.of("train")]).to_dict()
            for plan, samples in ((plan_j, joined), (plan_m, merged))]
    assert fits[0] == fits[1]


def test_input_channels_index_the_stacked_channels(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 32, 32)), rng.normal(size=(1, 32, 32))
    write_tiff(tmp_path / "a.tif", a)
    write_tiff(tmp_path / "b.tif", b)
    write_tiff(tmp_path / "t.tif", rng.normal(size=(1, 32, 32)))
    header = "input,target,input_channels"
    (s,) = read_manifest(_manifest(tmp_path, ['a.tif;b.tif,t.tif,"2,0"'], header))
    assert np.array_equal(s.input, np.stack([b[0], a[0]]).astype(np.float32))
    assert s.input_channels == [2, 0] and s.input_file_channels == [2, 1]
    assert names_from_files(s.input_paths, s.input_file_channels, s.input_channels) == ["b", "a0"]
    (s,) = read_manifest(_manifest(tmp_path, ["a.tif;b.tif,t.tif,"], header), input_channels=[1, 2])  # config default
    assert np.array_equal(s.input, np.stack([a[1], b[0]]).astype(np.float32))
    with pytest.raises(UserError) as err:
        read_manifest(_manifest(tmp_path, ["a.tif;b.tif,t.tif,3"], header))
    assert str(err.value) == (f"{tmp_path / 'a.tif'};{tmp_path / 'b.tif'}: channels [3] requested but the joined files "
                              "have 3 channel(s)/plane(s) (indices 0..2); fix input_channels / --input-channels")


def test_channel_names_stored_in_every_joined_file_are_stacked(tmp_path):
    rng = np.random.default_rng(1)
    write_tiff(tmp_path / "a.tif", rng.normal(size=(1, 16, 16)), channel_names=["actin"])
    write_tiff(tmp_path / "b.tif", rng.normal(size=(1, 16, 16)), channel_names=["dna"])
    write_tiff(tmp_path / "c.tif", rng.normal(size=(1, 16, 16)))
    write_tiff(tmp_path / "t.tif", rng.normal(size=(1, 16, 16)))
    (s,) = read_manifest(_manifest(tmp_path, ["a.tif;b.tif,t.tif"]))
    assert s.input_channel_names == ["actin", "dna"]
    (s,) = read_manifest(_manifest(tmp_path, ["a.tif;c.tif,t.tif"]))
    assert s.input_channel_names == []


def test_joined_files_of_different_shapes_are_refused_naming_them(tmp_path):
    rng = np.random.default_rng(2)
    write_tiff(tmp_path / "a.tif", rng.normal(size=(1, 64, 64)))
    write_tiff(tmp_path / "b.tif", rng.normal(size=(1, 32, 64)))
    write_tiff(tmp_path / "t.tif", rng.normal(size=(1, 64, 64)))
    with pytest.raises(UserError) as err:
        read_manifest(_manifest(tmp_path, ["a.tif;b.tif,t.tif"]))
    assert str(err.value) == (f"input files differ in shape: {tmp_path / 'a.tif'} (64, 64), {tmp_path / 'b.tif'} (32, 64); "
                              "all files joined in a row's input must be co-registered images of one size — crop or "
                              "resample them to one shape")


def test_joined_files_recording_different_pixel_sizes_are_refused(tmp_path):
    rng = np.random.default_rng(3)
    write_tiff(tmp_path / "a.tif", rng.normal(size=(1, 16, 16)), pixel_size_um=0.5)
    write_tiff(tmp_path / "b.tif", rng.normal(size=(1, 16, 16)), pixel_size_um=0.65)
    write_tiff(tmp_path / "c.tif", rng.normal(size=(1, 16, 16)))
    write_tiff(tmp_path / "t.tif", rng.normal(size=(1, 16, 16)))
    with pytest.raises(UserError, match=r"input files record different pixel sizes: .*a.tif 0.5 µm, .*b.tif 0.65 µm; "
                                        r"the files joined in a row's input must be co-registered"):
        read_manifest(_manifest(tmp_path, ["a.tif;b.tif,t.tif"]))
    (s,) = read_manifest(_manifest(tmp_path, ["c.tif;a.tif,t.tif"]))  # only one records a pixel size: it is used
    assert s.pixel_size_um == pytest.approx(0.5)


def test_a_missing_second_file_is_named(tmp_path):
    rng = np.random.default_rng(4)
    write_tiff(tmp_path / "a.tif", rng.normal(size=(1, 16, 16)))
    write_tiff(tmp_path / "t.tif", rng.normal(size=(1, 16, 16)))
    with pytest.raises(UserError, match=r"gone\.tif: file not found"):
        read_manifest(_manifest(tmp_path, ["a.tif; gone.tif,t.tif"]))


def test_the_same_joined_input_twice_is_refused(tmp_path):
    _fields(tmp_path, n=1)
    with pytest.raises(UserError, match=r"lines 2 and 3 both use the input .*actin.tif;.*nuclei.tif; the same image"):
        read_manifest(_manifest(tmp_path, ["f0/actin.tif;f0/nuclei.tif,f0/mito.tif",
                                           "./f0/actin.tif;f0/../f0/nuclei.tif,f0/mito.tif"]))
    assert len(read_manifest(_manifest(tmp_path, ["f0/actin.tif;f0/nuclei.tif,f0/mito.tif",  # another order: another input
                                                  "f0/nuclei.tif;f0/actin.tif,f0/mito.tif"]))) == 2


def test_the_data_hash_covers_every_joined_file(tmp_path):
    _fields(tmp_path, n=1)
    for channels in ("", "0"):  # all channels, and only the first file's: the second file counts all the same
        manifest = _manifest(tmp_path, [f"f0/actin.tif;f0/nuclei.tif,f0/mito.tif,{channels}"], "input,target,input_channels")
        before = manifest_sha256(manifest, read_manifest(manifest))
        assert manifest_sha256(manifest, read_manifest(manifest)) == before
        write_tiff(tmp_path / "f0" / "nuclei.tif", np.random.default_rng(len(channels)).normal(size=(1, 64, 64)))
        assert manifest_sha256(manifest, read_manifest(manifest)) != before


def test_train_on_a_joined_input_manifest(tmp_path):
    _fields(tmp_path)
    manifest = _manifest(tmp_path, JOINED_ROWS, "input,target,split")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"architecture": "unet", "depth": 2, "base_width": 4},
        "data": {"patch_size": [32, 32]},
        "training": {"max_epochs": 1, "patches_per_epoch": 16, "batch_size": 4, "progress_bar": False,
                     "early_stopping_patience": None, "warmup_fraction": 0.0},
    }))
    assert main(["train", str(manifest), "--out", str(tmp_path / "run"), "--config", str(config)]) == 0
    bundle = load_bundle(tmp_path / "run" / "model")
    assert bundle.config.in_channels == 2 and len(bundle.input_normalizer.offset) == 2
    assert bundle.input_channel_names == ["actin", "nuclei"] and bundle.output_channel_names == ["mito"]
    # predict takes the same joined files: the prediction equals that of the pre-merged file
    joined = f"{tmp_path / 'f2' / 'actin.tif'};{tmp_path / 'f2' / 'nuclei.tif'}"
    assert main(["predict", str(tmp_path / "run" / "model"), joined, "--out", str(tmp_path / "pj")]) == 0
    assert main(["predict", str(tmp_path / "run" / "model"), str(tmp_path / "f2" / "merged.tif"),
                 "--input-channels", "0,1", "--out", str(tmp_path / "pm")]) == 0
    a, _ = read_image(tmp_path / "pj" / "actin.tif")
    b, _ = read_image(tmp_path / "pm" / "merged.tif")
    np.testing.assert_array_equal(a, b)
    assert main(["predict", str(tmp_path / "run" / "model"), f"{tmp_path / 'f2' / 'actin.tif'};{tmp_path / 'no.tif'}",
                 "--out", str(tmp_path / "px")]) == 2
