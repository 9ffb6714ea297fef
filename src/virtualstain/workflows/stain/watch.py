"""``virtualstain watch MODEL INBOX --out DIR``: predict each image file as it appears, keeping pace with acquisition.

A file is read only once it is complete: names that acquisition software uses while writing (starting with
``.``, ending in ``.part``, ``.tmp``, ``.crdownload`` or ``~``) are ignored until renamed, and any other file
must keep the same size and modification time for ``settle_s`` seconds between two looks. Files whose
output is already there, made by this model with these options, are skipped (a restart goes on where it
stopped); a file that cannot be read is reported and skipped, and tried again if it changes later.
Reading, predicting and writing overlap (:mod:`~virtualstain.inference.streaming`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..._atomic import ensure_writable_dir, refuse_overwriting_inputs, remove_stale_parts
from ...data.acquisition import Acquisition
from ...data.io import output_path
from ...data.samples import load_input
from ...errors import UserError
from ...inference.backend_choice import last_choice
from ...inference.domain_check import check_domain, warn_if_unfamiliar
from ...inference.options import PredictOptions
from ...inference.predict import predict
from ...inference.streaming import FrameTiming, StreamReport, run_stream
from ...models.bundle import ModelBundle, load_bundle
from .predict import _expected_shape, _Recipe, _stitch, _up_to_date, rescaled_note, write_prediction

#: Image files the watcher picks up (case-insensitive).
IMAGE_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff")
#: Names of files still being written by common acquisition and copy tools.
PARTIAL_MARKERS = (".part", ".tmp", ".crdownload", "~")


@dataclass(frozen=True)
class WatchSettings:
    """How the inbox is watched.

    Attributes
    ----------
    poll_s : float
        Seconds between two looks at the folder.
    settle_s : float
        A file must keep its size and modification time this long before it is read.
    once : bool
        Predict what is (or becomes, within ``settle_s``) complete now, then stop.
    idle_exit_s : float, optional
        Stop after this many seconds without a new file (default: run until Ctrl-C).
    check_domain : bool
        Check every frame against the model's training domain in the writer thread (a warning when it is mostly
        unlike the training inputs; the share of its tiles outside recorded in the output).
    """

    poll_s: float = 0.2
    settle_s: float = 0.5
    once: bool = False
    idle_exit_s: float | None = None
    check_domain: bool = True

    def __post_init__(self) -> None:
        if not (self.poll_s > 0 and self.settle_s >= 0):
            raise UserError(f"--poll {self.poll_s} must be > 0 s and --settle {self.settle_s} ≥ 0 s (e.g. --poll 0.2 "
                            "--settle 0.5)")
        if self.idle_exit_s is not None and self.idle_exit_s <= 0:
            raise UserError(f"--idle-exit {self.idle_exit_s} must be a positive number of seconds")


def is_candidate(path: Path) -> bool:
    """Whether ``path`` names an image file that is not marked as still being written."""
    name = path.name.lower()
    if name.startswith(".") or any(name.endswith(m) for m in PARTIAL_MARKERS):
        return False
    return name.endswith(IMAGE_SUFFIXES)


def complete_files(inbox: Path, settings: WatchSettings, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> Iterator[Path]:
    """Yield each image file of ``inbox`` once it is complete (size and mtime unchanged for ``settle_s``).

    A file that changes after it was yielded (rewritten by the microscope) is yielded again. Stops when
    ``settings.once`` and nothing is left waiting, or after ``idle_exit_s`` without a new complete file.
    """
    looked: dict[Path, tuple[tuple[int, int], float]] = {}  # path → (size, mtime_ns) and since when
    done: dict[Path, tuple[int, int]] = {}
    last_new = clock()
    while True:
        now = clock()
        try:
            entries = sorted(p for p in inbox.iterdir() if is_candidate(p))
        except OSError as exc:
            raise UserError(f"{inbox}: cannot list the inbox ({exc.strerror or exc}); check the folder") from None
        waiting = False
        for path in entries:
            try:
                st = path.stat()
            except OSError:  # renamed or deleted between listing and looking
                continue
            if not path.is_file():  # a folder named like an image
                continue
            sig = (st.st_size, st.st_mtime_ns)
            if done.get(path) == sig:
                continue
            seen = looked.get(path)
            if seen is None or seen[0] != sig:
                looked[path] = (sig, now)
                waiting = True
                continue
            if now - seen[1] < settings.settle_s:
                waiting = True
                continue
            done[path] = sig
            looked.pop(path, None)
            last_new = clock()
            yield path
        if settings.once and not waiting:
            return
        if settings.idle_exit_s is not None and clock() - last_new > settings.idle_exit_s:
            return
        sleep(settings.poll_s)


def watch_folder(model: ModelBundle | str | os.PathLike, inbox: str | os.PathLike, out_dir: str | os.PathLike,
                 options: PredictOptions | None = None, settings: WatchSettings | None = None, *,
                 log: Callable[[str], None] = print) -> StreamReport:
    """Predict every image file that appears in ``inbox`` into ``out_dir`` (named like the inputs).

    Outputs are float32 OME-TIFFs exactly as :func:`~virtualstain.workflows.stain.predict.predict_files` writes
    them (so either command skips the other's finished outputs). Each frame's read, compute and write times
    are logged as it is written, and the summary (frames/s, latency, overlap of the stages) at the end.

    Raises
    ------
    UserError
        The inbox is missing or is the output folder, or the output folder cannot be written.
    Interrupted
        Ctrl-C or SIGTERM (finished outputs are complete; a rerun skips them).
    """
    opts = options or PredictOptions(backend="auto", precision="auto")
    settings = settings or WatchSettings()
    inbox, out_dir = Path(inbox), Path(out_dir)
    if not inbox.is_dir():
        raise UserError(f"{inbox}: the inbox folder does not exist; create it or give the folder the microscope "
                        "writes to")
    if inbox.resolve() == out_dir.resolve():
        raise UserError(f"{out_dir}: --out is the inbox; predictions would be read as new images — give another "
                        "folder")
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    ensure_writable_dir(out_dir)
    channels = bundle.input_channels
    recipe_of = lambda path: _Recipe(model_sha256=bundle.weights_sha256, source=path.name, tta=opts.tta,  # noqa: E731
                                     match_brightness=opts.match_brightness, border=opts.border,
                                     input_channels=channels, stitch=_stitch(opts))

    def read(path):  # a Path from complete_files
        dest = output_path(out_dir, path)
        refuse_overwriting_inputs([dest], [path])
        remove_stale_parts([dest], older_than_s=0.0)
        image, meta = load_input(path, bundle.config.spatial_dims, channels, bundle.input_channel_names)
        recipe = recipe_of(path)
        if dest.exists():
            _, reason = _up_to_date(dest, recipe, _expected_shape(bundle, image), bundle.output_channel_names, False)
            if reason is None:
                already_done.append(dest)
                return None
        return path.name, image, (path, dest, recipe, meta, image)

    def compute(image, context):
        path, _, _, meta, _ = context
        return predict(bundle, image, opts, source=str(path), pixel_size_um=meta.pixel_size_um,
                       acquisition=Acquisition.from_description(meta.description))

    def write(name, prediction, context):
        path, dest, recipe, meta, image = context
        choice = last_choice(bundle)
        engine = {"engine": str(choice.spec)} if choice else {}
        engine.update(rescaled_note(bundle, meta.pixel_size_um))
        if settings.check_domain:  # here, beside the next frame's prediction, not in its way
            scores = check_domain(bundle, image, source=str(path), pixel_size_um=meta.pixel_size_um,
                                  rescale=opts.rescale)
            warn_if_unfamiliar(bundle, scores, str(path))
            if scores is not None:
                engine["ood_outside"] = round(scores.fraction_outside, 4)
        write_prediction(dest, bundle, prediction, source=name, pixel_size_um=meta.pixel_size_um,
                         recipe={**recipe.description(), **engine})

    def on_skip(item: str, reason: str) -> None:
        log(f"skipped {item}: {reason}")

    def on_frame(timing: FrameTiming) -> None:
        if not written:
            choice = last_choice(bundle)
            log(choice.summary() if choice else "")
        written.append(timing)
        log(timing.line())

    already_done: list[Path] = []
    written: list[FrameTiming] = []
    log(f"watching {inbox} → {out_dir} (Ctrl-C to stop)" if not settings.once else f"predicting {inbox} → {out_dir}")
    report = run_stream(complete_files(inbox, settings), read, compute, write, on_frame=on_frame, on_skip=on_skip)
    if already_done:
        log(f"{len(already_done)} already predicted by this model with these options, skipped")
    for line in report.summary():
        log(line)
    return report
