"""Nucleus tracking (laptrack), the CTC files and measures (py-ctcmetrics), and ``virtualstain track``.

Synthetic cases have known answers: discs that move, divide or vanish for a frame; the real-data test tracks
the ground-truth labels of the CTC Fluo-N2DH-SIM+ sequence (``ctc_sim_nuclei_track``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile

from virtualstain.analysis.tracking import (
    TrackRecord,
    Tracks,
    link_scores,
    match_frame,
    track_labels,
    track_links,
)
from virtualstain.cli import main
from virtualstain.data.ctc import ctc_problems, mask_name, read_ctc_tracks, read_track_file, write_ctc_result
from virtualstain.errors import UserError

SHAPE = (80, 120)


@pytest.fixture
def laptrack():
    return pytest.importorskip("laptrack")


@pytest.fixture
def ctc_metrics():
    return pytest.importorskip("ctc_metrics")


def _frame(objects: dict[int, tuple[float, float]], radius: float = 8.0, shape=SHAPE) -> np.ndarray:
    """Discs of ``radius`` px at ``(y, x)`` centres, each painted with its label."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.int32)
    for label, (y, x) in objects.items():
        out[(yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2] = label
    return out


@dataclass
class _Truth:
    labels: np.ndarray
    records: list[TrackRecord]


def _labels_of(tracks: Tracks, t: int, yx: tuple[float, float]) -> int:
    return int(tracks.labels[t][int(round(yx[0])), int(round(yx[1]))])


def test_moving_discs_are_linked_with_the_known_links(laptrack):
    # three discs moving 4 px per frame; each frame numbers them differently (labels carry no identity)
    paths = {"a": lambda t: (20, 15 + 4 * t), "b": lambda t: (60, 100 - 4 * t), "c": lambda t: (40 + 3 * t, 60)}
    rng = np.random.default_rng(0)
    frames, truth = [], []
    for t in range(6):
        ids = rng.permutation([3, 7, 12])
        frames.append(_frame({int(i): paths[k](t) for i, k in zip(ids, paths)}))
        truth.append(_frame({n + 1: paths[k](t) for n, k in enumerate(paths)}))
    tracks = track_labels(frames)
    assert tracks.n_frames == 6 and tracks.n_tracks == 3
    assert sorted(tracks.records, key=lambda r: r.label) == [TrackRecord(n, 0, 5, 0) for n in (1, 2, 3)]
    for k in paths:  # one label per disc, constant over time
        assert len({_labels_of(tracks, t, paths[k](t)) for t in range(6)}) == 1
    assert set(np.unique(tracks.labels)) == {0, 1, 2, 3}
    reference = _Truth(np.stack(truth), [TrackRecord(n, 0, 5, 0) for n in (1, 2, 3)])
    scores = link_scores(tracks, reference)
    assert (scores.n_predicted, scores.n_reference, scores.n_correct, scores.f1) == (15, 15, 15, 1.0)
    assert tracks.divisions == ()


def test_default_distance_is_one_median_diameter_and_farther_jumps_start_new_tracks(laptrack):
    frames = [_frame({1: (40, 20)}, radius=10), _frame({1: (40, 26)}, radius=10), _frame({1: (40, 56)}, radius=10)]
    tracks = track_labels(frames)
    diameter = 2 * np.sqrt((frames[0] > 0).sum() / np.pi)
    assert tracks.max_distance_px == pytest.approx(diameter)  # ≈ 20 px: a 6 px step links, a 30 px jump does not
    assert [(r.start, r.end, r.parent) for r in tracks.records] == [(0, 1, 0), (2, 2, 0)]
    assert track_labels(frames, max_distance_px=35).n_tracks == 1


def test_a_division_gives_two_daughter_tracks_whose_parent_is_the_mother(laptrack):
    mother, daughters = {1: (40, 60)}, {5: (40, 49), 9: (40, 71)}
    other = {2: (15, 15)}
    frames = [_frame({**mother, **other}) for _ in range(3)] + [_frame({**daughters, **other}) for _ in range(3)]
    tracks = track_labels(frames)
    m = _labels_of(tracks, 0, (40, 60))
    d1, d2 = _labels_of(tracks, 3, (40, 49)), _labels_of(tracks, 3, (40, 71))
    records = {r.label: r for r in tracks.records}
    assert records[m] == TrackRecord(m, 0, 2, 0)
    assert {records[d1], records[d2]} == {TrackRecord(d1, 3, 5, m), TrackRecord(d2, 3, 5, m)}
    assert tracks.divisions == (m,)
    assert {(2, m, 3, d1), (2, m, 3, d2)} <= track_links(tracks)
    assert tracks.n_tracks == 4 and ctc_problems(tracks.labels, tracks.records) == []
    # without divisions the mother goes on as one daughter and the other daughter starts afresh
    plain = track_labels(frames, divisions=False)
    assert plain.divisions == () and sorted(r.parent for r in plain.records) == [0, 0, 0]


def test_a_one_frame_gap_is_closed_by_a_parent_link_as_ctc_requires(laptrack):
    # the disc vanishes in frame 3: CTC continues it as a new track whose only parent is the track before the gap
    frames = [_frame({1: (40, 20 + 3 * t), 2: (15, 100)} if t != 3 else {2: (15, 100)}) for t in range(7)]
    tracks = track_labels(frames, gap_frames=1)
    before, after = _labels_of(tracks, 2, (40, 26)), _labels_of(tracks, 4, (40, 32))
    records = {r.label: r for r in tracks.records}
    assert records[before] == TrackRecord(before, 0, 2, 0)
    assert records[after] == TrackRecord(after, 4, 6, before)
    assert (2, before, 4, after) in track_links(tracks)
    assert tracks.divisions == ()  # one child: a gap, not a division
    assert ctc_problems(tracks.labels, tracks.records) == []
    unlinked = track_labels(frames, gap_frames=0)
    assert {r.parent for r in unlinked.records} == {0} and unlinked.n_tracks == 3


def test_empty_frames_and_bad_input(laptrack):
    empty = track_labels([np.zeros(SHAPE, np.uint16)] * 3)
    assert empty.n_tracks == 0 and empty.labels.shape == (3, *SHAPE)
    some = track_labels([np.zeros(SHAPE, np.uint16), _frame({4: (40, 40)}), _frame({4: (40, 42)})])
    assert [(r.start, r.end) for r in some.records] == [(1, 2)]
    with pytest.raises(ValueError, match="integers"):
        track_labels([np.zeros(SHAPE, np.float32)])
    with pytest.raises(ValueError, match="differs"):
        track_labels([np.zeros(SHAPE, np.int32), np.zeros((4, 4), np.int32)])
    with pytest.raises(ValueError, match="max_distance_px"):
        track_labels([_frame({1: (40, 40)})], max_distance_px=-1)


def test_missing_laptrack_is_a_user_error_naming_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "laptrack", None)  # import laptrack → ImportError
    with pytest.raises(UserError, match=r'pip install "virtualstain\[track\]"'):
        track_labels([_frame({1: (40, 40)}), _frame({1: (40, 41)})])


