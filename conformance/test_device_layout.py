"""The device layout of each real model decodes to the detections of its standard layout.

The device-layout model is cut from the standard export with the onnx library
(``export_device_layout``): raw NCHW maps, scores as logits. Decoding it must give the
standard model's detections: same count and order, boxes and landmarks within 1e-3 px,
scores within 1e-6. Tolerant, not bit-exact: ONNX Runtime optimises the two graphs
differently (the cut graph ends at the conv, or at its scale Mul, instead of a
Transpose/Reshape chain, so fusions differ) and the head values differ in the last ulp;
and the standard graph's sigmoid is ORT's, the device path's is numpy's.
"""
from __future__ import annotations

import numpy as np
import pytest

from scrfd_ref.backends.ort import OrtBackend
from scrfd_ref.detector import Detector
from scrfd_ref.device.export import export_device_layout
from scrfd_ref.formats.images import read_image

pytestmark = pytest.mark.data


@pytest.mark.parametrize("profile", ["insightface", "device-flow"])
def test_device_layout_decodes_like_standard(shared_model, sample_images, profile):
    device_model = export_device_layout(shared_model, input_size=(640, 640))
    std = Detector(shared_model, profile=profile, input_size=(640, 640))
    dev = Detector(OrtBackend(device_model.SerializeToString()), profile=profile)
    assert dev.backend.input_size == (640, 640)
    total = 0
    for path in sample_images:
        image = read_image(path)
        a, b = std.detect(image), dev.detect(image)
        assert len(a) == len(b), path.name
        np.testing.assert_allclose(a.boxes, b.boxes, rtol=0, atol=1e-3, err_msg=path.name)
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-6, err_msg=path.name)
        if a.landmarks is not None:
            np.testing.assert_allclose(a.landmarks, b.landmarks, rtol=0, atol=1e-3,
                                       err_msg=path.name)
        total += len(a)
    assert total > 10
