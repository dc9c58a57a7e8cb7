"""The reference equals the insightface package's SCRFD class, run side by side.

Peer: ``insightface.model_zoo.scrfd.SCRFD`` (PyPI ``insightface``), given the same ONNX
file, the same images and input size 640x640, its defaults (score >= 0.5, NMS 0.4).
Tolerance: boxes and landmarks within 1e-3 px, scores within 1e-6 — the peer builds its
own static-shape ONNX Runtime session per input size, whose kernels may differ from
ours in the last bits of the head outputs; with identical head outputs the decode and
NMS are bit-exact (see test_postprocess_bit_exact_on_same_heads).
"""
from __future__ import annotations

import numpy as np
import pytest

from scrfd_ref.detector import Detector
from scrfd_ref.formats.images import read_image

pytestmark = [pytest.mark.peer, pytest.mark.data]

BOX_TOL_PX = 1e-3
SCORE_TOL = 1e-6


@pytest.fixture(scope="module")
def peer_cls(peer):
    return peer.SCRFD


def test_insightface_profile_matches_peer(shared_model, sample_images, peer_cls):
    peer = peer_cls(str(shared_model))
    peer.prepare(-1, input_size=(640, 640))
    ours = Detector(shared_model, profile="insightface", input_size=(640, 640))
    total = 0
    for path in sample_images:
        image = read_image(path)
        want_det, want_kps = peer.detect(image, input_size=(640, 640))
        got = ours.detect(image)
        assert len(got) == len(want_det), f"{path.name}: {len(got)} faces, peer {len(want_det)}"
        # same order: scores descending in both, compared position by position
        np.testing.assert_allclose(got.boxes, want_det[:, :4], rtol=0, atol=BOX_TOL_PX,
                                   err_msg=f"boxes differ on {path.name}")
        np.testing.assert_allclose(got.scores, want_det[:, 4], rtol=0, atol=SCORE_TOL,
                                   err_msg=f"scores differ on {path.name}")
        assert (want_kps is None) == (got.landmarks is None)
        if want_kps is not None:
            np.testing.assert_allclose(got.landmarks, want_kps, rtol=0, atol=BOX_TOL_PX,
                                       err_msg=f"landmarks differ on {path.name}")
        total += len(got)
    assert total >= len(sample_images) // 2, "the peer comparison saw almost no faces"


def test_postprocess_bit_exact_on_same_heads(data_root, need, sample_images, peer_cls):
    """Fed the very same head outputs and blob, decode + NMS equal the peer bit for bit,
    also at the widerface-eval thresholds (0.02 / 0.45) where thousands of candidates
    go through NMS."""
    from scrfd_ref.core.preprocess import Transform, preprocess
    from scrfd_ref.core.profiles import get_profile

    model = need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    for thr, nms_thr in ((0.5, 0.4), (0.02, 0.45)):
        prof = get_profile("insightface", score_thr=thr, nms_thr=nms_thr)
        ours = Detector(model, profile=prof)
        peer = peer_cls(str(model))
        peer.prepare(-1, input_size=(640, 640), det_thresh=thr, nms_thresh=nms_thr)
        for path in sample_images[::4]:
            blob, _ = preprocess([read_image(path)], prof)
            outs = ours.backend.run(blob)
            fake = type("Replay", (), {"run": lambda self, names, feed: outs})()
            peer._session_for_input_size = lambda size: fake
            peer._prepare_input_blob = lambda img, size: blob
            canvas = np.zeros((640, 640, 3), np.uint8)  # same size: peer scale is 1
            want_det, want_kps = peer.detect(canvas, input_size=(640, 640))
            got = ours.detections_from_heads(ours.heads(blob),
                                             [Transform(640, 640, 640, 640, 640, 640, 1.0, 1.0)])[0]
            assert np.array_equal(got.boxes, want_det[:, :4]), path.name
            assert np.array_equal(got.scores, want_det[:, 4]), path.name
            assert np.array_equal(got.landmarks, want_kps), path.name


def test_blob_equals_peer_blob(sample_images, data_root, need, peer_cls):
    """The insightface letterbox + normalisation is reproduced bit for bit."""
    from scrfd_ref.core.preprocess import preprocess
    from scrfd_ref.core.profiles import get_profile

    model = need(data_root / "models" / "scrfd_500m_bnkps_dynamic.onnx", "model file")
    peer = peer_cls(str(model))
    seen = {}
    real_session = peer._session_for_input_size

    def recording(size):
        session = real_session(size)

        class Rec:
            def run(self, names, feed):
                seen["blob"] = next(iter(feed.values()))
                return session.run(names, feed)
        return Rec()

    peer._session_for_input_size = recording
    for size in ((640, 640), (640, 480), (320, 320)):
        prof = get_profile("insightface", input_size=size)
        for path in sample_images[:6]:
            image = read_image(path)
            peer.detect(image, input_size=size)
            blob, _ = preprocess([image], prof)
            assert np.array_equal(blob, seen["blob"]), f"{path.name} at {size}"
