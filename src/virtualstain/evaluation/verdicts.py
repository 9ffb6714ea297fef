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
disagreement between two careful human counts of a dense field.
"""

from __future__ import annotations

import math

STATUSES = ("good", "caution", "poor", "undefined")


def _ok(value) -> bool:
    return value is not None and math.isfinite(value)


def _grade(value: float, good: float, caution: float, higher_is_better: bool = True) -> str:
    if not higher_is_better:
        value, good, caution = -value, -good, -caution
    return "good" if value >= good else "caution" if value >= caution else "poor"


def _verdict(readout: str, status: str, text: str) -> dict:
    return {"readout": readout, "status": status, "text": text}


def _intensity(name: str, s: dict) -> list[dict]:
    r, base = s.get("pearson_r_median"), s.get("baseline_pearson_r_mean")
    if not _ok(r):
        return [_verdict("intensity", "undefined", f"Pearson r is not defined for any {name} image "
                         "(constant target or prediction).")]
    word = {"good": "closely", "caution": "moderately", "poor": "poorly"}[_grade(r, 0.8, 0.6)]
    text = f"Pixel intensities follow the real {name} stain {word}: Pearson r = {r:.2f} (median of {s['n_images']} image(s)"
    text += f"; FRM accuracy score P = {s['accuracy_score_p']:.2f})." if _ok(s.get("accuracy_score_p")) else ")."
    if _ok(base):
        text += f" The label-free input alone reaches r = {base:.2f}, so the model adds {r - base:+.2f}."
    out = [_verdict("intensity", _grade(r, 0.8, 0.6), text)]
    if _ok(s.get("ssim_mean")):
        ssim = s["ssim_mean"]
        out.append(_verdict("structure", _grade(ssim, 0.8, 0.5),
                            f"Local structure: SSIM = {ssim:.2f} (1 is a perfect copy), NRMSE = {s['nrmse_mean']:.3f} "
                            "of the target's range."))
    return out


def _objects(name: str, s: dict, unit: str) -> list[dict]:
    noun, adjective = ("nuclei", "nuclei") if s["readout"] == "nuclei" else ("cells", "cell")
    if not s.get("count_target_total"):
        return [_verdict("counts", "undefined", f"No {noun} were found in the real {name} stain, so count, position "
                         "and area errors are not defined.")]
    err, f1 = s["count_error_total"], s["f1_mean"]
    if abs(err) <= 0.05 and _ok(f1) and f1 >= 0.85:
        status = "good"
    elif abs(err) <= 0.15 and _ok(f1) and f1 >= 0.7:
        status = "caution"
    else:
        status = "poor"
    direction = "virtual overcounts" if err > 0 else "virtual undercounts" if err < 0 else "same number"
    out = [_verdict("counts", status,
                    f"{adjective.capitalize()} counts within {abs(err) * 100:.1f} % of the real stain "
                    f"({s['count_prediction_total']} virtual vs {s['count_target_total']} real; {direction}"
                    f"); F1 at IoU 0.5 = {f1:.2f}.")]
    disp = s.get("displacement_median_um")
    if _ok(disp):
        scale = 1.0 if unit == "µm" else 2.0
        out.append(_verdict("positions", _grade(disp, scale, 2 * scale, higher_is_better=False),
                            f"Matched {adjective} centroids lie within {disp:.2f} {unit} of the real ones (median; 90 % "
                            f"within {s['displacement_p90_um']:.2f} {unit}, {s['matched']} matched)."))
        ratio = s["area_ratio_median"]
        size = f"{abs(ratio - 1) * 100:.0f} % {'larger' if ratio > 1 else 'smaller'} than" if round(abs(ratio - 1), 2) \
            else "the same size as"
        area_unit = "µm²" if unit == "µm" else "px²"
        out.append(_verdict("areas", _grade(abs(ratio - 1), 0.10, 0.25, higher_is_better=False),
                            f"Virtual {noun} are {size} the real ones (median area ratio {ratio:.2f}; median areas "
                            f"{s['area_prediction_median_um2']:.0f} vs {s['area_target_median_um2']:.0f} {area_unit})."))
    return out


def verdicts(name: str, summary: dict, unit: str = "µm") -> list[dict]:
    """Verdicts for one channel's summary (see :func:`virtualstain.workflows.evaluate.evaluate_files`).

    Returns
    -------
    list of dict
        ``readout`` (intensity, structure, counts, positions, areas), ``status`` (one of :data:`STATUSES`) and
        ``text``, a sentence with the numbers behind it.
    """
    out = _intensity(name, summary)
    if summary.get("readout", "none") != "none":
        out += _objects(name, summary, unit)
    return out
