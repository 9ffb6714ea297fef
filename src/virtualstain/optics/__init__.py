"""Optics: propagation, bright-field and fluorescence (defocus) image formation, phase retrieval, focus and
dry mass.

numpy/scipy (and qpretrieve for interferograms) only; no torch. Lengths in µm, phase in
radians, dry mass in pg, refractive increment α in mL/g.
"""

from .camera import add_gaussian_noise, add_poisson_noise, bin_pixels, correct_brightness
from .defocus import blur, blur_pad_px, blur_radius_um, defocus_image, defocus_pupil, intensity_psf, normalize_psf
from .drymass import (
    DEFAULT_ALPHA_ML_PER_G,
    Compartments,
    SphereFit,
    compartment_dry_mass,
    confluence,
    fit_sphere,
    height_from_phase,
    mask_dry_mass,
    object_dry_mass,
    sphere_dry_mass,
    sphere_phase,
    surface_density,
)
from .focus import focus_curve, haar_detail_energy, normalized_variance, select_focus_planes
from .gradient import integrate_gradient
from .growth import GrowthFit, fit_exponential_growth, mass_curves
from .imaging import brightfield_intensity, source_points
from .interferometry import hologram_phase, qlsi_phase, subtract_background
from .phase_shifting import four_frame_modulation, four_frame_phase, slim_phase
from .propagation import angular_spectrum_kernel, propagate, spatial_frequencies
from .tie import IterativeTIE, solve_poisson, tie_phase, tie_phase_iterative

__all__ = [
    "DEFAULT_ALPHA_ML_PER_G", "Compartments", "GrowthFit", "IterativeTIE", "SphereFit",
    "add_gaussian_noise", "add_poisson_noise", "angular_spectrum_kernel", "bin_pixels", "blur", "blur_pad_px",
    "blur_radius_um", "brightfield_intensity", "compartment_dry_mass", "confluence", "correct_brightness",
    "defocus_image", "defocus_pupil", "fit_exponential_growth", "fit_sphere",
    "focus_curve", "four_frame_modulation", "four_frame_phase", "haar_detail_energy", "height_from_phase",
    "hologram_phase", "integrate_gradient", "intensity_psf", "mask_dry_mass", "mass_curves", "normalized_variance",
    "normalize_psf", "object_dry_mass", "propagate", "qlsi_phase", "select_focus_planes", "slim_phase", "solve_poisson",
    "source_points", "spatial_frequencies", "sphere_dry_mass", "sphere_phase", "subtract_background",
    "surface_density", "tie_phase", "tie_phase_iterative",
]
