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
score_thr          >= 0.5           > 0.02 (strict)     >= 0.5
nms_thr            0.4              0.45                0.45
nms_convention     insightface      mmcv                insightface
box_mode           float            clamp_resized       clip_round
=================  ===============  ==================  ==================

NMS conventions (``nms.nms_sorted``): ``insightface`` is the package's "+1" NMS (keep
when IoU <= thr; the device flow uses it too); ``mmcv`` is what insightface's WIDER test
script actually runs (mmdet ``multiclass_nms`` -> mmcv CUDA ``nms(offset=0)``: no "+1",
suppress when ``inter > thr * union``), with mmdet's strict ``score > score_thr``. The
widerface-eval profile reproduces that script bit for bit (checked against an
independent transcription, ``tests/helpers/insightface_wider_transcript.py``).

Letterbox kinds (``preprocess.letterbox_geometry`` implements them):

- ``insightface``: keep ratio, new size by ``int()`` truncation, top-left placement,
  one scale ``new_h / h`` for both axes (the package's ``det_scale``).
- ``wider``: keep ratio, ``scale = min(W / w, H / h)``, new size rounded half up
  (``int(x * scale + 0.5)``, mmcv), top-left, per-axis scales ``new_w / w``, ``new_h / h``.
- ``centered``: as ``wider`` but centred: offsets ``((W - new_w) // 2, (H - new_h) // 2)``.
- ``bottomright``: as ``wider`` but placed at the bottom right: offsets
  ``(W - new_w, H - new_h)``.
- ``stretch``: plain resize to the input size, per-axis scales, no padding.

Pixel preparation (every profile of the three flows uses the defaults: RGB reaches the
model, ``(x - 127.5) / 128``, OpenCV bilinear; a device's vdsp params file can set them):

- ``channel_order``: ``rgb`` or ``bgr``, the order the model receives;
- ``norm``: ``minusmean_divstd`` ``(x - mean) / std``, ``div255_minusmean_divstd``
  ``(x / 255 - mean) / std`` or ``div255`` ``x / 255``, with per-channel ``mean`` and
  ``std`` in the model's channel order;
- ``interpolation``: ``bilinear`` / ``nearest`` / ``bicubic`` / ``lanczos`` / ``area``
  (OpenCV) or ``bilinear_pillow`` / ``bicubic_pillow`` (Pillow's resamplers).

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
import math
from dataclasses import dataclass
from typing import Any

from scrfd_ref.core.errors import InputError

LETTERBOX_KINDS = ("insightface", "wider", "centered", "bottomright", "stretch")
NORM_TYPES = ("minusmean_divstd", "div255_minusmean_divstd", "div255")
CHANNEL_ORDERS = ("rgb", "bgr")
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "lanczos", "area", "bilinear_pillow",
                  "bicubic_pillow")
SCRFD_MEAN = (127.5, 127.5, 127.5)
SCRFD_STD = (128.0, 128.0, 128.0)
BOX_MODES = ("float", "clamp_resized", "clip_round")
MAX_NUM_METRICS = ("default", "max")
NMS_CONVENTIONS = ("insightface", "mmcv")


@dataclass(frozen=True)
class Profile:
    """Every setting that turns an image into final detections, besides the model.

    Attributes:
        name: profile name (``insightface``, ``widerface-eval``, ``device-flow`` or custom).
        input_size: network input ``(width, height)``, both multiples of 32.
        letterbox: one of :data:`LETTERBOX_KINDS`.
        pad_value: padding as a pixel value before normalisation (127.5 pads with 0
            after normalising).
        score_thr: candidates with ``score >= score_thr`` are kept (``>`` when
            ``score_strict``).
        nms_thr: the greedy NMS threshold (see ``nms_convention``).
        nms_convention: ``insightface`` ("+1", keep when IoU ``<= nms_thr``) or ``mmcv``
            (no "+1", suppress when ``inter > nms_thr * union``).
        score_strict: keep ``score > score_thr`` (mmdet) instead of ``>=``.
        box_mode: one of :data:`BOX_MODES`.
        max_num: keep at most this many detections by insightface's centre-weighted
            selection after NMS (0 keeps all).
        max_num_metric: ``default`` (area - 2 * squared centre offset) or ``max`` (area).
        mean, std: per-channel normalisation, in the model's channel order.
        norm: one of :data:`NORM_TYPES`.
        channel_order: the channel order the model receives (:data:`CHANNEL_ORDERS`).
        interpolation: the resize method (:data:`INTERPOLATIONS`).
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
    nms_convention: str = "insightface"
    score_strict: bool = False
    mean: tuple[float, float, float] = SCRFD_MEAN
    std: tuple[float, float, float] = SCRFD_STD
    norm: str = "minusmean_divstd"
    channel_order: str = "rgb"
    interpolation: str = "bilinear"

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
        if self.nms_convention not in NMS_CONVENTIONS:
            raise InputError(f"nms_convention {self.nms_convention!r} is not one of "
                             f"{NMS_CONVENTIONS}")
        if not isinstance(self.score_strict, bool):
            raise InputError(f"score_strict must be true or false, got {self.score_strict!r}")
        for f, allowed in (("norm", NORM_TYPES), ("channel_order", CHANNEL_ORDERS),
                           ("interpolation", INTERPOLATIONS)):
            if getattr(self, f) not in allowed:
                raise InputError(f"{f} {getattr(self, f)!r} is not one of {allowed}")
        for f in ("mean", "std"):
            v = getattr(self, f)
            try:
                t = tuple(float(x) for x in v)
            except (TypeError, ValueError):
                raise InputError(f"{f} must be 3 numbers, got {v!r}") from None
            if len(t) != 3 or not all(math.isfinite(x) for x in t):
                raise InputError(f"{f} must be 3 finite numbers, got {v!r}")
            if f == "std" and any(x == 0 for x in t):
                raise InputError(f"std {v!r} has a zero")
            object.__setattr__(self, f, t)
        object.__setattr__(self, "input_size", (int(w), int(h)))

    def replace(self, **overrides: Any) -> "Profile":
        """Return a copy with some fields changed; ``None`` values are ignored."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise InputError(f"unknown profile field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """All settings as a JSON-ready dict (input size, mean and std as lists)."""
        d = dataclasses.asdict(self)
        for f in ("input_size", "mean", "std"):
            d[f] = list(getattr(self, f))
        return d

    @property
    def scrfd_pixels(self) -> bool:
        """True when the model receives what SCRFD was trained on: RGB, (x - 127.5) / 128."""
        return (self.channel_order == "rgb" and self.norm == "minusmean_divstd"
                and self.mean == SCRFD_MEAN and self.std == SCRFD_STD)

    def describe_geometry(self) -> str:
        """``letterbox centered, pad 114, input 640x640``: the preprocessing geometry (and
        the pixel preparation when it is not SCRFD's default)."""
        text = (f"letterbox {self.letterbox}, pad {self.pad_value:g}, input "
                f"{self.input_size[0]}x{self.input_size[1]}")
        if not self.scrfd_pixels or self.interpolation != "bilinear":
            text += (f", {self.channel_order}, {self.norm} mean {list(self.mean)} std "
                     f"{list(self.std)}, {self.interpolation}")
        return text


#: the fields that decide what the network input holds (a dump recorded with one
#: preprocessing cannot be decoded, or compared, with another)
GEOMETRY_FIELDS: tuple[str, ...] = ("input_size", "letterbox", "pad_value", "mean", "std",
                                    "norm", "channel_order", "interpolation")


def geometry_differences(a: Profile, b: Profile) -> list[str]:
    """Names of the :data:`GEOMETRY_FIELDS` where ``a`` and ``b`` differ, with both values."""
    out = []
    for f in GEOMETRY_FIELDS:
        va, vb = getattr(a, f), getattr(b, f)
        if va != vb:
            out.append(f"{f} ({va} vs {vb})")
    return out


def profile_from_dict(d: Any) -> Profile:
    """A :class:`Profile` from :meth:`Profile.to_dict` output (a manifest, a report).

    Missing fields take the named profile's values (``name`` must be given); unknown
    fields and wrong types are an :class:`InputError`.
    """
    if not isinstance(d, dict) or not isinstance(d.get("name"), str):
        raise InputError(f"not a recorded profile (a JSON object with a name is expected): "
                         f"{str(d)[:80]}")
    names = {f.name for f in dataclasses.fields(Profile)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InputError(f"recorded profile {d['name']!r} has unknown field(s) "
                         f"{', '.join(unknown)}")
    fields = dict(d)
    for f in ("mean", "std"):
        v = fields.get(f)
        if v is not None:
            if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
                raise InputError(f"recorded profile {d['name']!r}: {f} must be 3 numbers, "
                                 f"got {v!r}")
            fields[f] = tuple(float(x) for x in v)
    size = fields.get("input_size")
    if size is not None:
        if not (isinstance(size, (list, tuple)) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
            raise InputError(f"recorded profile {d['name']!r}: input_size must be [w, h] "
                             f"integers, got {size!r}")
        fields["input_size"] = tuple(size)
    for f in ("pad_value", "score_thr", "nms_thr"):
        v = fields.get(f)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise InputError(f"recorded profile {d['name']!r}: {f} must be a number, got {v!r}")
    v = fields.get("score_strict")
    if v is not None and not isinstance(v, bool):
        raise InputError(f"recorded profile {d['name']!r}: score_strict must be true or false")
    for f in ("letterbox", "box_mode", "max_num_metric", "nms_convention", "norm",
              "channel_order", "interpolation"):
        v = fields.get(f)
        if v is not None and not isinstance(v, str):
            raise InputError(f"recorded profile {d['name']!r}: {f} must be text, got {v!r}")
    v = fields.get("max_num")
    if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
        raise InputError(f"recorded profile {d['name']!r}: max_num must be an integer")
    base = PROFILES.get(fields["name"])
    if base is None:
        return Profile(**fields)
    return dataclasses.replace(base, **fields)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("insightface", letterbox="insightface", pad_value=0.0,
                score_thr=0.5, nms_thr=0.4, box_mode="float"),
        Profile("widerface-eval", letterbox="wider", pad_value=127.5,
                score_thr=0.02, nms_thr=0.45, box_mode="clamp_resized",
                nms_convention="mmcv", score_strict=True),
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
