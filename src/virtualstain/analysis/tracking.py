"""Nucleus tracking over a time-lapse of 2D instance labels, with laptrack (Jaqaman et al. 2008 LAP tracker).

Each object of each frame becomes a point at its centroid ``(y, x)`` (pixels, ``skimage.measure.regionprops``).
:class:`laptrack.LapTrack` links points frame to frame, then closes gaps (an object missing for up to
``gap_frames`` frames) and detects splits (divisions), each by a linear assignment of squared distances cut
off at ``max_distance_px``². Merging is never allowed (nuclei do not fuse). Starting or ending a track, and
not splitting, each cost as much as a link of ``max_distance_px`` (laptrack's alternative costs b, d, d' of
Jaqaman et al. set to the cutoff instead of its 90th-percentile estimate): any link within the distance is preferred
to a new track. With laptrack's estimate, daughters born 0.8–0.9 diameters from their mother (3 of the 28 divisions
of the CTC Fluo-N2DH-SIM+ sequence) started new tracks instead.

The result follows the Cell Tracking Challenge (CTC) definitions of ``res_track.txt`` (``L B E P``):

- a track is a maximal run of one object, one label for its whole life, without a division;
- at a division the mother's track ends; each daughter starts a new track whose parent is the mother;
- an object missing for a few frames and found again (a closed gap) continues as a new track whose parent is the
  track before the gap, and whose only child it is (the CTC annotation rule: "if the same object reappears, link
  its track to its predecessor using a parent link"; the CTC checkers refuse a label absent from a frame between
  its ``B`` and ``E``). A division therefore is a track with two or more children; a track with one child is a
  gap (or a division whose other daughter left the field).

Links: the frame-to-frame links of a tracking result are, for each track, its object in one frame to its object in
the next frame where it is present, and, for each parent link, the parent's last object to the child's first
object. :func:`link_scores` compares them with a reference after matching objects frame by frame (IoU > 0.5,
or the CTC rule: a computed object covers more than half of a reference marker).

No torch here; laptrack is an optional dependency (``pip install "virtualstain[track]"``), imported only when
tracking runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from ..errors import UserError

TRACK_EXTRA_HINT = 'pip install "virtualstain[track]"'

#: The default linking distance is this many times the median equivalent diameter of the objects.
DEFAULT_DISTANCE_DIAMETERS = 1.0


@dataclass(frozen=True)
class TrackRecord:
    """One line of a CTC ``res_track.txt``: track ``label`` lives from frame ``start`` to ``end`` (inclusive,
    0-based); ``parent`` is the label of the mother track (0 = none)."""

    label: int
    start: int
    end: int
    parent: int = 0


class LabelledTracks(Protocol):
    """What :func:`track_links` and :func:`link_scores` read: ``(T, Y, X)`` track labels and CTC records."""

    @property
    def labels(self) -> np.ndarray: ...

    @property
    def records(self) -> Sequence[Any]: ...  # objects with .label, .start, .end, .parent (ints)


@dataclass(frozen=True, eq=False)
class Tracks:
    """A tracking result in CTC form.

    Attributes
    ----------
    labels : numpy.ndarray
        ``(T, Y, X)`` int32 track labels (0 = background): each track one label, constant over its frames,
        consecutive from 1 in order of first frame.
    records : tuple of TrackRecord
        One per track, sorted by label (the rows of ``res_track.txt``).
    max_distance_px : float
        The linking (and gap-closing and splitting) distance used, pixels.
    """

    labels: np.ndarray
    records: tuple[TrackRecord, ...]
    max_distance_px: float

    @property
    def n_frames(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_tracks(self) -> int:
        return len(self.records)

    @property
    def divisions(self) -> tuple[int, ...]:
        """Labels of the mother tracks with two or more daughters."""
        return dividing_tracks(self.records)


def dividing_tracks(records: Iterable[Any]) -> tuple[int, ...]:
    """Labels of the tracks that are the parent of two or more tracks (divisions), sorted."""
    children: dict[int, int] = {}
    for r in records:
        if int(r.parent):
            children[int(r.parent)] = children.get(int(r.parent), 0) + 1
    return tuple(sorted(label for label, n in children.items() if n >= 2))


def _laptrack() -> Any:
    try:
        import laptrack
    except ImportError:
        raise UserError(f"tracking needs the laptrack package, which is not installed; {TRACK_EXTRA_HINT}") from None
    return laptrack


def _check_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    arrays = [np.asarray(f) for f in frames]
    if not arrays:
        raise ValueError("track_labels needs at least one frame")
    shape = arrays[0].shape
    for t, a in enumerate(arrays):
        if a.ndim != 2:
            raise ValueError(f"frame {t}: expected 2D labels (Y, X), got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"frame {t}: labels must be integers, got {a.dtype}")
        if a.shape != shape:
            raise ValueError(f"frame {t}: shape {a.shape} differs from frame 0's {shape}")
        if a.size and a.min() < 0:
            raise ValueError(f"frame {t}: negative labels (0 = background, objects 1, 2, ...)")
    return arrays


def default_max_distance_px(frames: Sequence[np.ndarray]) -> float:
    """``DEFAULT_DISTANCE_DIAMETERS`` × the median equivalent diameter (√(4·area/π), pixels) of all objects.

    A nucleus rarely moves a diameter between frames of a trackable time-lapse, and a daughter's centroid lies
    about half a diameter (up to nearly one) from its mother's. NaN when there are no objects.
    """
    from skimage.measure import regionprops

    return _median_diameter_rule([r.equivalent_diameter_area for f in frames for r in regionprops(np.asarray(f))])


def _median_diameter_rule(diameters: list[float]) -> float:
    return DEFAULT_DISTANCE_DIAMETERS * float(np.median(diameters)) if diameters else float("nan")


def track_labels(frames: Sequence[np.ndarray], max_distance_px: float | None = None, gap_frames: int = 2,
                 divisions: bool = True) -> Tracks:
    """Link the objects of a time-lapse of 2D instance labels into CTC tracks (see the module docstring).

    Parameters
    ----------
    frames : sequence of numpy.ndarray
        ``T`` integer label images ``(Y, X)`` in time order (0 = background), or one ``(T, Y, X)`` array.
    max_distance_px : float, optional
        Largest centroid distance (pixels) of a link, a gap closing or a mother-daughter link; default
        :func:`default_max_distance_px` (one median equivalent diameter of the objects).
    gap_frames : int
        Most consecutive frames an object may be missing and still be linked across (0 = no gap closing).
    divisions : bool
        Detect divisions (splitting); if False each object has at most one successor.

    Returns
    -------
    Tracks
        Track labels ``(T, Y, X)`` and CTC records.

    Raises
    ------
    ValueError
        Frames that are not 2D integer labels of one shape, or a bad distance or gap.
    UserError
        laptrack is not installed.
    """
    arrays = _check_frames(list(frames))
    if gap_frames < 0 or int(gap_frames) != gap_frames:
        raise ValueError(f"gap_frames must be an integer ≥ 0, got {gap_frames}")
    from skimage.measure import regionprops

    if max_distance_px is not None and not (math.isfinite(max_distance_px) and max_distance_px > 0):
        raise ValueError(f"max_distance_px must be a finite number > 0, got {max_distance_px}")
    props = [regionprops(a) for a in arrays]
    if max_distance_px is None:
        max_distance_px = _median_diameter_rule([r.equivalent_diameter_area for p in props for r in p])
    coords = [np.array([r.centroid for r in p], np.float64).reshape(-1, 2) for p in props]
    originals = [np.array([r.label for r in p], np.int64) for p in props]
    successors: dict[tuple[int, int], list[tuple[int, int]]] = {}
    has_parent: set[tuple[int, int]] = set()
    if sum(len(c) for c in coords):
        cutoff = float(max_distance_px) ** 2
        tracker = _laptrack().LapTrack(
            cutoff=cutoff, gap_closing_cutoff=cutoff if gap_frames else False,
            gap_closing_max_frame_count=int(gap_frames) + 1,  # laptrack counts the frame difference
            splitting_cutoff=cutoff if divisions else False, merging_cutoff=False,
            track_start_cost=cutoff, track_end_cost=cutoff, segment_start_cost=cutoff, segment_end_cost=cutoff,
            no_splitting_cost=cutoff)
        graph = tracker.predict(coords)
        for a, b in graph.edges():
            a, b = (tuple(map(int, a)), tuple(map(int, b)))
            a, b = (a, b) if a[0] < b[0] else (b, a)
            successors.setdefault(a, []).append(b)
            has_parent.add(b)
    labels, records = _to_ctc(arrays, originals, successors, has_parent)
    return Tracks(labels=labels, records=records, max_distance_px=float(max_distance_px))


def _to_ctc(arrays: list[np.ndarray], originals: list[np.ndarray],
            successors: dict[tuple[int, int], list[tuple[int, int]]],
            has_parent: set[tuple[int, int]]) -> tuple[np.ndarray, tuple[TrackRecord, ...]]:
    """Cut the link graph (nodes ``(frame, index)``) into CTC tracks and relabel the frames."""
    from skimage.util import map_array

    # a track starts at a node without a predecessor; a track ends where a node has no successor, two or more
    # (a division), or one across a gap (CTC: the object continues as a new track whose parent is this one)
    starts = [(t, i) for t, o in enumerate(originals) for i in range(len(o)) if (t, i) not in has_parent]
    segments: list[tuple[list[tuple[int, int]], int]] = []  # (nodes, index of the parent segment or -1)
    queue = [(node, -1) for node in starts]
    while queue:
        node, parent = queue.pop()
        nodes = [node]
        while len(nxt := successors.get(nodes[-1], [])) == 1 and nxt[0][0] == nodes[-1][0] + 1:
            nodes.append(nxt[0])
        segments.append((nodes, parent))
        queue += [(child, len(segments) - 1) for child in successors.get(nodes[-1], [])]
    order = sorted(range(len(segments)), key=lambda s: segments[s][0][0])
    track_id = {s: k + 1 for k, s in enumerate(order)}
    records = []
    lookup: list[dict[int, int]] = [{} for _ in arrays]
    for s in order:
        nodes, parent = segments[s]
        records.append(TrackRecord(track_id[s], nodes[0][0], nodes[-1][0], track_id[parent] if parent >= 0 else 0))
        for t, i in nodes:
            lookup[t][int(originals[t][i])] = track_id[s]
    labels = np.zeros((len(arrays), *arrays[0].shape), np.int32)
    for t, a in enumerate(arrays):
        if lookup[t]:
            keys = np.fromiter(lookup[t].keys(), np.int64)
            labels[t] = map_array(a.astype(np.int64, copy=False), keys,
                                  np.fromiter(lookup[t].values(), np.int64)).astype(np.int32)
    return labels, tuple(records)


Link = tuple[int, int, int, int]
"""A link ``(t1, label1, t2, label2)``: the object ``label1`` of frame ``t1`` continues as ``label2`` of ``t2 > t1``."""


def _present(labels: np.ndarray) -> dict[int, list[int]]:
    """Frames in which each label occurs, ascending."""
    frames: dict[int, list[int]] = {}
    for t, frame in enumerate(labels):
        for label in label_codes(frame.ravel())[0]:
            frames.setdefault(int(label), []).append(t)
    return frames


def track_links(tracks: LabelledTracks) -> set[Link]:
    """Frame-to-frame links of a CTC result: within each track between consecutive frames where it is present,
    and from each parent's last object to its child's first object (see the module docstring)."""
    present = _present(np.asarray(tracks.labels))
    links: set[Link] = set()
    for label, ts in present.items():
        links |= {(a, label, b, label) for a, b in zip(ts[:-1], ts[1:])}
    for r in tracks.records:
        child, parent = int(r.label), int(r.parent)
        if parent and child in present and parent in present:
            links.add((present[parent][-1], parent, present[child][0], child))
    return links


def match_frame(predicted: np.ndarray, reference: np.ndarray,
                rule: Literal["iou", "ctc"] = "iou") -> dict[int, int]:
    """One-to-one map predicted label → reference label for one frame (any label values).

    ``"iou"``: IoU > 0.5 (unique on both sides). ``"ctc"``: the CTC detection rule, the predicted object covers
    more than half of the reference object (for reference markers smaller than the objects); a predicted
    object covering several references keeps the one it covers most.
    """
    p, r = np.asarray(predicted).ravel(), np.asarray(reference).ravel()  # codes: 0 background, 1… objects
    p_ids, p_code = label_codes(p)
    r_ids, r_code = label_codes(r)
    both = (p_code > 0) & (r_code > 0)
    if not both.any():
        return {}
    n_r = len(r_ids) + 1
    pair_count = np.bincount(p_code[both] * n_r + r_code[both], minlength=(len(p_ids) + 1) * n_r)
    codes = np.flatnonzero(pair_count)
    inter = pair_count[codes].astype(np.float64)
    pi, ri = codes // n_r, codes % n_r
    ap, ar = np.bincount(p_code)[pi], np.bincount(r_code)[ri]
    score = inter / (ap + ar - inter) if rule == "iou" else inter / ar
    out: dict[int, tuple[int, float]] = {}
    for a, b, s in zip(p_ids[pi - 1], r_ids[ri - 1], score):
        if s > 0.5 and s > out.get(int(a), (0, 0.0))[1]:
            out[int(a)] = (int(b), float(s))
    return {a: b for a, (b, _) in out.items()}


def label_codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object labels (> 0, ascending) of a label array and the array recoded 0 (background), 1, 2, … in
    label order (as ``numpy.unique(..., return_inverse=True)``, by a lookup table when the labels are small)."""
    labels = labels.astype(np.int64, copy=False)
    top = int(labels.max(initial=0))
    if top < 4 * labels.size + 1024:  # small labels: a lookup table is faster than sorting
        present = np.bincount(labels, minlength=top + 1) > 0
        present[0] = False
        ids = np.flatnonzero(present)
        table = np.zeros(top + 1, np.int64)
        table[ids] = np.arange(1, len(ids) + 1)
        return ids, table[labels]
    ids, codes = np.unique(labels, return_inverse=True)
    if ids.size and ids[0] == 0:
        return ids[1:], codes
    return ids, codes + 1


