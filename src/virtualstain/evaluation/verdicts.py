"""Plain-language verdicts on an evaluation summary, one per readout, each with a status.

Status thresholds (documented so a reader can disagree with them):

=================  =======================  =========================  ========
readout            good                     caution                    poor
=================  =======================  =========================  ========
Pearson r          median r ≥ 0.8           ≥ 0.6                      below
SSIM               mean ≥ 0.8               ≥ 0.5                      below
object counts      |error| ≤ 5 %, F1 ≥ 0.85  |error| ≤ 15 %, F1 ≥ 0.7  otherwise
centroids          median ≤ 1 µm (2 px)     ≤ 2 µm (4 px)              above
areas              median ratio within 10 %  within 25 %               beyond
=================  =======================  =========================  ========

The count rule follows FRM's practice of judging virtual nuclei by the counts they give; 5 % is about the
disagreement between two careful human counts of a dense field. VirFluoNet's tolerance index and its 50/255
error area are stated in the structure verdict without a grade of their own: the paper gives no threshold
for them.
"""

from __future__ import annotations

import math

from .types import ChannelSummary, ObjectSummary, Verdict

STATUSES = ("good", "caution", "poor", "undefined")


def _ok(value: float) -> bool:
    return math.isfinite(value)


def _grade(value: float, good: float, caution: float, higher_is_better: bool = True) -> str:
    if not higher_is_better:
        value, good, caution = -value, -good, -caution
    return "good" if value >= good else "caution" if value >= caution else "poor"


def _intensity(name: str, s: ChannelSummary) -> list[Verdict]:
    r, base = s.pearson_r_median, s.baseline_pearson_r_mean
    if not _ok(r):
        return [Verdict("intensity", "undefined", f"Pearson r is not defined for any {name} image "
                        "(constant target or prediction).")]
    word = {"good": "closely", "caution": "moderately", "poor": "poorly"}[_grade(r, 0.8, 0.6)]
    text = f"Pixel intensities follow the real {name} stain {word}: Pearson r = {r:.2f} (median of {s.n_images} image(s)"
    text += f"; FRM accuracy score P = {s.accuracy_score_p:.2f})." if _ok(s.accuracy_score_p) else ")."
    if _ok(base):
        text += f" The label-free input alone reaches r = {base:.2f}, so the model adds {r - base:+.2f}."
    out = [Verdict("intensity", _grade(r, 0.8, 0.6), text)]
    if _ok(s.ssim_mean):
        out.append(Verdict("structure", _grade(s.ssim_mean, 0.8, 0.5),
                           f"Local structure: SSIM = {s.ssim_mean:.2f} (1 is a perfect copy), NRMSE = {s.nrmse_mean:.3f} "
                           "of the target's range." + _tolerance_text(s)))
    return out


def _tolerance_text(s: ChannelSummary) -> str:
    """VirFluoNet's tolerance level and error area, as a sentence (empty where undefined)."""
    curve = s.tolerance_curve
    if curve is None:
        return ""
    return (f" VirFluoNet's tolerance index TL = {curve.tolerance_level:.3f} (intensity + spatial error, smallest at "
            f"a tolerance of {curve.best_threshold * 100:.0f} % of the range); errors above 50/255 of the range "
            f"cover {s.error_area_fraction_mean * 100:.1f} % of the pixels.")


def _counts(adjective: str, o: ObjectSummary) -> Verdict:
    err, f1 = o.count_error_total, o.f1_mean
    if abs(err) <= 0.05 and _ok(f1) and f1 >= 0.85:
        status = "good"
    elif abs(err) <= 0.15 and _ok(f1) and f1 >= 0.7:
        status = "caution"
    else:
        status = "poor"
    direction = "virtual overcounts" if err > 0 else "virtual undercounts" if err < 0 else "same number"
    return Verdict("counts", status, f"{adjective.capitalize()} counts within {abs(err) * 100:.1f} % of the real stain "
                   f"({o.count_prediction_total} virtual vs {o.count_target_total} real; {direction}"
                   f"); F1 at IoU 0.5 = {f1:.2f}.")


def _positions(adjective: str, o: ObjectSummary, unit: str) -> Verdict:
    disp, scale = o.displacement_median, 1.0 if unit == "µm" else 2.0
    return Verdict("positions", _grade(disp, scale, 2 * scale, higher_is_better=False),
                   f"Matched {adjective} centroids lie within {disp:.2f} {unit} of the real ones (median; 90 % "
                   f"within {o.displacement_p90:.2f} {unit}, {o.matched} matched).")


def _areas(noun: str, o: ObjectSummary, unit: str) -> Verdict:
    ratio = o.area_ratio_median
    size = f"{abs(ratio - 1) * 100:.0f} % {'larger' if ratio > 1 else 'smaller'} than" if round(abs(ratio - 1), 2) \
        else "the same size as"
    area_unit = "µm²" if unit == "µm" else "px²"
    return Verdict("areas", _grade(abs(ratio - 1), 0.10, 0.25, higher_is_better=False),
                   f"Virtual {noun} are {size} the real ones (median area ratio {ratio:.2f}; median areas "
                   f"{o.area_prediction_median:.0f} vs {o.area_target_median:.0f} {area_unit}).")


def _objects(name: str, readout: str, o: ObjectSummary, unit: str) -> list[Verdict]:
    noun, adjective = ("nuclei", "nuclei") if readout == "nuclei" else ("cells", "cell")
    if not o.count_target_total:
        return [Verdict("counts", "undefined", f"No {noun} were found in the real {name} stain, so count, position "
                        "and area errors are not defined.")]
    out = [_counts(adjective, o)]
    if _ok(o.displacement_median):
        out += [_positions(adjective, o, unit), _areas(noun, o, unit)]
    return out


def verdicts(name: str, summary: ChannelSummary, unit: str = "µm") -> list[Verdict]:
    """Verdicts for one channel's summary (see :func:`~virtualstain.evaluation.summary.summarise_channel`).

    Parameters
    ----------
    name : str
        The channel, as the sentences name it.
    summary : ChannelSummary
        Its pooled scores; object verdicts only where it has an object readout (``summary.objects``).
    unit : {"µm", "px"}
        The unit of its lengths.

    Returns
    -------
    list of Verdict
        ``readout`` (intensity, structure, counts, positions, areas), ``status`` (one of :data:`STATUSES`) and
        ``text``, a sentence with the numbers behind it.
    """
    out = _intensity(name, summary)
    if summary.objects is not None:
        out += _objects(name, summary.readout, summary.objects, unit)
    return out
