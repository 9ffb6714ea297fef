"""Images of another pixel size are resampled to the model's grid and the prediction back, within bounds."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from virtualstain.data.normalization import Normalizer
from virtualstain.errors import UserError
from virtualstain.inference.predict import predict
from virtualstain.inference.rescale import MAX_RESCALE, resample_lateral
from virtualstain.models.bundle import ModelBundle
from virtualstain.models.registry import build, make_config


def _bundle(pixel_size_um=0.2) -> ModelBundle:
    torch.manual_seed(0)
    net = build("pics", make_config("pics", 1, 1, depth=2, base_width=4)).eval()
    return ModelBundle(net, "pics", Normalizer("zscore", [0.0], [1.0]), Normalizer("zscore", [0.0], [1.0]), ["in"],
                       ["out"], pixel_size_um=pixel_size_um)


def _blobs(shape, sigma):
    rng = np.random.default_rng(0)
    return ndimage.gaussian_filter(rng.normal(size=shape), sigma).astype(np.float32)[None] * 10


def test_a_coarser_image_is_predicted_on_the_model_grid_as_by_hand():
    """0.4 µm/px into a 0.2 µm/px model: the same as zooming 2× by hand (scipy), predicting, and zooming back."""
    bundle, image = _bundle(), _blobs((60, 52), 3)
    auto = predict(bundle, image, pixel_size_um=0.4)
    assert auto.shape == image.shape
    fine = ndimage.zoom(image[0], 2, order=1)[None]
    by_hand = ndimage.zoom(predict(bundle, fine, pixel_size_um=0.2)[0], 0.5, order=1)
    r = np.corrcoef(auto[0].ravel(), by_hand.ravel())[0, 1]
    assert r > 0.99
    naive = predict(bundle, image, pixel_size_um=0.2)  # the same pixels claimed to be at the model's size
    assert np.abs(auto - naive).max() > 1e-3 * np.ptp(naive)  # the network did see the resampled image


def test_resampling_is_the_identity_at_the_model_pixel_size_and_exact_for_constants():
    bundle, image = _bundle(), _blobs((48, 40), 2)
    assert np.array_equal(predict(bundle, image, pixel_size_um=0.2), predict(bundle, image))
    assert np.array_equal(predict(bundle, image, pixel_size_um=0.2002), predict(bundle, image))  # within tolerance
    flat = np.full((2, 30, 20), 3.5, np.float32)
    assert resample_lateral(flat, (45, 31)).shape == (2, 45, 31) and np.allclose(resample_lateral(flat, (12, 7)), 3.5)


def test_rescaling_beyond_the_bound_or_switched_off_is_refused():
    bundle, image = _bundle(), _blobs((48, 40), 2)
    with pytest.raises(UserError, match=rf"x.tif: pixel size 1 µm is 5× the model's 0.2 µm, beyond the "
                                        rf"{MAX_RESCALE:g}× that resampling may bridge; train a model at this "
                                        "magnification"):
        predict(bundle, image, pixel_size_um=1.0, source="x.tif")
    with pytest.raises(UserError, match=r"x.tif: pixel size 0.3 µm but the model was trained at 0.2 µm; leave "
                                        r"rescaling on \(drop --no-rescale\) to resample by 1.5"):
        predict(bundle, image, pixel_size_um=0.3, source="x.tif", rescale=False)
