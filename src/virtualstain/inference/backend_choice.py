"""``--backend auto``: the fastest installed engine whose answer matches fp32 torch on a probe tile.

Every engine this machine can run (:func:`~virtualstain.inference.engines.candidate_specs`), limited to the
asked backend or precision, predicts the same probe tile — the central ≤ :data:`PROBE_PX`² window of the
first image, so the check sees real content — and is timed (best of :data:`PROBE_REPEATS` after a warm-up).
Its deviation is the largest ``|y − y_ref|`` over the probe divided by the range of the fp32 torch
prediction ``y_ref``; an engine passes when it is at most ``max_deviation`` (default 1e-3). The fastest
passing engine wins (the fp32 torch reference always passes). The choice is cached per model (weights
SHA-256), machine (host, processor, cores, torch threads, library versions, GPU), device and request in
``backend_choices.json`` of :func:`virtualstain._cache.cache_dir`, so it is measured once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch

from .._atomic import atomic_path
from .._cache import cache_dir
from .._hardware import cpu_model_name
from ..errors import UserError
from ..models.bundle import ModelBundle
from .engines import Engine, EngineSpec, build_engine, candidate_specs
from .onnx_graph import model_key
from .options import BACKENDS, MAX_DEVIATION

#: Largest side (input px) of the probe tile in Y and X (rounded down to the size multiple).
PROBE_PX = 512
#: Timed runs per engine after one warm-up run; the best counts.
PROBE_REPEATS = 2
CACHE_FILE = "backend_choices.json"


@dataclass(frozen=True)
class CandidateResult:
    """One engine on the probe: seconds (best run), deviation from fp32 torch, and whether it may be used."""

    spec: EngineSpec
    seconds: float | None = None
    deviation: float | None = None
    passed: bool = False
    note: str = ""


@dataclass(frozen=True)
class BackendChoice:
    """The engine used and why; ``candidates`` is the table measured on the probe (empty when asked for outright)."""

    spec: EngineSpec
    reason: str
    candidates: tuple[CandidateResult, ...] = ()
    probe_shape: tuple[int, ...] = ()
    max_deviation: float = MAX_DEVIATION
    cached: bool = False

    def speedup(self) -> float | None:
        """The chosen engine's speed relative to fp32 torch on the probe (None when not measured)."""
        times = {c.spec: c.seconds for c in self.candidates if c.seconds}
        ref = times.get(EngineSpec("torch", "fp32", self.spec.device))
        return ref / times[self.spec] if ref and self.spec in times else None

    def summary(self) -> str:
        """One line: what runs, and why."""
        return f"backend: {self.spec} — {self.reason}"

    def explain(self) -> list[str]:
        """The summary and, when measured, a line per candidate (seconds on the probe, ratio, deviation, verdict)."""
        lines = [self.summary()]
        if not self.candidates:
            return lines
        shape = "×".join(str(n) for n in self.probe_shape)
        lines.append(f"measured on a {shape} px probe tile of the first image{' (cached)' if self.cached else ''}; "
                     f"deviation = max |y − y_fp32 torch| / range of y_fp32 torch, allowed ≤ {self.max_deviation:g}")
        ref = next((c.seconds for c in self.candidates if c.spec == EngineSpec("torch", "fp32", self.spec.device)), None)
        for c in self.candidates:
            if c.seconds is None:
                lines.append(f"  {str(c.spec):32s} not used: {c.note}")
                continue
            ratio = f"{ref / c.seconds:5.2f}×" if ref else "   – "
            verdict = "chosen" if c.spec == self.spec else ("passes" if c.passed else "too far from fp32")
            dev = f"{c.deviation:.1e}" if c.deviation is not None else "–"
            lines.append(f"  {str(c.spec):32s} {c.seconds:7.3f} s  {ratio}  deviation {dev:8s} {verdict}"
                         + (f" ({c.note})" if c.note else ""))
        return lines

    def to_json(self) -> dict:
        return {"spec": dataclasses.asdict(self.spec), "reason": self.reason, "probe_shape": list(self.probe_shape),
                "max_deviation": self.max_deviation,
                "candidates": [{**dataclasses.asdict(c), "spec": dataclasses.asdict(c.spec)} for c in self.candidates]}

    @classmethod
    def from_json(cls, data: dict) -> BackendChoice:
        cands = tuple(CandidateResult(**{**c, "spec": EngineSpec(**c["spec"])}) for c in data["candidates"])
        return cls(EngineSpec(**data["spec"]), data["reason"], cands, tuple(data["probe_shape"]),
                   float(data["max_deviation"]), cached=True)


