"""``diagnose_predictions(shared=...)``: diagnosing several devices on the same images reuses
the reference's candidates per preprocessing instead of running the model again, and gives
the same diagnosis as a fresh start."""
from __future__ import annotations

import pytest

from scrfd_ref.backends import get_backend
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.diagnose.predictions import ReferenceRuns, diagnose_predictions
from scrfd_ref.formats.dataset import list_images

pytestmark = pytest.mark.data


class CountingBackend:
    """A backend wrapper that counts inferences."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, *args, **kwargs):
        self.calls += 1
        return self.inner.run(*args, **kwargs)


def test_a_shared_dict_gives_the_same_diagnosis_with_fewer_inferences(variant_file,
                                                                       wider_images_dir):
    model = variant_file("500m_bnkps").with_name("scrfd_500m_bnkps_dynamic.onnx")
    items = sorted(list_images(wider_images_dir, ["19--Couple"]), key=lambda i: i.name)[:2]
    claimed = get_profile("widerface-eval")
    with get_backend("ort", model) as inner:
        device = ReferenceRuns(inner, items, 0.001).rows(claimed.replace(nms_thr=0.3))
        backend = CountingBackend(inner)
        fresh = diagnose_predictions(backend, items, device, claimed, min_gain_db=3.0)[0]
        alone = backend.calls
        shared: dict = {}
        first = diagnose_predictions(backend, items, device, claimed, min_gain_db=3.0,
                                     shared=shared)[0]
        before = backend.calls
        second = diagnose_predictions(backend, items, device, claimed, min_gain_db=3.0,
                                      shared=shared)[0]
    assert fresh.lines() == first.lines() == second.lines()
    assert [c.name for c in fresh.causes][:1] == ["nms"]
    assert alone > 0 and backend.calls == before, "the second diagnosis ran the model again"
