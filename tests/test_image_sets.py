"""Image inputs of a flow (``as_unit_images``) and the classification data sets with their OOD sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayes_diglm.data import ClassificationData, as_unit_images, load_classification_data
from bayes_diglm.experiments import classification


def test_uint8_pixels_become_unit_floats_with_a_channel_axis():
    pixels = np.array([[[0, 51], [255, 102]]], dtype=np.uint8)
    out = as_unit_images(pixels)
    assert out.dtype == torch.float32 and out.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(out.numpy().ravel(), [0.0, 0.2, 1.0, 0.4], rtol=1e-7)
    floats = np.full((2, 3, 4, 4), 0.5, dtype=np.float64)
    assert as_unit_images(floats).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("images, error, match", [
    (np.zeros((2, 4)), ValueError, "shape"),
    (np.zeros((2, 4, 4), dtype=np.int64), TypeError, "dtype int64"),
    (np.full((2, 4, 4), 1.5), ValueError, r"\[0, 1\]"),
    (np.full((2, 4, 4), np.nan), ValueError, "finite"),
])
def test_other_inputs_are_refused_by_name(images, error, match):
    with pytest.raises(error, match=match):
        as_unit_images(images, "my_images")
    with pytest.raises(error, match="my_images"):
        as_unit_images(images, "my_images")


def test_the_experiment_takes_the_data_sets_from_the_data_package():
    assert classification.ClassificationData is ClassificationData
    assert classification.load_classification_data is load_classification_data
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_classification_data(dataset="cifar10")
