"""How far to trust the judge's ruler: what the nuclei segmenters score on reference data, as the report states it.

The scores are the ones recorded for virtualstain's segmenters in ``virtualstain/weights/nuclei/scores.json``,
copied from the shipped segmenter's ``MODEL_CARD.md`` (measured by ``benchmarks/bench_segmenter.py`` on manual
instance labels the learned segmenter never saw, no pixel size given to either method). They are read here,
never re-measured. A segmenter with no recorded scores (cellpose) is said to have none.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The recorded scores, next to the shipped segmenter's model card.
SCORES_FILE = Path(__file__).resolve().parents[1] / "weights" / "nuclei" / "scores.json"
#: How each nuclei segmenter works, in words.
DESCRIPTIONS = {
    "classical": "the classical method (threshold and distance-transform watershed)",
    "learned": "the learned segmenter shipped with virtualstain (a U-Net sized to each image's nuclei)",
    "cellpose": "cellpose's nuclei model (sized to each image's nuclei)",
}


@dataclass(frozen=True)
class ReferenceScore:
    """One segmenter on one reference set.

    Attributes
    ----------
    reference_set : str
        Its name, as in the model card.
    f1 : float
        F1 at IoU 0.5 per image, averaged over the set.
    mean_abs_count_error, pooled_count_error : float
        Mean over images of |found − labelled| / labelled, and (found − labelled) / labelled over the set
        (fractions, signed for the pooled one).
    """

    reference_set: str
    f1: float
    mean_abs_count_error: float
    pooled_count_error: float

    def words(self) -> str:
        """``"F1 0.857 on bbbc039 (10 held out), count error −12.2 %"``."""
        return f"F1 {self.f1:.3f} on {self.reference_set}, count error {signed_percent(self.pooled_count_error)}"


@dataclass(frozen=True)
class RulerScores:
    """A nuclei segmenter and its recorded scores on reference data (none: not measured).

    Attributes
    ----------
    method : str
        ``"classical"``, ``"learned"`` or ``"cellpose"``.
    scores : tuple of ReferenceScore
        One per reference set, in the model card's order; empty when none are recorded.
    source : str
        Where the numbers come from.
    """

    method: str
    scores: tuple[ReferenceScore, ...]
    source: str

    def statement(self) -> str:
        """One sentence: what this ruler scores on reference data, or that no scores are recorded."""
        what = DESCRIPTIONS.get(self.method, self.method)
        if not self.scores:
            return (f"No accuracy on reference data is recorded for {what}: virtualstain has not measured it on its "
                    "reference sets (benchmarks/bench_segmenter.py scores the classical and the learned method), so "
                    "how far it can be trusted on these images is not known.")
        return (f"On manual labels the shipped segmenter never saw ({self.source}; no pixel size given), {what} scores "
                + "; ".join(s.words() for s in self.scores) + " (F1 at IoU 0.5; count error pooled over each set).")


def signed_percent(fraction: float) -> str:
    """``-0.122`` → ``"−12.2 %"``, ``0.014`` → ``"+1.4 %"``."""
    return f"{fraction * 100:+.1f} %".replace("-", "−")


@functools.lru_cache(maxsize=4)
def _recorded(path: Path) -> dict[str, Any]:
    """The scores file's content; empty when it is missing or unreadable (an incomplete install)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def ruler_scores(method: str, path: Path = SCORES_FILE) -> RulerScores:
    """The recorded scores of nuclei segmenter ``method`` (see the module docstring)."""
    recorded = _recorded(path)
    entries = recorded.get("methods", {}).get(method, [])
    source = str(recorded.get("source", f"{path.name} not found"))
    return RulerScores(method, tuple(ReferenceScore(**entry) for entry in entries), source)
