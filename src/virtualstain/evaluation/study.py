"""The rows of a training-size / epoch study (``study.csv``): one channel's test readouts after one training step.

Written by :mod:`virtualstain.workflows.stain.study` and drawn by :mod:`virtualstain.report.study`;
:meth:`StudyRow.from_csv` reads a row back when a study resumes, so a finished step is never rerun.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class StudyRow:
    """One fraction of the training data, one epoch count, one channel.

    Attributes
    ----------
    fraction : float
        Share of the training data, in (0, 1].
    train_regions : int
        Training regions used.
    train_megapixels : float
        Their size, 10⁶ pixels.
    epochs_requested, epochs : int
        The epoch count asked for, and the epochs actually trained (fewer when the time budget ran out).
    channel : str
    pearson_r, accuracy_score_p : float
        Mean Pearson r over the test images and FRM's accuracy score P; NaN where undefined.
    count_error, f1 : float or None
        Pooled count error and mean F1 of the object readout; None for a channel without one.
    train_seconds : float
        Training wall time of the fraction's run up to this step, s.
    run : str
        The run folder, relative to the study folder.
    """

    fraction: float
    train_regions: int
    train_megapixels: float
    epochs_requested: int
    epochs: int
    channel: str
    pearson_r: float
    accuracy_score_p: float
    count_error: float | None
    f1: float | None
    train_seconds: float
    run: str

    def csv_row(self) -> dict:
        """The row of ``study.csv`` (None written empty) and of ``study.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_csv(cls, cells: Mapping[str, str]) -> StudyRow:
        """A row of ``study.csv`` as written by :meth:`csv_row` (empty cells are None)."""
        values: dict[str, Any] = {f.name: _PARSE[str(f.type)](cells[f.name]) for f in dataclasses.fields(cls)}
        return cls(**values)


def _optional_float(text: str) -> float | None:
    return float(text) if text != "" else None


#: How a cell is read back, by the field's annotation (annotations are strings here).
_PARSE: dict[str, Callable[[str], Any]] = {"float": float, "int": int, "str": str, "float | None": _optional_float}

#: The columns of ``study.csv``.
STUDY_COLUMNS = [f.name for f in dataclasses.fields(StudyRow)]
