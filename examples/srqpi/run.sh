#!/usr/bin/env bash
# The DL-SRQPI study of the README: simulate pairs, train sr_unet (one defocus, the z range, the S range)
# and SRCNN, then judge them on held-out cells against the TIE baselines.
#     bash examples/srqpi/run.sh OUT [../shared/data]      (≈ 2 h on 2 CPU cores)
set -euo pipefail
out=${1:?give an output folder}
data=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
optics="--wavelength-um 0.55 --pixel-size-um 0.65 --na 0.25 --binning 4 --noise 0.01"
mkdir -p "$out" && cd "$out"
# training pairs (synthetic cells; the seed picks the cells, so different seeds never share one)
virtualstain simulate --synthetic 40 --defocus-um 5 --coherence 0.2 --seed 0 $optics --out z5
virtualstain simulate --synthetic 24 --defocus-um 1:13:2 --coherence 0.2 --seed 1 $optics --out zall
virtualstain simulate --synthetic 24 --defocus-um 5 --coherence 0:0.4 --seed 2 $optics --out sall
# held-out cells
virtualstain simulate --synthetic 6 --defocus-um 1:13 --coherence 0.2 --seed 100 $optics --out test_z
virtualstain simulate --synthetic 6 --defocus-um 5 --coherence 0:0.4 --seed 101 $optics --out test_s
virtualstain train z5/manifest.csv --config "$here/sr_unet.yaml" --out run_z5 --max-minutes 28
virtualstain train z5/manifest.csv --config "$here/srcnn.yaml" --out run_srcnn --max-minutes 17
virtualstain train zall/manifest.csv --config "$here/sr_unet.yaml" --out run_zall --max-minutes 14
virtualstain train sall/manifest.csv --config "$here/sr_unet.yaml" --out run_sall --max-minutes 10
(head -1 test_z/manifest.csv; grep "_z5_" test_z/manifest.csv) > test_z/manifest_z5.csv
virtualstain evaluate-sr test_z/manifest_z5.csv --model sr_unet=run_z5/model --model srcnn=run_srcnn/model --out judged_z5
virtualstain evaluate-sr test_z/manifest.csv --model sr_unet_z5=run_z5/model --model sr_unet_z1-13=run_zall/model \
    --out judged_z
virtualstain evaluate-sr test_s/manifest.csv --model sr_unet_s0.2=run_z5/model --model sr_unet_s0-0.4=run_sall/model \
    --out judged_s
if [ -n "$data" ]; then  # the two real phase maps (HL60 hologram, QLSI bead), imaged like the test cells
  python "$here/real_phase_maps.py" "$data" real
  virtualstain simulate real/hl60.tif real/bead.tif --defocus-um 1:13:2 --coherence 0.2 --seed 300 $optics --out test_real
  virtualstain evaluate-sr test_real/manifest.csv --model sr_unet_z5=run_z5/model --model sr_unet_z1-13=run_zall/model \
      --out judged_real
fi
