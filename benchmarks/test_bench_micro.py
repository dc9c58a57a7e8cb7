"""Micro-benchmarks of the reference's stages, each next to its peer in the same run.

Groups (compare the Mean column within a group):

- ``preprocess``: letterbox + normalise a 1280x720 image to 640x640; peer: the insightface
  package's steps (``cv2.resize``, zero canvas, ``cv2.dnn.blobFromImage``) via its own
  ``_prepare_input_blob``.
- ``decode``: heads -> scored candidates at score >= 0.02 on a crowded image; peer:
  ``SCRFD.forward`` with its session replaced by the recorded outputs.
- ``nms-sparse`` / ``nms-crowded``: NMS alone (Cython kernel, numpy twin, insightface's
  ``SCRFD.nms``) on the candidates of a one-face image (score >= 0.5) and of the crowded
  image (score >= 0.02).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from scrfd_ref.core.decode import decode
from scrfd_ref.core.heads import normalize_heads
from scrfd_ref.core.nms import nms_sorted
from scrfd_ref.core.preprocess import preprocess
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.detector import Detector
from scrfd_ref.formats.images import read_image

CROWDED = "widerface/WIDER_val/images/0--Parade/0_Parade_Parade_0_275.jpg"
ONE_FACE = "images/one_face_1280x720.jpg"


@pytest.fixture(scope="module")
def model(data_root, need):
    return need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")


@pytest.fixture(scope="module")
def peer_scrfd(model, peer):
    p = peer.SCRFD(str(model))
    p.prepare(-1, input_size=(640, 640), det_thresh=0.02, nms_thresh=0.45)
    return p


def _heads_of(model, path, profile):
    det = Detector(model, profile=profile)
    blob, _ = preprocess([read_image(path)], det.profile)
    return blob, det.backend.run(blob)


@pytest.fixture(scope="module")
def crowded(model, data_root, need):
    return _heads_of(model, need(data_root / CROWDED, "crowded image"), "widerface-eval")


@pytest.fixture(scope="module")
def one_face(model, data_root, need):
    return _heads_of(model, need(data_root / ONE_FACE, "sample image"), "insightface")


# ----------------------------------------------------------------------------- preprocess


@pytest.mark.benchmark(group="preprocess")
def test_bench_preprocess_scrfd_ref(benchmark, data_root, need):
    image = read_image(need(data_root / ONE_FACE, "sample image"))
    profile = get_profile("insightface")
    blob, _ = benchmark(preprocess, [image], profile)
    assert blob.shape == (1, 3, 640, 640)


@pytest.mark.benchmark(group="preprocess")
def test_bench_preprocess_insightface(benchmark, data_root, need, peer_scrfd):
    image = read_image(need(data_root / ONE_FACE, "sample image"))

    def peer_steps():  # the peer's own letterbox lines of SCRFD._detect_candidates
        det_img = np.zeros((640, 640, 3), dtype=np.uint8)
        det_img[:360, :640, :] = cv2.resize(image, (640, 360))
        return peer_scrfd._prepare_input_blob(det_img, (640, 640))

    blob = benchmark(peer_steps)
    ours, _ = preprocess([image], get_profile("insightface"))
    assert np.array_equal(blob, ours)


# ----------------------------------------------------------------------------- decode


@pytest.mark.benchmark(group="decode")
def test_bench_decode_scrfd_ref(benchmark, crowded):
    _, outs = crowded
    cands = benchmark(lambda: decode(normalize_heads(outs, (640, 640)), 0.02))
    assert len(cands[0]) > 1000


@pytest.mark.benchmark(group="decode")
def test_bench_decode_insightface(benchmark, crowded, peer_scrfd):
    blob, outs = crowded
    replay = type("Replay", (), {"run": lambda self, names, feed: outs})()
    peer_scrfd._session_for_input_size = lambda size: replay
    peer_scrfd._prepare_input_blob = lambda img, size: blob
    canvas = np.zeros((640, 640, 3), np.uint8)
    scores, boxes, _ = benchmark(peer_scrfd.forward, canvas, 0.02)
    ours = decode(normalize_heads(outs, (640, 640)), 0.02)[0]
    assert sum(len(s) for s in scores) == len(ours)


# ----------------------------------------------------------------------------- NMS


def _pre_det(outs, thr):
    c = decode(normalize_heads(outs, (640, 640)), thr)[0]
    return np.hstack([c.boxes, c.scores[:, None]]).astype(np.float32)


@pytest.mark.parametrize("case", ["sparse", "crowded"])
@pytest.mark.parametrize("impl", ["cython", "numpy", "insightface"])
def test_bench_nms(benchmark, case, impl, crowded, one_face, peer_scrfd):
    outs, thr = (one_face[1], 0.5) if case == "sparse" else (crowded[1], 0.02)
    pre = _pre_det(outs, thr)
    benchmark.group = f"nms-{case}"
    benchmark.extra_info["boxes"] = int(pre.shape[0])
    if impl == "insightface":
        keep = benchmark(peer_scrfd.nms, pre)
    else:
        keep = benchmark(nms_sorted, pre[:, :4], 0.45, use_kernel=impl == "cython")
    assert list(keep) == list(peer_scrfd.nms(pre)), "every NMS must keep the same boxes"
