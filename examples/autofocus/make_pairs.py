"""Autofocus training data from BBBC006: simulated defocus pairs, and the one measured pair as a test.

    python examples/autofocus/make_pairs.py --data-dir ../shared/data --out /tmp/autofocus [--bbbc039 20]

Writes, under OUT:

``synthetic/``  ``virtualstain defocus-pairs`` of the in-focus Hoechst planes of ``bbbc006_focus/infocus``
                (all but well a01 site 1, whose measured pair is the test) and, with ``--bbbc039 N``, the first
                N images of ``bbbc039_nuclei_train``: z −12…+8 µm in 1 µm steps without −2…+2 µm (VirFluoNet;
                ``--z-um`` for another range), one group per field; ``synthetic/manifest.csv`` trains (``virtualstain train``).
``real/``       the registered measured pair of a01 site 1 (defocused plane z index 0 / in-focus plane) scaled
                with the in-focus range like the simulated pairs; ``real/manifest.csv`` tests.

Optics (see README.md for the sources): λ 0.46 µm (Hoechst 33342 emission), NA 0.5 dry (n 1.0), 0.65 µm
pixels; noise σ 0.0006 of each image's range. The script also blurs the a01 in-focus plane to
z = −32 µm with these optics and prints its Pearson r with the measured defocused plane: a check of the
assumed optics on real data. Both manifests are read back with ``read_manifest``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from virtualstain.data.ranges import parse_values
from virtualstain.data.samples import read_manifest
from virtualstain.metrics import pearson_r
from virtualstain.optics import defocus_image
from virtualstain.workflows.focus.defocus_pairs import DefocusSettings, make_defocus_pairs, read_plane
from virtualstain.workflows.focus.real_pairs import RealPair, write_real_pairs

WAVELENGTH_UM = 0.46  # Hoechst 33342 emission peak, 461 nm
NA = 0.5  # 20× dry objective; microscopeimagequality's simulator default for these images
PIXEL_SIZE_UM = 0.65  # 6.45 µm camera pixels, 2× binned, 20×
NOISE = 0.0006  # background noise of the measured a01 planes, as a fraction of the in-focus range
REAL_Z_UM = -32.0  # BBBC006 z index 0 of 32 planes 2 µm apart, best focus at index 16

def settings(z_um: str) -> DefocusSettings:
    """The optics above, z from ``--z-um`` without −2…+2 µm (VirFluoNet)."""
    return DefocusSettings(z_um=parse_values(z_um, "--z-um", 1.0), exclude_um=[-2.0, 2.0], wavelength_um=WAVELENGTH_UM,
                           na=NA, pixel_size_um=PIXEL_SIZE_UM, noise=NOISE, seed=0, channel_name="hoechst")


def real_pair(data_dir: Path) -> RealPair:
    """The registered defocused / in-focus pair of well a01, site 1."""
    focus = data_dir / "bbbc006_focus"
    return RealPair(defocused=next((focus / "defocused").glob("*_a01_s1_*.tif")),
                    in_focus=next((focus / "infocus").glob("*__a01__s1__*.tif")), z_um=REAL_Z_UM)


def check_optics(pair: RealPair) -> tuple[float, float]:
    """Pearson r of the measured defocused plane with the in-focus plane blurred to ``REAL_Z_UM`` by the assumed
    optics, and with the in-focus plane as it is (the baseline)."""
    in_focus = read_plane(pair.in_focus)[0]
    measured = read_plane(pair.defocused)[0]
    simulated = defocus_image(in_focus, REAL_Z_UM, pixel_size_um=PIXEL_SIZE_UM, wavelength_um=WAVELENGTH_UM, na=NA)
    return pearson_r(simulated, measured), pearson_r(in_focus, measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bbbc039", type=int, default=0, help="also use the first N bbbc039_nuclei_train images")
    parser.add_argument("--z-um", default="-12:8", help="defocus range (VirFluoNet: -12:8; -36:8 covers the real pair)")
    args = parser.parse_args()
    pair = real_pair(args.data_dir)
    images = sorted(p for p in (args.data_dir / "bbbc006_focus" / "infocus").glob("*.tif") if p != pair.in_focus)
    images += sorted((args.data_dir / "bbbc039_nuclei_train" / "images").glob("*.tif"))[: args.bbbc039]
    synthetic = make_defocus_pairs(images, args.out / "synthetic", settings(args.z_um), log=print)
    real = write_real_pairs([pair], args.out / "real", pixel_size_um=PIXEL_SIZE_UM, channel_name="hoechst")
    simulated_r, baseline_r = check_optics(pair)
    print(f"optics check: in-focus a01 blurred to z = {REAL_Z_UM:g} µm vs the measured plane: Pearson r = "
          f"{simulated_r:.3f} (the in-focus plane as it is: {baseline_r:.3f})")
    for manifest in (synthetic.manifest, real):
        samples = read_manifest(manifest)
        groups = sorted({s.group for s in samples})
        print(f"{manifest}: {len(samples)} pairs, {len(groups)} group(s), "
              f"input range {min(float(np.min(s.input)) for s in samples):.3f}…"
              f"{max(float(np.max(s.input)) for s in samples):.3f}")


if __name__ == "__main__":
    main()
