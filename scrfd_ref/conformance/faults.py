"""Fault injection: an honest device dump turned into a faulty one, by name and magnitude.

One library for every test that must show a check can fail (``../shared/docs/
conventions.md``): it takes an honest dump folder (``output_*.npz`` in the device layout,
``datalist.txt``, ``scrfd_dump.json``) and writes a copy in which one named fault has been
applied to every output file, the way a broken compiler pass, runtime or driver would
produce it. The copy's manifest records the fault (``identity.fault``), so a report can
never mistake it for a real device.

Faults act on the raw device-layout maps ``(B, 2C, H, W)`` (scores are logits; channel
block ``a*C:(a+1)*C`` belongs to anchor ``a``):

- ``scale_head``: one head (kind and stride) multiplied by ``magnitude`` (a compiler pass
  that rescales an output, one stride's boxes too large);
- ``scale_channel``: channel ``pair[0]`` of every anchor of one head multiplied by
  ``magnitude`` (a per-channel requantisation gone wrong: one box side too far);
- ``bias_scores``: ``magnitude`` added to every score logit (a miscalibrated activation);
- ``dead_stride``: one stride's score logits set to ``-magnitude`` (a head that outputs
  nothing);
- ``swap_landmarks``: landmark points ``a`` and ``b`` exchanged (a wrong output order in the
  landmark head);
- ``box_order``: box channels reordered ``ltrb -> tlbr`` (a layout mix-up);
- ``nan``: ``magnitude`` elements of one head set to NaN (fp16 overflow, an uninitialised
  buffer);
- ``drop_landmarks``: the landmark heads missing (a 6-output build of a 9-output model);
- ``swap_images``: the outputs of two images exchanged (a pairing fault);
- ``truncate``: output file ``pair[0]`` cut to ``magnitude`` bytes (an interrupted copy);
- ``raw_int8``: every output written as int8 ``round(x * magnitude)`` (a wrong dtype: int8
  outputs never dequantized).

Preprocessing faults (another pad value, BGR fed to the model) are not made from a dump:
the fault-injection tests dump with the wrong profile and keep the honest manifest.

:func:`available_faults` lists them with their parameters.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from scrfd_ref.core.anchors import NUM_ANCHORS, STRIDES
from scrfd_ref.core.errors import InputError
from scrfd_ref.core.heads import KIND_CHANNELS
from scrfd_ref.formats.device_npz import (
    read_output_npz,
    scan_output_files,
    write_output_npz,
)
from scrfd_ref.formats.files import file_digest
from scrfd_ref.formats.manifest import DUMP_MANIFEST

KINDS = ("score", "bbox", "kps")


@dataclass(frozen=True)
class Fault:
    """A named fault and its parameters.

    Attributes:
        name: one of :func:`available_faults`.
        kind: head kind (``score``, ``bbox``, ``kps``) for per-head faults.
        stride: 8, 16 or 32 for per-stride faults.
        magnitude: the fault's size (a scale factor, a logit offset, a count).
        pair: two indices (landmark points, images) for swap faults.
    """

    name: str
    kind: str | None = None
    stride: int | None = None
    magnitude: float = 1.0
    pair: tuple[int, int] = field(default=(0, 1))

    @property
    def label(self) -> str:
        """``scale_head(bbox@32 x1.15)``-style text for reports and test ids."""
        where = "@".join(str(p) for p in (self.kind, self.stride) if p is not None)
        if self.name in ("swap_landmarks", "swap_images"):
            return f"{self.name}({self.pair[0]}<->{self.pair[1]})"
        if self.name == "truncate":
            return f"truncate(file {self.pair[0]} to {int(self.magnitude)} bytes)"
        if self.name == "raw_int8":
            return f"raw_int8(x{self.magnitude:g}, not dequantized)"
        if self.name == "scale_channel":
            return f"scale_channel({where} ch{self.pair[0]} x{self.magnitude:g})"
        if self.name == "box_order":
            return "box_order(ltrb->tlbr)"
        return f"{self.name}({where}{' ' if where else ''}{self.magnitude:g})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        d = asdict(self)
        d["pair"] = list(self.pair)
        d["label"] = self.label
        return d


def _index(arrays: list[np.ndarray], kind: str, stride: int) -> int:
    """Position of head ``kind@stride`` among device-layout outputs (found by shape)."""
    sizes = sorted({a.shape[2:] for a in arrays}, key=lambda hw: -hw[0] * hw[1])
    level = STRIDES.index(stride)
    for i, a in enumerate(arrays):
        if a.shape[1] == NUM_ANCHORS * KIND_CHANNELS[kind] and a.shape[2:] == sizes[level]:
            return i
    raise InputError(f"no {kind} head of stride {stride} in outputs "
                     f"{[tuple(a.shape) for a in arrays]}")


def _scale_head(arrays: list[np.ndarray], f: Fault) -> list[np.ndarray]:
    i = _index(arrays, f.kind or "bbox", f.stride or 32)
    arrays[i] = (arrays[i].astype(np.float32) * np.float32(f.magnitude)).astype(arrays[i].dtype)
    return arrays


def _scale_channel(arrays: list[np.ndarray], f: Fault) -> list[np.ndarray]:
    i = _index(arrays, f.kind or "bbox", f.stride or 32)
    per_anchor = KIND_CHANNELS[f.kind or "bbox"]
    c = f.pair[0]
    if not 0 <= c < per_anchor:
        raise InputError(f"channel {c} is not one of 0..{per_anchor - 1} of a "
                         f"{f.kind or 'bbox'} head")
    a = arrays[i].astype(np.float32)
    for anchor in range(NUM_ANCHORS):
        a[:, anchor * per_anchor + c] *= np.float32(f.magnitude)
    arrays[i] = a.astype(arrays[i].dtype)
    return arrays


def _bias_scores(arrays: list[np.ndarray], f: Fault) -> list[np.ndarray]:
    for s in STRIDES if f.stride is None else (f.stride,):
        i = _index(arrays, "score", s)
        arrays[i] = (arrays[i].astype(np.float32) + np.float32(f.magnitude)).astype(arrays[i].dtype)
    return arrays


def _dead_stride(arrays: list[np.ndarray], f: Fault) -> list[np.ndarray]:
    i = _index(arrays, "score", f.stride or 8)
    arrays[i] = np.full_like(arrays[i], -abs(f.magnitude))
    return arrays


def _swap_landmarks(arrays: list[np.ndarray], f: Fault) -> list[np.ndarray]:
    a, b = f.pair
    if not (0 <= a < 5 and 0 <= b < 5):
        raise InputError(f"landmark points are 0..4, got {f.pair}")
    for s in STRIDES:
        i = _index(arrays, "kps", s)
        m = arrays[i].copy()
        for anchor in range(NUM_ANCHORS):
            base = anchor * 10
            m[:, base + 2 * a:base + 2 * a + 2] = arrays[i][:, base + 2 * b:base + 2 * b + 2]
            m[:, base + 2 * b:base + 2 * b + 2] = arrays[i][:, base + 2 * a:base + 2 * a + 2]
        arrays[i] = m
    return arrays


def _box_order(arrays: list[np.ndarray], f: Fault) -> list[np.ndarray]:
    for s in STRIDES if f.stride is None else (f.stride,):
        i = _index(arrays, "bbox", s)
        m = arrays[i].copy()
        for anchor in range(NUM_ANCHORS):
            base = anchor * 4
            m[:, base:base + 4] = arrays[i][:, [base + 1, base, base + 3, base + 2]]
        arrays[i] = m
    return arrays


def _nan(arrays: list[np.ndarray], f: Fault) -> list[np.ndarray]:
    i = _index(arrays, f.kind or "bbox", f.stride or 8)
    m = arrays[i].copy()
    m.reshape(-1)[:max(1, int(f.magnitude))] = np.nan
    arrays[i] = m
    return arrays


def _drop_landmarks(arrays: list[np.ndarray], f: Fault) -> list[np.ndarray]:
    kps = {_index(arrays, "kps", s) for s in STRIDES}
    return [a for i, a in enumerate(arrays) if i not in kps]


_PER_FILE: dict[str, Callable[[list[np.ndarray], Fault], list[np.ndarray]]] = {
    "scale_head": _scale_head, "scale_channel": _scale_channel, "bias_scores": _bias_scores,
    "dead_stride": _dead_stride,
    "swap_landmarks": _swap_landmarks, "box_order": _box_order, "nan": _nan,
    "drop_landmarks": _drop_landmarks,
}
FAULTS: tuple[str, ...] = (*_PER_FILE, "swap_images", "truncate", "raw_int8")


def available_faults() -> dict[str, str]:
    """Fault name -> the parameters it reads."""
    return {"scale_head": "kind, stride, magnitude (factor)",
            "scale_channel": "kind, stride, pair[0] (channel of each anchor), magnitude",
            "bias_scores": "magnitude (logit offset), stride (None: all)",
            "dead_stride": "stride, magnitude (logit set to -magnitude)",
            "swap_landmarks": "pair (two landmark points 0..4)",
            "box_order": "stride (None: all); ltrb -> tlbr",
            "nan": "kind, stride, magnitude (elements set to NaN)",
            "drop_landmarks": "(none): the landmark heads removed",
            "swap_images": "pair (two datalist positions)",
            "truncate": "pair[0] (which file), magnitude (bytes kept)",
            "raw_int8": "magnitude (1 / the quantization scale)"}


def apply_to_outputs(arrays: list[np.ndarray], fault: Fault) -> list[np.ndarray]:
    """The per-file faults on one file's device-layout outputs (a new list)."""
    try:
        fn = _PER_FILE[fault.name]
    except KeyError:
        raise InputError(f"unknown per-file fault {fault.name!r}; one of "
                         f"{', '.join(_PER_FILE)}") from None
    return fn([np.array(a, copy=True) for a in arrays], fault)