def machine_key(device: torch.device) -> str:
    """What the speed of an engine depends on besides the model: host, processor, cores, threads, versions, GPU."""
    from importlib import metadata

    versions = []
    for package in ("torch", *BACKENDS[1:]):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} -")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return "|".join([platform.node(), cpu_model_name(), f"{os.cpu_count()} cpus", f"{torch.get_num_threads()} threads",
                     *versions, gpu])


def probe_tile(normalized_padded: np.ndarray, multiple: tuple[int, ...]) -> np.ndarray:
    """The central window of at most :data:`PROBE_PX` px in Y and X (all of Z), on the size-multiple grid."""
    spatial = normalized_padded.shape[1:]
    sizes = list(spatial[:-2]) + [max(m, min(n, PROBE_PX) // m * m) for n, m in zip(spatial[-2:], multiple[-2:])]
    starts = list((0,) * (len(spatial) - 2)) + [((n - s) // 2) // m * m for n, s, m in
                                               zip(spatial[-2:], sizes[-2:], multiple[-2:])]
    window = (slice(None),) + tuple(slice(a, a + s) for a, s in zip(starts, sizes))
    return np.ascontiguousarray(normalized_padded[window])


def _timed(engine: Engine, probe: np.ndarray) -> tuple[float, np.ndarray]:
    out = engine(probe)  # warm-up: graph compilation, allocator, caches
    best = np.inf
    for _ in range(PROBE_REPEATS):
        t0 = time.perf_counter()
        out = engine(probe)
        best = min(best, time.perf_counter() - t0)
    return float(best), out


def _read_cache() -> dict:
    path = cache_dir() / CACHE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(key: str, choice: BackendChoice) -> None:
    data = _read_cache()
    data[key] = choice.to_json()
    path = cache_dir() / CACHE_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    except (OSError, UserError):  # a read-only cache folder only costs a new measurement next time
        pass


def choose_engine(bundle: ModelBundle, normalized_padded: np.ndarray, device: torch.device, backend: str = "auto",
                  precision: str = "auto", max_deviation: float = MAX_DEVIATION) -> tuple[Engine, BackendChoice]:
    """The engine to predict with, and why (kept on the bundle: one choice and one engine per request).

    Parameters
    ----------
    bundle : ModelBundle
        The model.
    normalized_padded : numpy.ndarray
        The first image to predict, normalised and padded to the size multiple, ``(C, [Z,] Y, X)``; its central
        window is the probe.
    device : torch.device
        Where to run.
    backend, precision : str
        ``auto`` or one of :data:`~virtualstain.inference.engines.BACKENDS` /
        :data:`~virtualstain.inference.engines.PRECISIONS`; naming both skips the measurement.
    max_deviation : float
        Largest allowed deviation from fp32 torch on the probe, as a fraction of the reference's range.

    Raises
    ------
    UserError
        An unknown backend or precision, or an engine asked for outright that cannot run here.
    """
    request = (backend, precision, str(device), float(max_deviation))
    kept = bundle.runners.pop(request, None)
    if kept is not None:
        bundle.runners[request] = kept  # the most recently used request comes last (last_choice)
        return kept
    if backend != "auto" and precision != "auto":
        spec = EngineSpec(backend, precision, str(device))
        engine = build_engine(bundle, spec)
        result = engine, BackendChoice(spec, f"as asked (--backend {backend} --precision {precision})",
                                       max_deviation=max_deviation)
    else:
        result = _measured_choice(bundle, normalized_padded, device, backend, precision, max_deviation)
    bundle.runners[request] = result
    return result


def _measured_choice(bundle: ModelBundle, normalized_padded: np.ndarray, device: torch.device, backend: str,
                     precision: str, max_deviation: float) -> tuple[Engine, BackendChoice]:
    specs = [s for s in candidate_specs(device) if backend in ("auto", s.backend) and precision in ("auto", s.precision)]
    key = "|".join([model_key(bundle), machine_key(device), backend, precision, f"{max_deviation:g}"])
    cached = _read_cache().get(key)
    if cached:
        try:
            choice = BackendChoice.from_json(cached)
            return build_engine(bundle, choice.spec), choice
        except (UserError, KeyError, TypeError, ValueError):
            pass  # a backend uninstalled since, or an unreadable entry: measure again
    probe = probe_tile(normalized_padded, bundle.config.size_multiple())
    reference_spec = EngineSpec("torch", "fp32", str(device))
    ref_seconds, ref = _timed(build_engine(bundle, reference_spec), probe)
    span = float(ref.max() - ref.min()) or 1.0
    results, engines = [], {}
    if reference_spec in specs or not specs:
        results.append(CandidateResult(reference_spec, ref_seconds, 0.0, True, "the reference"))
    for spec in specs:
        if spec == reference_spec:
            continue
        try:
            engine = build_engine(bundle, spec)
            seconds, out = _timed(engine, probe)
        except UserError as exc:
            results.append(CandidateResult(spec, note=str(exc)))
            continue
        except Exception as exc:  # a backend that cannot compile or run this graph is skipped, with its error
            results.append(CandidateResult(spec, note=f"failed: {type(exc).__name__}: {str(exc)[:200]}"))
            continue
        deviation = float(np.abs(out - ref).max() / span) if out.shape == ref.shape else float("inf")
        results.append(CandidateResult(spec, seconds, deviation, deviation <= max_deviation))
        engines[spec] = engine
    passing = [r for r in results if r.passed and r.seconds is not None]
    if not passing:
        tried = "; ".join(f"{r.spec}: {r.note or f'deviation {r.deviation:.1e}'}" for r in results)
        raise UserError(f"--backend {backend} --precision {precision}: no engine here matches fp32 torch within "
                        f"{max_deviation:g} of the output range ({tried}); use --backend auto --precision auto, raise "
                        "--max-deviation, or name the backend and precision to use them without the check")
    best = min(passing, key=lambda r: r.seconds or np.inf)
    ratio = ref_seconds / best.seconds if best.seconds else 1.0
    slower = [r for r in results if r.seconds and not r.passed and r.seconds < (best.seconds or 0)]
    reason = (f"the fastest passing engine on the probe, {ratio:.2f}× fp32 torch, deviation {best.deviation:.1e}"
              if best.spec != reference_spec else "the fp32 torch reference was fastest")
    if slower:
        reason += "; faster but too far from fp32: " + ", ".join(f"{r.spec} ({r.deviation:.1e})" for r in slower)
    choice = BackendChoice(best.spec, reason, tuple(results), tuple(probe.shape[1:]), max_deviation)
    _write_cache(key, choice)
    engine = engines.get(best.spec) or build_engine(bundle, best.spec)
    return engine, choice


def last_choice(bundle: ModelBundle) -> BackendChoice | None:
    """The backend choice of ``bundle``'s most recent prediction in this process (None before any prediction)."""
    choices = [value[1] for value in bundle.runners.values() if isinstance(value, tuple)]
    return choices[-1] if choices else None