def test_link_scores_count_a_swapped_identity():
    a = lambda t: (20, 10 + 10 * t)  # noqa: E731
    b = lambda t: (60, 10 + 10 * t)  # noqa: E731
    truth = _Truth(np.stack([_frame({1: a(t), 2: b(t)}) for t in range(4)]), [TrackRecord(1, 0, 3), TrackRecord(2, 0, 3)])
    # prediction: the two tracks swap after frame 1 (2 of 6 links wrong)
    swapped = [_frame({1: a(t), 2: b(t)}) if t < 2 else _frame({2: a(t), 1: b(t)}) for t in range(4)]
    pred = _Truth(np.stack(swapped), [TrackRecord(1, 0, 3), TrackRecord(2, 0, 3)])
    s = link_scores(pred, truth)
    assert (s.n_predicted, s.n_reference, s.n_correct) == (6, 6, 4)
    assert s.precision == s.recall == s.f1 == pytest.approx(4 / 6)
    assert match_frame(truth.labels[0], truth.labels[0]) == {1: 1, 2: 2}
    shifted = _frame({1: (20, 14)})  # IoU of discs 4 px apart (r = 8) ≈ 0.53; 7 px apart ≈ 0.31
    assert match_frame(shifted, truth.labels[0]) == {1: 1}
    assert match_frame(_frame({1: (20, 17)}), truth.labels[0]) == {}
    marker = _frame({7: (20, 10)}, radius=3)  # a small CTC marker inside the object: only the CTC rule matches
    assert match_frame(truth.labels[0], marker) == {} and match_frame(truth.labels[0], marker, "ctc") == {1: 7}


def _example_tracks() -> _Truth:
    frames = np.stack([_frame({1: (40, 60), 2: (15, 15)})] * 2 + [_frame({3: (40, 49), 4: (40, 71), 2: (15, 15)})] * 2)
    return _Truth(frames, [TrackRecord(1, 0, 1, 0), TrackRecord(2, 0, 3, 0), TrackRecord(3, 2, 3, 1),
                           TrackRecord(4, 2, 3, 1)])


