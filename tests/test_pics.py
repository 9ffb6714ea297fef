"""PICS readout: compartment dry mass from real vs virtual nuclear stains."""

import numpy as np
import pytest
from scipy import ndimage

from virtualstain.analysis.compartments import compartment_agreement
from virtualstain.optics import sphere_phase


def _field():
    phase = np.zeros((96, 96))
    stain = np.zeros((96, 96))
    for cy, cx in ((24, 24), (24, 70), (70, 30), (70, 72)):
        phase += sphere_phase((96, 96), radius_um=7.0, delta_n=0.01, wavelength_um=0.55, pixel_size_um=0.5,
                              center_px=(cy, cx))  # cell body
        nucleus = sphere_phase((96, 96), radius_um=3.0, delta_n=0.03, wavelength_um=0.55, pixel_size_um=0.5,
                               center_px=(cy, cx))
        phase += nucleus
        stain += nucleus > 0
    return phase, ndimage.gaussian_filter(stain, 0.7)


def test_identical_stains_agree_exactly_and_larger_virtual_nuclei_shift_mass():
    phase, stain = _field()
    kw = dict(pixel_size_um=0.5, wavelength_um=0.55)
    same = compartment_agreement([phase], [stain], [stain.copy()], **kw)
    assert same.matched_nuclei == 4 and same.nucleus_mass_median_error == 0.0
    assert same.total_nucleus_error == 0.0 and same.total_cytoplasm_error == 0.0
    assert same.nc_ratio_real == same.nc_ratio_virtual > 0
    bigger = ndimage.grey_dilation(stain, size=5)  # the virtual stain draws nuclei too large
    shifted = compartment_agreement([phase], [stain], [bigger], **kw)
    assert shifted.total_nucleus_error > 0.05 and shifted.total_cytoplasm_error < 0
    cells_total = shifted.real[0].nucleus_pg + shifted.real[0].cytoplasm_pg
    virtual_total = shifted.virtual[0].nucleus_pg + shifted.virtual[0].cytoplasm_pg
    assert virtual_total == pytest.approx(cells_total)  # the split moves mass, the cells keep it
