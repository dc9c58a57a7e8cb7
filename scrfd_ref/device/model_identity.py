"""Is this file the variant its name says? A model file is what its graph is, not what it is
called: weights saved under another variant's name (1g weights as
``scrfd_500m_bnkps.onnx``) would run as that variant, and a landmark variant would then
report ``landmarks: null`` with exit 0.

:func:`variant_problem` reads the heads from the graph (:func:`~scrfd_ref.device.onnx_tools.
find_heads`) and compares them with what the variant has: three strides of score and box
heads, and landmark heads exactly for the ``_bnkps`` variants. Variants with the same heads
(500m, 1g, 2.5g, 10g, 34g; or the three ``_bnkps``) cannot be told apart this way; the
file's name then stays the only evidence, and reports name the file and its sha256.
"""
from __future__ import annotations

from pathlib import Path

from scrfd_ref.core.errors import InputError
from scrfd_ref.formats.datadir import VARIANTS


def variant_problem(model: str | Path, variant: str) -> str | None:
    """Why ``model``'s graph is not a ``variant`` (None when its heads fit it).

    Raises:
        InputError: the file is not a readable SCRFD model (from head finding).
    """
    from scrfd_ref.device.onnx_tools import find_heads

    spec = VARIANTS.get(variant)
    if spec is None:
        return None
    heads = find_heads(model)
    kinds = {(h.kind, h.stride) for h in heads}
    has_kps = any(k == "kps" for k, _ in kinds)
    if has_kps != spec.landmarks:
        looks = ("a variant with landmark heads (500m_bnkps, 2.5g_bnkps, 10g_bnkps)"
                 if has_kps else "a variant without landmark heads (500m, 1g, 2.5g, 10g, 34g)")
        return (f"{Path(model).name} is named as SCRFD {variant} but its graph is "
                f"{looks}: {len(heads)} heads, landmarks {'present' if has_kps else 'absent'}")
    return None


def check_variant(model: str | Path, variant: str) -> None:
    """Raise :class:`InputError` when ``model`` is not the ``variant`` its name says."""
    problem = variant_problem(model, variant)
    if problem:
        raise InputError(f"{problem}; put the right weights under that name, or pass the "
                         "file's path instead of the variant name")