def test_ctc_files_round_trip(tmp_path):
    tracks = _example_tracks()
    written = write_ctc_result(tracks, tmp_path / "01_RES")
    assert [p.name for p in written] == ["mask000.tif", "mask001.tif", "mask002.tif", "mask003.tif", "res_track.txt"]
    assert (tmp_path / "01_RES" / "res_track.txt").read_text() == "1 0 1 0\n2 0 3 0\n3 2 3 1\n4 2 3 1\n"
    assert tifffile.imread(written[0]).dtype == np.uint16
    back = read_ctc_tracks(tmp_path / "01_RES")
    np.testing.assert_array_equal(back.labels, tracks.labels)
    assert [(r.label, r.start, r.end, r.parent) for r in back.records] == [(1, 0, 1, 0), (2, 0, 3, 0), (3, 2, 3, 1),
                                                                         (4, 2, 3, 1)]
    assert not list((tmp_path / "01_RES").glob(".*part*"))  # no temporary files left
    assert (mask_name(7, 1000), mask_name(7, 1001)) == ("mask007.tif", "mask0007.tif")
    # a ground-truth layout: TRA/man_track.txt + man_trackTTT.tif, found from the sequence folder
    tra = tmp_path / "01_GT" / "TRA"
    tra.mkdir(parents=True)
    for t, frame in enumerate(tracks.labels):
        tifffile.imwrite(tra / f"man_track{t:03d}.tif", frame.astype(np.uint16))
    (tra / "man_track.txt").write_text("1 0 1 0\n2 0 3 0\n3 2 3 1\n4 2 3 1\n")
    assert len(read_ctc_tracks(tmp_path / "01_GT").records) == 4
    # a shorter result may not land among the masks of a longer one
    with pytest.raises(UserError, match="mask002.tif .*not a frame of this 2-frame result"):
        write_ctc_result(_Truth(tracks.labels[:2], [TrackRecord(1, 0, 1), TrackRecord(2, 0, 1)]), tmp_path / "01_RES")


def test_the_ctc_checker_rules(tmp_path):
    tracks = _example_tracks()
    ok = tracks.records
    assert ctc_problems(tracks.labels, ok) == []
    assert "label 4 is in mask frame(s) 2, 3 but has no line" in ctc_problems(tracks.labels, ok[:3])
    gap = tracks.labels.copy()
    gap[1][gap[1] == 2] = 0
    assert ctc_problems(gap, ok) == ["track 2 (0..3) is missing from mask frame(s) 1 (after a gap the CTC format "
                                     "starts a new track whose parent is the old one)"]
    late = [ok[0], ok[1], TrackRecord(3, 1, 3, 1), ok[3]]
    assert any("parent 1 ends in frame 1" in p for p in ctc_problems(tracks.labels, late))
    assert any("parent 9 has no line" in p for p in ctc_problems(tracks.labels, [*ok[:3], TrackRecord(4, 2, 3, 9)]))
    assert any("unique" in p for p in ctc_problems(tracks.labels, [*ok, TrackRecord(4, 2, 3, 1)]))
    with pytest.raises(ValueError, match="CTC rules"):
        write_ctc_result(_Truth(gap, ok), tmp_path / "bad")
    # files that break the rules: a UserError naming the file, its problem and the fix
    folder = tmp_path / "res"
    write_ctc_result(tracks, folder)
    (folder / "res_track.txt").write_text("1 0 1 0\n2 0 3 0\n3 2 3 1\n")
    with pytest.raises(UserError, match=r"res_track.txt: breaks the CTC rules — label 4 is in mask frame\(s\) 2, 3"):
        read_ctc_tracks(folder)
    (folder / "res_track.txt").write_text("1 0 1 0\n2 0 x 0\n")
    with pytest.raises(UserError, match=r"line 2 '2 0 x 0' is not 'L B E P'"):
        read_track_file(folder / "res_track.txt")
    (folder / "mask001.tif").unlink()
    with pytest.raises(UserError, match="mask001.tif is missing"):
        read_ctc_tracks(folder)


def _write_gt(folder: Path, tracks: _Truth) -> Path:
    for sub, prefix in (("tra", "man_track"), ("seg", "man_seg")):
        (folder / sub).mkdir(parents=True)
        for t, frame in enumerate(tracks.labels):
            tifffile.imwrite(folder / sub / f"{prefix}{t:03d}.tif", frame.astype(np.uint16))
    (folder / "tra" / "man_track.txt").write_text("".join(f"{r.label} {r.start} {r.end} {r.parent}\n"
                                                          for r in tracks.records))
    return folder


