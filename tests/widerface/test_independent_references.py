"""The package against sources that share none of its code.

- The ground-truth reader against the official Python port's own reading of the ``.mat``
  files (``tests/helpers/wider_oracle.load_ground_truth_mat``: ``scipy.io.loadmat`` and the port's
  indexing): same events, images, boxes and counted boxes per setting, and the totals the
  data README states (61 events, 3226 images, 39708 boxes).
- The ``widerface-eval`` profile against an independent transcription of insightface's
  WIDER test script (``tests/helpers/insightface_wider_transcript.py``: mmdet resize, pad,
  normalise, clamp, rescale, strict score threshold, mmcv NMS): bit-identical boxes and
  scores, same order, on real images.
"""
from __future__ import annotations

import insightface_wider_transcript as transcript
import numpy as np
import pytest
import wider_oracle as oracle

from scrfd_ref.detector import Detector
from scrfd_ref.formats.ground_truth import SETTINGS, load_ground_truth
from scrfd_ref.formats.images import read_image

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def gt_dir(data_root, need):
    return need(data_root / "widerface" / "ground_truth" / "wider_face_val.mat",
                "WIDER FACE val ground truth").parent


def test_ground_truth_reader_equals_the_official_reading(gt_dir):
    ours = load_ground_truth(gt_dir)
    official = oracle.load_ground_truth_mat(gt_dir)
    assert ours.events == official.events
    assert [img.key for img in ours.images] == [(o.event, o.name) for o in official.images]
    for mine, theirs in zip(ours.images, official.images):
        np.testing.assert_array_equal(mine.boxes, theirs.boxes)
        for s in SETTINGS:
            assert mine.counted[s].tolist() == sorted(set(theirs.counted[s])), (mine.key, s)
    for s in SETTINGS:
        assert ours.num_counted(s) == official.counted_total(s), s
    # the data README's totals (an outside statement of what the files hold)
    assert (len(ours.events), len(ours.images), ours.num_boxes) == (61, 3226, 39708)
    # every setting is a subset of the next harder one, as the official split defines
    for img in ours.images:
        e, m, h = (set(img.counted[s].tolist()) for s in SETTINGS)
        assert e <= m <= h, img.key


@pytest.mark.parametrize("event", ["19--Couple", "4--Dancing"])
def test_widerface_eval_profile_equals_insightface_test_script(event, data_root, need):
    model = need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    folder = need(data_root / "widerface" / "WIDER_val" / "images" / event, "WIDER event")
    ours = Detector(model, profile="widerface-eval")
    session = transcript.make_session(str(model))
    images = sorted(folder.glob("*.jpg"))
    assert images
    for path in images:
        mine = ours.detect(read_image(path))
        theirs = transcript.detect(session, transcript.load_image(str(path)))
        assert mine.boxes.shape[0] == theirs.shape[0], path.name
        np.testing.assert_array_equal(mine.boxes, theirs[:, :4], err_msg=path.name)
        np.testing.assert_array_equal(mine.scores, theirs[:, 4], err_msg=path.name)
