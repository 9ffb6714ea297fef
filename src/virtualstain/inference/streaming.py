"""Streaming prediction: reading, computing and writing overlap in three threads joined by bounded queues.

The reader thread pulls frames from a source (files appearing in a folder, a camera, a list) and reads them;
the calling thread predicts; the writer thread hands each prediction to ``write``. Each queue holds at most
``queue_size`` frames, so a slow writer or network holds the reader back instead of filling memory. A frame
whose reading or prediction fails with a :class:`~virtualstain.errors.UserError` (a damaged file, channels or a
size the model cannot take) is reported and skipped; Ctrl-C stops reading at once, lets the writer finish the
frame it is writing (writers write under a temporary name and rename, so nothing is half-written) and raises
:class:`Interrupted`.

Every frame's stage intervals are kept (:class:`FrameTiming`), so the report can show that the stages
overlap: the time during which two stages ran at once, and the sustained frames per second.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..errors import Interrupted, UserError

#: Frames waiting between two stages (reader → compute, compute → writer).
QUEUE_SIZE = 2
_END = object()


@dataclass
class FrameTiming:
    """When one frame was read, predicted and written (seconds since the stream started)."""

    name: str
    read: tuple[float, float] = (0.0, 0.0)
    compute: tuple[float, float] = (0.0, 0.0)
    write: tuple[float, float] = (0.0, 0.0)

    @property
    def latency_s(self) -> float:
        """From the start of reading to the end of writing."""
        return self.write[1] - self.read[0]

    def line(self) -> str:
        r, c, w = (b - a for a, b in (self.read, self.compute, self.write))
        return (f"{self.name}: read {r:.3f} s, compute {c:.3f} s, write {w:.3f} s, latency {self.latency_s:.3f} s "
                f"(read {self.read[0]:.2f}–{self.read[1]:.2f}, compute {self.compute[0]:.2f}–{self.compute[1]:.2f}, "
                f"write {self.write[0]:.2f}–{self.write[1]:.2f} s)")


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Total time during which an interval of ``a`` and one of ``b`` both ran."""
    return sum(max(0.0, min(x1, y1) - max(x0, y0)) for x0, x1 in a for y0, y1 in b)


@dataclass
class StreamReport:
    """What a stream did: per-frame timings, skipped frames with the reason, wall time."""

    frames: list[FrameTiming] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    wall_s: float = 0.0

    def frames_per_second(self) -> float:
        """Sustained rate: frames written per second between the first and the last write (the first frame's
        start-up — engine choice, compilation — is not counted); with one frame, 1 / its latency."""
        if not self.frames:
            return 0.0
        if len(self.frames) == 1:
            return 1.0 / self.frames[0].latency_s if self.frames[0].latency_s > 0 else float("inf")
        span = self.frames[-1].write[1] - self.frames[0].write[1]
        return (len(self.frames) - 1) / span if span > 0 else float("inf")

    def stage_seconds(self) -> dict[str, float]:
        """Total busy time per stage."""
        return {stage: sum(getattr(f, stage)[1] - getattr(f, stage)[0] for f in self.frames)
                for stage in ("read", "compute", "write")}

    def overlap_seconds(self) -> dict[str, float]:
        """Time during which two stages ran at once (of different frames)."""
        spans = {stage: [getattr(f, stage) for f in self.frames] for stage in ("read", "compute", "write")}
        return {"read+compute": _overlap(spans["read"], spans["compute"]),
                "compute+write": _overlap(spans["compute"], spans["write"]),
                "read+write": _overlap(spans["read"], spans["write"])}

    def summary(self) -> list[str]:
        """Lines for the terminal: rate, latency, busy time per stage and how much of it overlapped."""
        if not self.frames:
            return [f"no frame predicted ({len(self.skipped)} skipped)"]
        busy, both = self.stage_seconds(), self.overlap_seconds()
        latencies = np.array([f.latency_s for f in self.frames])
        n = len(self.frames)
        return [f"{n} frame(s), {self.frames_per_second():.2f} frames/s sustained, latency median "
                f"{np.median(latencies):.3f} s (max {latencies.max():.3f} s)"
                + (f", {len(self.skipped)} skipped" if self.skipped else ""),
                "per frame: " + ", ".join(f"{k} {v / n:.3f} s" for k, v in busy.items())
                + f"; stages summed {sum(busy.values()) / n:.3f} s vs {1 / self.frames_per_second():.3f} s per frame "
                "on the clock",
                "overlapping: " + ", ".join(f"{k} {v:.2f} s" for k, v in both.items())]