def test_ctc_measures_of_a_perfect_and_of_a_broken_result(tmp_path, laptrack, ctc_metrics):
    from ctc_metrics.utils.representations import match as library_match

    from virtualstain.evaluation.tracking_scores import _match_2d, score_tracking

    truth = _example_tracks()
    gt = _write_gt(tmp_path / "gt", truth)
    tracks = track_labels(list(truth.labels))
    write_ctc_result(tracks, tmp_path / "res")
    scores = score_tracking(tmp_path / "res", gt)
    assert (scores.tra, scores.det, scores.seg, scores.lnk, scores.link_f1) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert (scores.n_divisions, scores.n_reference_divisions, scores.n_tracks) == (1, 1, 4)
    # without divisions: the mother-daughter links are wrong or missing, so TRA drops below 1 (DET stays 1)
    write_ctc_result(track_labels(list(truth.labels), divisions=False), tmp_path / "plain")
    plain = score_tracking(tmp_path / "plain", gt)
    assert plain.det == 1.0 and plain.tra is not None and plain.tra < 1.0 and plain.n_divisions == 0
    # the fast frame matching gives the library's numbers
    a, b = str(gt / "tra" / "man_track002.tif"), str(tmp_path / "plain" / "mask002.tif")
    assert _match_2d(a, b, library_match) == library_match(a, b)
    assert score_tracking(tmp_path / "plain", gt, fast_match=False) == plain


def _label_files(folder: Path, frames) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, frame in enumerate(frames):
        tifffile.imwrite(folder / f"t{t:03d}.tif", frame)
        paths.append(str(folder / f"t{t:03d}.tif"))
    return paths


def test_cli_track_writes_ctc_and_prints_one_line(tmp_path, capsys, laptrack):
    frames = [_frame({1: (40, 60 + t), 2: (15, 15)}).astype(np.uint16) for t in range(3)] + \
             [_frame({3: (40, 50), 4: (40, 72), 2: (15, 15)}).astype(np.uint16) for _ in range(2)]
    files = _label_files(tmp_path / "labels", frames)
    out = tmp_path / "tracks"
    assert main(["track", *files, "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("5 frames, 4 tracks, 1 division (max distance 15.8 px) → ") and line.endswith("res_track.txt")
    assert len(read_ctc_tracks(out).records) == 4
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack(frames))
    assert main(["track", str(stack), "--out", str(tmp_path / "s"), "--no-divisions", "--gap-frames", "0"]) == 0
    assert capsys.readouterr().out.startswith("5 frames, 3 tracks, 0 divisions")  # the mother goes on as a daughter


def test_cli_track_bad_input_exits_2_with_one_line(tmp_path, capsys):
    labels = tmp_path / "labels"
    files = _label_files(labels, [_frame({1: (40, 40)}).astype(np.uint16)] * 2)
    missing = str(labels / "t002.tif")
    assert main(["track", *files, missing, "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (f"error: {missing}: file not found; check the path (give the label TIFFs of "
                                       "every frame, in time order)\n")
    floats = tmp_path / "float.tif"
    tifffile.imwrite(floats, np.zeros(SHAPE, np.float32))
    assert main(["track", files[0], str(floats), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (f"error: {floats}: labels must be integers (0 = background, 1, 2, … one per "
                                       "nucleus) but the pixels are float32; give instance-label TIFFs such as "
                                       "`virtualstain segment` writes\n")
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((10, 10), np.uint16))
    assert main(["track", files[0], str(small), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (f"error: {small}: frame shape (10, 10) differs from {files[0]}'s {SHAPE}; all "
                                       "frames of a time-lapse must have one shape (crop or pad them alike)\n")
    assert main(["track", *files, "--out", str(labels)]) == 2
    assert capsys.readouterr().err == (f"error: {labels}: --out is the folder of the input {files[0]}; the CTC masks "
                                       "would mix with the input labels — choose another --out folder\n")
    assert main(["track", *files, "--out", str(tmp_path / "o"), "--max-distance-px", "0"]) == 2
    assert "--max-distance-px 0.0: give a finite number > 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written for refused input


@pytest.mark.realdata
@pytest.mark.slow
def test_tracking_the_ctc_ground_truth_labels(data_dir, tmp_path, laptrack, ctc_metrics):
    """All 65 frames of Fluo-N2DH-SIM+ 01: tracking the reference segmentation must recover its lineage."""
    from virtualstain.evaluation.tracking_scores import score_tracking

    seq = data_dir / "ctc_sim_nuclei_track"
    if not seq.is_dir():
        pytest.skip(f"{seq} not found")
    start = time.perf_counter()
    frames = [tifffile.imread(p) for p in sorted((seq / "seg").glob("man_seg*.tif"))]
    tracks = track_labels(frames)
    write_ctc_result(tracks, tmp_path / "res")
    scores = score_tracking(tmp_path / "res", seq)
    seconds = time.perf_counter() - start
    print(f"\nSIM+ 01 from reference labels: {scores} in {seconds:.1f} s")
    assert len(frames) == 65
    assert scores.link_f1 >= 0.97 and scores.tra is not None and scores.tra >= 0.95
    assert scores.det == 1.0 and scores.seg == 1.0  # the reference's own objects
    assert scores.n_divisions >= 1 and scores.n_divisions <= scores.n_reference_divisions + 2
