"""Whole cells from a cytoplasm or membrane stain, seeded by the nuclei: analytic tilings, errors, CLI, real data."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.draw import disk
from skimage.filters import sobel

from virtualstain.analysis import CellSegmentation, segment_cells, segment_nuclei, segmentation_lengths, whole_cells
from virtualstain.cli import main
from virtualstain.data.io import write_labels


def _tiling(seed: int = 0, shape=(240, 240), n: int = 4, step: int = 50, radius: float = 32.0):
    """An n×n Voronoi tiling of touching cells around jittered seeds, cut off ``radius`` px from the seeds (inner
    junctions filled), with nucleus discs (r = 7 px) at the seeds. Returns (cells, nuclei, distance to seed)."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, np.int32)
    offset = (shape[0] - (n - 1) * step) // 2
    points = [(offset + i * step + int(rng.integers(-8, 9)), offset + j * step + int(rng.integers(-8, 9)))
              for i in range(n) for j in range(n)]
    nuclei = np.zeros(shape, np.int32)
    for k, (y, x) in enumerate(points, 1):
        seeds[y, x] = k
        nuclei[disk((y, x), 7, shape=shape)] = k
    distance, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    cells = np.where(ndi.binary_fill_holes(distance <= radius), seeds[iy, ix], 0).astype(np.int32)
    return cells, nuclei, distance


def _gap(cells: np.ndarray) -> np.ndarray:
    """Cell pixels next to another cell (3×3): a 2-px line along every junction."""
    other = cells.max() + 1
    high = ndi.maximum_filter(cells, 3)
    low = ndi.minimum_filter(np.where(cells > 0, cells, other), 3)
    return (cells > 0) & ((high != cells) | ((low != cells) & (low != other)))


def _cytoplasm_stain(cells, nuclei, distance, gap_level: float, seed: int = 1) -> np.ndarray:
    """Bright cell bodies fading from the nucleus (1 → 0.35), dimmer nuclei (× 0.6), junctions at ``gap_level``,
    background 0, noise σ 0.03."""
    body = 0.35 + 0.65 * np.exp(-distance / 12)
    image = np.where(cells > 0, body, 0.0)
    image[nuclei > 0] *= 0.6
    image[_gap(cells)] = gap_level
    return image + np.random.default_rng(seed).normal(0, 0.03, cells.shape)


def _membrane_stain(cells, seed: int = 2) -> np.ndarray:
    """Bright 2-px outlines (1.0) around every cell, dim insides (0.15), background 0, noise σ 0.03."""
    edge = (ndi.maximum_filter(cells, 3) != ndi.minimum_filter(cells, 3))
    image = np.where(cells > 0, 0.15, 0.0)
    image[edge] = 1.0
    return image + np.random.default_rng(seed).normal(0, 0.03, cells.shape)