def run_stream(source: Iterable, read: Callable[[object], tuple[str, np.ndarray, object] | None],
               compute: Callable[[np.ndarray, object], np.ndarray], write: Callable[[str, np.ndarray, object], None],
               *, queue_size: int = QUEUE_SIZE, on_frame: Callable[[FrameTiming], None] | None = None,
               on_skip: Callable[[str, str], None] | None = None) -> StreamReport:
    """Run ``read`` (reader thread) → ``compute`` (this thread) → ``write`` (writer thread) over ``source``.

    Parameters
    ----------
    source : iterable
        Items to read (paths, arrays…); iterated in the reader thread, so it may block waiting for new files.
    read : callable
        ``item → (name, array, context)``, or None to pass the item over silently; a :class:`UserError` skips the
        item (reported to ``on_skip``).
    compute : callable
        ``(array, context) → prediction``; a :class:`UserError` skips the frame (reported to ``on_skip``).
    write : callable
        ``(name, prediction, context) → None``; should write atomically.
    queue_size : int
        Frames held between two stages.
    on_frame, on_skip : callable, optional
        Called (in the writer and reader threads) with each finished frame's timing, and each skipped item.

    Returns
    -------
    StreamReport

    Raises
    ------
    Interrupted
        Ctrl-C (SIGINT) or SIGTERM in the calling thread; the frame being written is finished first.
    """
    start = time.perf_counter()
    now = lambda: time.perf_counter() - start  # noqa: E731
    to_compute: queue.Queue = queue.Queue(queue_size)
    to_write: queue.Queue = queue.Queue(queue_size)
    stop = threading.Event()
    report = StreamReport()
    errors: list[BaseException] = []

    def put(q: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for item in source:
                if stop.is_set():
                    return
                t0 = now()
                try:
                    result = read(item)
                except UserError as exc:
                    report.skipped.append((str(item), str(exc)))
                    if on_skip is not None:
                        on_skip(str(item), str(exc))
                    continue
                if result is None:  # nothing to do for this item (e.g. its output is up to date)
                    continue
                name, array, context = result
                if not put(to_compute, (FrameTiming(name, read=(t0, now())), array, context)):
                    return
        except BaseException as exc:  # handed to the calling thread
            errors.append(exc)
        finally:
            put(to_compute, _END)

    def writer() -> None:
        while True:
            item = to_write.get()
            if item is _END:
                return
            timing, prediction, context = item
            t0 = now()
            try:
                write(timing.name, prediction, context)
            except BaseException as exc:
                errors.append(exc)
                stop.set()
                return
            timing.write = (t0, now())
            report.frames.append(timing)
            if on_frame is not None:
                on_frame(timing)

    threads = [threading.Thread(target=reader, name="virtualstain-read", daemon=True),
               threading.Thread(target=writer, name="virtualstain-write", daemon=True)]
    for t in threads:
        t.start()
    signum = None
    previous = _terminate_as_interrupt()
    try:
        while not errors:
            try:
                item = to_compute.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                break
            timing, array, context = item
            t0 = now()
            try:
                prediction = compute(array, context)
            except UserError as exc:  # this frame does not suit the model (channels, size, pixel size): skip it
                report.skipped.append((timing.name, str(exc)))
                if on_skip is not None:
                    on_skip(timing.name, str(exc))
                continue
            timing.compute = (t0, now())
            if not put(to_write, (timing, prediction, context)):
                break
    except KeyboardInterrupt:
        signum = signal.SIGINT
    except _Terminated:
        signum = signal.SIGTERM
    finally:
        _restore(previous)
        if signum is not None or errors:
            stop.set()
        while threads[1].is_alive():  # the writer finishes what is queued (or, when stopping, the frame it writes)
            try:
                to_write.put(_END, timeout=0.1)
                break
            except queue.Full:
                if stop.is_set():
                    _drain(to_write)
        threads[1].join()
    report.wall_s = now()
    if errors:
        raise errors[0]
    if signum is not None:
        raise Interrupted(signum, f"stopped after {len(report.frames)} frame(s); every written file is complete — "
                                  "rerun the same command to go on (finished frames are skipped)")
    return report


def _drain(q: queue.Queue) -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


class _Terminated(Exception):
    """SIGTERM turned into an exception in the calling thread."""


def _terminate_as_interrupt():
    """Make SIGTERM raise :class:`_Terminated` in the main thread (a scheduler's stop), returning the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise _Terminated

    return signal.signal(signal.SIGTERM, handler)


def _restore(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def stream(model, frames: Iterable, write: Callable[[str, np.ndarray], None], options=None, *,
           queue_size: int = QUEUE_SIZE, on_frame: Callable[[FrameTiming], None] | None = None,
           **option_changes) -> StreamReport:
    """Predict a stream of frames with reading, computing and writing overlapped.

    Parameters
    ----------
    model : ModelBundle or path
        The model (a bundle folder, or one loaded with :func:`virtualstain.load_model`).
    frames : iterable
        ``(C, [Z,] Y, X)`` arrays in the input's units, or ``(name, array)`` pairs; consumed in a reader thread
        (a generator that grabs camera frames works).
    write : callable
        ``write(name, prediction)`` in the writer thread (names are ``frame_00000``… for bare arrays).
    options : PredictOptions, optional
        As for :func:`~virtualstain.inference.predict.predict` (``backend="auto"`` for the fastest engine).
    queue_size : int
        Frames held between two stages.
    on_frame : callable, optional
        Called with each written frame's :class:`FrameTiming`.

    Returns
    -------
    StreamReport
        Per-frame timings, frames/s and the overlap of the stages.
    """
    from ..models.bundle import ModelBundle, load_bundle
    from .options import PredictOptions
    from .predict import predict

    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    opts = (options or PredictOptions()).replace(**option_changes)
    counter = iter(range(10 ** 12))

    def read(item):
        name, array = item if isinstance(item, tuple) else (f"frame_{next(counter):05d}", item)
        return name, np.asarray(array, np.float32), None

    return run_stream(frames, read, lambda array, _: predict(bundle, array, opts),
                      lambda name, prediction, _: write(name, prediction), queue_size=queue_size, on_frame=on_frame)
