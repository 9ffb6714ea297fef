"""fnet's noise ceiling: the best Pearson r any model can reach against a noisy target.

With target T = S + N (predictable signal S, unpredictable noise N), the best model outputs S and
C_max = corr(T, S) = sqrt(SNR / (1 + SNR)), SNR = ⟨S²⟩ / ⟨N²⟩ (fluctuations about the mean).
⟨N²⟩ comes from images of unlabelled samples taken with the same settings, when given; otherwise
from scikit-image's wavelet estimate of Gaussian noise σ in the target (``estimate_sigma``).
⟨S²⟩ = var(T) − ⟨N²⟩.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.restoration import estimate_sigma


def noise_variance(target: np.ndarray, noise_images: Sequence[np.ndarray] | None = None) -> float:
    """⟨N²⟩: the pooled variance of unlabelled ``noise_images``, else the wavelet estimate σ² of ``target``."""
    if noise_images:
        return float(np.mean([np.var(np.asarray(n, np.float64)) for n in noise_images]))
    return float(estimate_sigma(np.asarray(target, np.float64), channel_axis=None) ** 2)


def noise_ceiling(target: np.ndarray, noise_images: Sequence[np.ndarray] | None = None) -> float:
    """C_max = sqrt(SNR / (1 + SNR)) for ``target``; 0 when the noise explains all its variance."""
    t = np.asarray(target, np.float64)
    n2 = noise_variance(t, noise_images)
    s2 = max(float(np.var(t)) - n2, 0.0)
    if n2 == 0:
        return 1.0
    snr = s2 / n2
    return float(np.sqrt(snr / (1.0 + snr)))