def inject(honest: str | Path, target: str | Path, fault: Fault) -> Path:
    """Copy the honest dump folder ``honest`` to ``target`` with ``fault`` applied.

    The copy's ``scrfd_dump.json`` keeps the honest identity plus ``fault`` (name and
    parameters), and stays complete.

    Raises:
        InputError: unknown fault, a head the outputs do not have, or ``target`` exists.
    """
    src, dst = Path(honest), Path(target)
    if dst.exists():
        raise InputError(f"{dst}: exists; inject into a new folder")
    if fault.name not in FAULTS:
        raise InputError(f"unknown fault {fault.name!r}; one of {', '.join(FAULTS)}")
    shutil.copytree(src, dst)
    files, _ = scan_output_files(dst)
    if fault.name == "swap_images":
        a, b = (files[i] for i in fault.pair)
        tmp = a.with_name(".swap.npz")
        a.rename(tmp)
        b.rename(a)
        tmp.rename(b)
    elif fault.name == "raw_int8":
        for f in files:
            outs = read_output_npz(f)
            raw = {f"output_{i}": np.clip(np.round(a.astype(np.float32) * fault.magnitude),
                                          -128, 127).astype(np.int8)
                   for i, a in enumerate(outs)}
            with open(f, "wb") as fh:
                np.savez(fh, **raw)
    elif fault.name == "truncate":
        f = files[fault.pair[0]]
        f.write_bytes(f.read_bytes()[:max(0, int(fault.magnitude))])
    else:
        for f in files:
            outs = read_output_npz(f)
            dtype = "fp16" if outs[0].dtype == np.float16 else "fp32"
            write_output_npz(f, apply_to_outputs(outs, fault), dtype)
    manifest = dst / DUMP_MANIFEST
    if manifest.is_file():
        doc = json.loads(manifest.read_text())
        doc.setdefault("identity", {})["fault"] = fault.to_dict()
        if isinstance(doc.get("sha256"), dict) and fault.name != "truncate":
            # the faulty device wrote these bytes; a truncated copy is damage after writing
            doc["sha256"].update({f.name: file_digest(f) for f in files})
        manifest.write_text(json.dumps(doc, indent=2) + "\n")
    return dst
