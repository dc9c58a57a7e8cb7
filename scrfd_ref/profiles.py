"""Named pre/post-processing settings (profiles).

A profile is data, not code: every choice that differs between the three flows in use
(the insightface package, insightface's WIDER FACE evaluation, the vendor zoo's device
flow) is one field here, and the pipeline reads the fields. See seed-flow.md section 3.

=================  ===============  ==================  ==================
field              insightface      widerface-eval      device-flow
=================  ===============  ==================  ==================
letterbox          insightface      wider               centered
pad_value (pixel)  0                127.5 (0 after      114
                                    normalising)
score_thr (>=)     0.5              0.02                0.5
nms_thr (keep <=)  0.4              0.45                0.45
box_mode           float            clamp_resized       clip_round
=================  ===============  ==================  ==================

Letterbox kinds (``preprocess.letterbox_geometry`` implements them):

- ``insightface``: keep ratio, new size by ``int()`` truncation, top-left placement,
  one scale ``new_h / h`` for both axes (the package's ``det_scale``).
- ``wider``: keep ratio, ``scale = min(W / w, H / h)``, new size rounded half up
  (``int(x * scale + 0.5)``, mmcv), top-left, per-axis scales ``new_w / w``, ``new_h / h``.
- ``centered``: as ``wider`` but centred: offsets ``((W - new_w) // 2, (H - new_h) // 2)``.
- ``stretch``: plain resize to the input size, per-axis scales, no padding.

Box modes (``postprocess.finish_boxes``), applied before NMS:

- ``float``: map back to original pixels, nothing else (insightface package).
- ``clamp_resized``: clamp to the resized image ``[0, new_w] x [0, new_h]`` in input
  coordinates, then map back (mmdet ``distance2bbox(max_shape)`` + rescale).
- ``clip_round``: map back, clip to ``[0, w] x [0, h]`` of the original image, round
  to integers (``np.rint``, half to even) (vendor zoo device flow).

Landmarks are always mapped back to original pixels (the vendor flow leaves them in
input coordinates, a bug the reference does not copy).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import InputError

LETTERBOX_KINDS = ("insightface", "wider", "centered", "stretch")
BOX_MODES = ("float", "clamp_resized", "clip_round")
MAX_NUM_METRICS = ("default", "max")


@dataclass(frozen=True)
class Profile:
    """Every setting that turns an image into final detections, besides the model.

    Attributes:
        name: profile name (``insightface``, ``widerface-eval``, ``device-flow`` or custom).
        input_size: network input ``(width, height)``, both multiples of 32.
        letterbox: one of :data:`LETTERBOX_KINDS`.
        pad_value: padding as a pixel value before normalisation (127.5 pads with 0
            after normalising).
        score_thr: candidates with ``score >= score_thr`` are kept (inclusive).
        nms_thr: greedy "+1" NMS keeps a box when IoU ``<= nms_thr`` with every kept box.
        box_mode: one of :data:`BOX_MODES`.
        max_num: keep at most this many detections by insightface's centre-weighted
            selection after NMS (0 keeps all).
        max_num_metric: ``default`` (area - 2 * squared centre offset) or ``max`` (area).
    """

    name: str
    input_size: tuple[int, int] = (640, 640)
    letterbox: str = "insightface"
    pad_value: float = 0.0
    score_thr: float = 0.5
    nms_thr: float = 0.4
    box_mode: str = "float"
    max_num: int = 0
    max_num_metric: str = "default"

    def __post_init__(self) -> None:
        w, h = self.input_size
        if int(w) != w or int(h) != h or w <= 0 or h <= 0 or w % 32 or h % 32:
            raise InputError(
                f"input size {w}x{h} is not a positive multiple of 32 in both axes "
                "(SCRFD's stride-32 head needs it)")
        if self.letterbox not in LETTERBOX_KINDS:
            raise InputError(f"letterbox {self.letterbox!r} is not one of {LETTERBOX_KINDS}")
        if self.box_mode not in BOX_MODES:
            raise InputError(f"box_mode {self.box_mode!r} is not one of {BOX_MODES}")
        if self.max_num_metric not in MAX_NUM_METRICS:
            raise InputError(f"max_num_metric {self.max_num_metric!r} is not one of {MAX_NUM_METRICS}")
        if not 0.0 <= self.score_thr <= 1.0:
            raise InputError(f"score threshold {self.score_thr} is outside [0, 1]")
        if not 0.0 <= self.nms_thr <= 1.0:
            raise InputError(f"NMS IoU threshold {self.nms_thr} is outside [0, 1]")
        if self.max_num < 0:
            raise InputError(f"max_num {self.max_num} is negative")
        object.__setattr__(self, "input_size", (int(w), int(h)))

    def replace(self, **overrides: Any) -> "Profile":
        """Return a copy with some fields changed; ``None`` values are ignored."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise InputError(f"unknown profile field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """All settings as a JSON-ready dict (input size as ``[w, h]``)."""
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        return d


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("insightface", letterbox="insightface", pad_value=0.0,
                score_thr=0.5, nms_thr=0.4, box_mode="float"),
        Profile("widerface-eval", letterbox="wider", pad_value=127.5,
                score_thr=0.02, nms_thr=0.45, box_mode="clamp_resized"),
        Profile("device-flow", letterbox="centered", pad_value=114.0,
                score_thr=0.5, nms_thr=0.45, box_mode="clip_round"),
    )
}


def get_profile(profile: str | Profile = "insightface", **overrides: Any) -> Profile:
    """Return a named profile (or the given one) with ``overrides`` applied.

    Raises :class:`InputError` for an unknown name or an invalid override.
    """
    if isinstance(profile, Profile):
        base = profile
    else:
        try:
            base = PROFILES[profile]
        except KeyError:
            raise InputError(
                f"unknown profile {profile!r}; known: {', '.join(PROFILES)}") from None
    return base.replace(**overrides)
