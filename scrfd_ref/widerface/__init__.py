"""WIDER FACE: official-protocol evaluation, PR-curve plots, dataset runs.

* :mod:`scrfd_ref.widerface.evaluate`: ``evaluate``, ``evaluate_dir``, ``WiderResult``
  (AP for easy / medium / hard, bit-identical to the official Python port); its data
  types live in :mod:`scrfd_ref.widerface.result`;
* :mod:`scrfd_ref.widerface.bootstrap`: confidence intervals of an AP and of the delta /
  ratio of two prediction sets on the same images (paired image bootstrap), over the
  weighted-sum engine of :mod:`scrfd_ref.widerface.resample`;
* :mod:`scrfd_ref.widerface.slices` and :mod:`scrfd_ref.widerface.slice_eval`: slices by
  WIDER FACE face label (blur, expression, illumination, occlusion, pose) and scale, each an
  extra setting of the official protocol; ``evaluate_slices`` and ``paired_slices`` (AP and
  recall at the operating point per slice, paired with Bonferroni-corrected intervals);
* :mod:`scrfd_ref.widerface.plot`: ``plot_pr_curves`` (needs matplotlib);
* :mod:`scrfd_ref.widerface.run`: running a detector over the val images.

Import from the modules (``from scrfd_ref.widerface.evaluate import evaluate``); the
package re-exports nothing, so the name ``evaluate`` always means the module here.

May import ``core``, ``formats``, ``backends`` and ``detector``; it knows nothing of gates.
"""
from __future__ import annotations
