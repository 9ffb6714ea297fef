"""Image metrics (numpy / scipy / scikit-image only; no torch). Each function states its formula."""

from .checkerboard import nyquist_power_ratio, nyquist_power_share
from .correlation import AccuracyScore, accuracy_score, has_signal, pearson_r, segmentation_pcc, signal_threshold, tiles
from .noise import noise_ceiling, noise_variance
from .phase import phase_scores
from .pixel import mae, mse, nrmse, psnr, ssim
from .profiles import joint_histogram, line_profiles
from .tolerance import ToleranceIndex, tolerance_index

__all__ = ["AccuracyScore", "ToleranceIndex", "accuracy_score", "has_signal", "joint_histogram", "line_profiles", "mae", "mse",
           "noise_ceiling", "noise_variance", "nrmse", "nyquist_power_ratio", "nyquist_power_share", "pearson_r",
           "phase_scores", "psnr", "segmentation_pcc", "signal_threshold", "ssim", "tiles", "tolerance_index"]
