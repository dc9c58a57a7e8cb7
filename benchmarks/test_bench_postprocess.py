"""Decode + NMS speed on one crowded WIDER image, next to insightface's own numpy code.

Both sides get the same head outputs of ``scrfd_500m_bnkps`` at 640x640 for
``0--Parade/0_Parade_Parade_0_275.jpg`` (thousands of candidates at score >= 0.02),
thresholds 0.02 / 0.45 (the widerface-eval settings). The peer is
``insightface.model_zoo.scrfd.SCRFD.detect`` with its session and blob replaced by the
recorded outputs, so it times its decode loop, sort and NMS only. The ratio is the
``Mean`` column of the ``postprocess-crowded`` group.
"""
from __future__ import annotations

import numpy as np
import pytest

from scrfd_ref.core.decode import decode
from scrfd_ref.core.heads import normalize_heads
from scrfd_ref.core.postprocess import postprocess
from scrfd_ref.core.preprocess import Transform, preprocess
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.detector import Detector
from scrfd_ref.formats.images import read_image

CROWDED = "widerface/WIDER_val/images/0--Parade/0_Parade_Parade_0_275.jpg"
IDENTITY = Transform(640, 640, 640, 640, 640, 640, 1.0, 1.0)


@pytest.fixture(scope="module")
def crowded(data_root, need):
    """(blob, raw outputs) of the crowded image through the 500m_bnkps model."""
    model = need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    image = read_image(need(data_root / CROWDED, "crowded WIDER image"))
    det = Detector(model, profile="widerface-eval")
    blob, _ = preprocess([image], det.profile)
    return model, blob, det.backend.run(blob)


def _ours(outs, profile):
    heads = normalize_heads(outs, profile.input_size)
    return postprocess(decode(heads, profile.score_thr, profile.score_strict)[0], IDENTITY,
                       profile)


@pytest.fixture(scope="module")
def peer_detect(crowded, peer):
    scrfd = peer
    model, blob, outs = crowded
    peer = scrfd.SCRFD(str(model))
    peer.prepare(-1, input_size=(640, 640), det_thresh=0.02, nms_thresh=0.45)
    replay = type("Replay", (), {"run": lambda self, names, feed: outs})()
    peer._session_for_input_size = lambda size: replay
    peer._prepare_input_blob = lambda img, size: blob
    canvas = np.zeros((640, 640, 3), np.uint8)
    return lambda: peer.detect(canvas, input_size=(640, 640))


@pytest.mark.benchmark(group="postprocess-crowded")
def test_bench_decode_nms_insightface(benchmark, crowded, peer_detect):
    det, kps = benchmark(peer_detect)
    benchmark.extra_info["detections"] = int(det.shape[0])
    # the peer's result, checked once against ours (bit-identical under its profile)
    ours = _ours(crowded[2], get_profile("insightface", score_thr=0.02, nms_thr=0.45))
    assert np.array_equal(det[:, :4], ours.boxes) and np.array_equal(det[:, 4], ours.scores)


@pytest.mark.benchmark(group="postprocess-crowded")
def test_bench_decode_nms_scrfd_ref(benchmark, crowded, peer_detect):
    _, _, outs = crowded
    profile = get_profile("insightface", score_thr=0.02, nms_thr=0.45)
    got = benchmark(_ours, outs, profile)
    want, want_kps = peer_detect()
    benchmark.extra_info["detections"] = len(got)
    benchmark.extra_info["candidates"] = len(decode(normalize_heads(outs, (640, 640)), 0.02)[0])
    assert len(got) > 1000, "the crowded case must put thousands of candidates through NMS"
    assert np.array_equal(got.boxes, want[:, :4]) and np.array_equal(got.scores, want[:, 4])
    assert np.array_equal(got.landmarks, want_kps)


@pytest.mark.benchmark(group="postprocess-crowded")
def test_bench_decode_nms_widerface_eval_profile(benchmark, crowded):
    """The published-AP profile itself (clamping to the resized image, float boxes, mmcv
    NMS), checked once against the independent transcription of insightface's WIDER test
    script given the same outputs."""
    import insightface_wider_transcript as transcript

    _, _, outs = crowded
    got = benchmark(_ours, outs, get_profile("widerface-eval"))
    benchmark.extra_info["detections"] = len(got)
    want = transcript.postprocess_outputs(outs, (640, 640), np.ones(4, np.float32), (640, 640))
    assert len(got) > 1000
    assert np.array_equal(got.boxes, want[:, :4]) and np.array_equal(got.scores, want[:, 4])