def _ious(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.array([np.sum((found == k) & (truth == k)) / np.sum((found == k) | (truth == k))
                     for k in range(1, truth.max() + 1)])


def _check_layout(seg: CellSegmentation, nuclei: np.ndarray) -> None:
    """Same ids as the nuclei, cells ⊇ nuclei, cytoplasm ∩ nuclei = ∅, cytoplasm = cells minus nuclei."""
    assert np.array_equal(seg.cells[nuclei > 0], nuclei[nuclei > 0])
    assert set(np.unique(seg.cells)) == set(np.unique(nuclei))
    assert not np.any((seg.cytoplasm > 0) & (nuclei > 0))
    assert np.array_equal(seg.cytoplasm, np.where(nuclei > 0, 0, seg.cells))
    assert seg.cells.dtype == np.int32 and seg.cytoplasm.dtype == np.int32


@pytest.mark.parametrize("gap_level", [0.12, 0.3])  # a dark crack (below threshold) or a dim one (inside the mask)
@pytest.mark.parametrize("seed", [0, 1])
def test_cytoplasm_cells_match_the_tiling(seed, gap_level):
    cells, nuclei, distance = _tiling(seed)
    seg = segment_cells(_cytoplasm_stain(cells, nuclei, distance, gap_level), nuclei, "cytoplasm")
    _check_layout(seg, nuclei)
    assert seg.count == 16
    assert _ious(seg.cells, cells).min() >= 0.9


@pytest.mark.parametrize("seed", [0, 1])
def test_membrane_cells_match_the_tiling(seed):
    cells, nuclei, _ = _tiling(seed)
    seg = segment_cells(_membrane_stain(cells), nuclei, "membrane")
    _check_layout(seg, nuclei)
    assert _ious(seg.cells, cells).min() >= 0.9


def test_the_gradient_elevation_loses_cells_the_inverted_intensity_keeps(monkeypatch):
    """Why the cytoplasm elevation is the inverted intensity: the gradient ring around each nucleus walls its
    marker in, and the first flood to cross its ring takes the neighbours (worst IoU 0.05 against 0.93)."""
    cells, nuclei, distance = _tiling(0)
    stain = _cytoplasm_stain(cells, nuclei, distance, 0.3)
    intensity = _ious(segment_cells(stain, nuclei).cells, cells).min()
    monkeypatch.setattr(whole_cells, "cytoplasm_elevation", sobel)
    gradient = _ious(segment_cells(stain, nuclei).cells, cells).min()
    assert intensity >= 0.9 > 0.5 > gradient


def test_a_nucleus_without_stain_is_its_own_cell_and_a_cell_without_nucleus_stays_background():
    cells, nuclei, distance = _tiling(0, shape=(300, 300))
    stain = _cytoplasm_stain(cells, nuclei, distance, 0.3)
    lonely = np.zeros_like(nuclei)
    lonely[disk((285, 285), 6, shape=nuclei.shape)] = 40  # ids need not be consecutive
    orphan = disk((285, 30), 10, shape=nuclei.shape)
    stain[orphan] += 1.0  # stained, but no nucleus reaches it
    seg = segment_cells(stain, nuclei + lonely, "cytoplasm")
    _check_layout(seg, nuclei + lonely)
    assert np.array_equal(seg.cells == 40, lonely == 40)
    assert not np.any(seg.cytoplasm == 40)
    assert not np.any(seg.cells[orphan])
    assert seg.areas_px()[40] == (int(np.sum(lonely == 40)),) * 2


def test_max_distance_limits_how_far_a_cell_reaches():
    cells, nuclei, distance = _tiling(0)
    seg = segment_cells(_cytoplasm_stain(cells, nuclei, distance, 0.3), nuclei, pixel_size_um=0.5,
                        max_distance_um=2.5)
    _check_layout(seg, nuclei)
    reach = ndi.distance_transform_edt(nuclei == 0)
    assert reach[seg.cells > 0].max() <= 5.0 < reach[cells > 0].max()


def test_constant_stain_gives_the_nuclei_and_no_nuclei_give_no_cells():
    _, nuclei, _ = _tiling(0)
    seg = segment_cells(np.full(nuclei.shape, 7.0), nuclei, "membrane")
    assert np.array_equal(seg.cells, nuclei) and not seg.cytoplasm.any()
    cells, _, distance = _tiling(0)
    empty = segment_cells(_cytoplasm_stain(cells, nuclei * 0, distance, 0.3), nuclei * 0)
    assert not empty.cells.any() and empty.count == 0


def test_bad_arguments_are_refused_with_the_fix():
    stain = np.zeros((10, 10))
    with pytest.raises(ValueError) as err:
        segment_cells(stain, np.zeros((10, 12), np.int32))
    assert str(err.value) == ("segment_cells: nuclei shape (10, 12) differs from stain shape (10, 10); "
                              "give the nucleus labels of the same field")
    with pytest.raises(ValueError, match=r"^segment_cells expects integer nucleus labels, got float64; label them first"):
        segment_cells(stain, np.zeros((10, 10)))
    with pytest.raises(ValueError, match=r"^segment_cells expects a 2D stain image \(Y, X\), got shape \(2, 10, 10\)$"):
        segment_cells(np.zeros((2, 10, 10)), np.zeros((2, 10, 10), np.int32))
    with pytest.raises(ValueError, match="kind 'nucleus'; use 'cytoplasm' or 'membrane'"):
        segment_cells(stain, np.zeros((10, 10), np.int32), "nucleus")  # type: ignore[arg-type]


def _write_field(tmp_path, shape_nuclei=None):
    cells, nuclei, distance = _tiling(0)
    stain = _cytoplasm_stain(cells, nuclei, distance, 0.3)
    tifffile.imwrite(tmp_path / "er.tif", stain.astype(np.float32))
    dapi = np.where(nuclei > 0, 1000, 100) + np.random.default_rng(3).normal(0, 20, nuclei.shape)
    tifffile.imwrite(tmp_path / "dapi.tif", dapi.astype(np.uint16)[:shape_nuclei])  # a raw uint16 stain, not labels
    write_labels(tmp_path / "labels.tif", nuclei)
    return cells, nuclei


@pytest.mark.parametrize("nuclei_file", ["dapi.tif", "labels.tif"])
def test_cli_writes_cells_nuclei_and_cytoplasm(tmp_path, capsys, nuclei_file):
    cells, nuclei = _write_field(tmp_path)
    out = tmp_path / "out"
    assert main(["segment", "--cells", str(tmp_path / "er.tif"), "--nuclei", str(tmp_path / nuclei_file),
                 "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{out / 'er_cells.tif'}\t16 cells, 16 with cytoplasm\t(nuclei: ")
    found = {part: tifffile.imread(out / f"er_{part}.tif") for part in ("cells", "nuclei", "cytoplasm")}
    assert found["nuclei"].max() == 16
    assert np.array_equal(found["cells"][found["nuclei"] > 0], found["nuclei"][found["nuclei"] > 0])
    assert not np.any((found["cytoplasm"] > 0) & (found["nuclei"] > 0))
    if nuclei_file == "labels.tif":
        assert np.array_equal(found["nuclei"], nuclei) and "labels of labels.tif" in line
        assert _ious(found["cells"].astype(np.int32), cells).min() >= 0.9


def test_cli_refuses_mismatched_shapes_and_half_given_modes(tmp_path, capsys):
    _write_field(tmp_path, shape_nuclei=200)
    er, dapi = str(tmp_path / "er.tif"), str(tmp_path / "dapi.tif")
    assert main(["segment", "--cells", er, "--nuclei", dapi, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {dapi}: --nuclei is 200×240 px but --cells {er} is 240×240; give the nuclei of the same field at "
        "the same size")
    assert not (tmp_path / "out").exists()
    assert main(["segment", "--nuclei", dapi, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {dapi}: --nuclei needs --cells STAIN.tif (the cytoplasm or membrane stain of the same field); "
        "to segment nuclei only, give the image as IMAGES")
    assert main(["segment", "--cells", er, "--out", str(tmp_path / "out")]) == 2
    assert "--cells needs --nuclei NUCLEI.tif" in capsys.readouterr().err
    missing = str(tmp_path / "nope.tif")
    assert main(["segment", "--cells", er, "--nuclei", missing, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {missing}: file not found")
    (tmp_path / "labels.tif").rename(tmp_path / "er_nuclei.tif")  # the name the nuclei output would take
    labels = str(tmp_path / "er_nuclei.tif")
    assert main(["segment", "--cells", er, "--nuclei", labels, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {labels}: --out would write over this input; choose another --out folder"
    assert main(["segment", "--out", str(tmp_path / "out")]) == 2  # no IMAGES and no --cells: click's own message
    assert "Missing argument 'IMAGES...'" in capsys.readouterr().err


def test_real_cell_painting_cells_from_the_er_channel(data_dir, capsys):
    """BBBC022 Cell Painting crop (DNA, ER, RNA; no cell ground truth): nuclei from DNA, cells from ER."""
    path = data_dir / "bbbc022_cellpainting" / "crop_3ch.tif"
    if not path.exists():
        pytest.skip(f"{path} not found")
    image = tifffile.imread(path).astype(np.float64)
    dna, er = image[0], image[1]
    lengths = segmentation_lengths(dna, None)
    nuclei = segment_nuclei(dna, **lengths.kwargs())
    seg = segment_cells(er, nuclei, "cytoplasm", smooth_um=lengths.smooth_um)
    _check_layout(seg, nuclei)
    areas = seg.areas_px()
    ratio = float(np.median([c / n for c, n in areas.values()]))
    with_cytoplasm = sum(c > n for c, n in areas.values()) / len(areas)
    pieces = [ndi.label(seg.cells == k)[1] for k in areas]
    smooth = ndi.gaussian_filter(er, lengths.smooth_um)
    foreground = smooth > whole_cells.default_threshold(smooth, "cytoplasm")
    diameter = 2 * np.sqrt(np.median([n for _, n in areas.values()]) / np.pi)
    near = foreground & (ndi.distance_transform_edt(nuclei == 0) <= 2 * diameter)
    assigned = float(np.mean(seg.cells[near] > 0))
    with capsys.disabled():
        print(f"\nBBBC022 ER: {seg.count} nuclei/cells, {with_cytoplasm:.0%} with cytoplasm, median cell/nucleus area "
              f"{ratio:.2f}, foreground within 2 nucleus diameters ({diameter:.0f} px) assigned {assigned:.1%}, "
              f"foreground assigned {np.mean(seg.cells[foreground] > 0):.1%}")
    assert seg.count >= 20
    assert with_cytoplasm >= 0.9
    assert 1.5 <= ratio <= 20
    assert max(pieces) == 1  # every cell is one piece around its own nucleus
    assert assigned > 0.8