@dataclass(frozen=True)
class LinkScores:
    """Link-level agreement of a tracking result with a reference.

    ``precision`` = correct links / predicted links, ``recall`` = correct links / reference links,
    ``f1`` their harmonic mean (NaN when undefined). A predicted link is correct when both its objects match
    reference objects (per frame) and the reference links those two.
    """

    n_predicted: int
    n_reference: int
    n_correct: int
    precision: float
    recall: float
    f1: float


def link_scores(predicted: LabelledTracks, reference: LabelledTracks,
                rule: Literal["iou", "ctc"] = "iou") -> LinkScores:
    """Precision, recall and F1 of the predicted frame-to-frame links against the reference's.

    Parameters
    ----------
    predicted, reference : Tracks-like
        ``labels`` ``(T, Y, X)`` and CTC ``records`` (e.g. :class:`Tracks`, or CTC files read by
        :func:`virtualstain.data.ctc.read_ctc_tracks`: ``man_track.txt`` with ``man_trackTTT.tif``).
    rule : {"iou", "ctc"}
        How objects are matched frame by frame (:func:`match_frame`).
    """
    pred_labels, ref_labels = np.asarray(predicted.labels), np.asarray(reference.labels)
    if pred_labels.shape != ref_labels.shape:
        raise ValueError(f"predicted and reference labels differ in shape: {pred_labels.shape} vs {ref_labels.shape}")
    matches = [match_frame(p, r, rule) for p, r in zip(pred_labels, ref_labels)]
    pred_links, ref_links = track_links(predicted), track_links(reference)
    correct = sum(1 for t1, a, t2, b in pred_links
                  if a in matches[t1] and b in matches[t2] and (t1, matches[t1][a], t2, matches[t2][b]) in ref_links)
    n_p, n_r = len(pred_links), len(ref_links)
    precision = correct / n_p if n_p else float("nan")
    recall = correct / n_r if n_r else float("nan")
    f1 = 2 * correct / (n_p + n_r) if n_p + n_r else float("nan")
    return LinkScores(n_predicted=n_p, n_reference=n_r, n_correct=correct, precision=precision, recall=recall, f1=f1)
