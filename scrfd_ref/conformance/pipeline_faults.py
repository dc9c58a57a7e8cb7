"""Faults of a device's pipeline around the network, for the fault library: the faults that
cannot be made from a dump because they change what the network sees, or that are easiest
to inject while a backend runs.

A :class:`FaultyBackend` wraps any backend. Before the network it can apply one
:class:`InputFault` to the preprocessed blob (the device's fused preprocessing gone wrong);
after it, one head fault of :mod:`scrfd_ref.conformance.faults` (applied to the outputs in
the device layout, exactly as :func:`~scrfd_ref.conformance.faults.inject` does to a dump).
The resize method is a profile field: :func:`nearest_resize` gives the profile of a device
that resizes with nearest-neighbour sampling.

Input faults act in pixel space (the blob is ``(pixel - mean) / std`` of the profile, so
``pixel = blob * std + mean`` and back):

- ``input_clip``: pixels clipped to ``[low, high]`` (a fused preprocessing that saturates,
  limited-range video levels taken for full range);
- ``input_compress``: pixels compressed towards mid-grey, ``127.5 + (p - 127.5) * factor``,
  then rounded to whole levels (a gain stage that loses contrast and levels);
- ``input_blur``: a Gaussian blur of ``sigma`` px on the network input (a resampler or ISP
  stage that drops detail).

They hurt some faces more than others (dim, low-contrast, small or blurred faces first),
which is what the slice level (:mod:`scrfd_ref.conformance.slice_checks`) is for.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from scrfd_ref.backends.base import Backend
from scrfd_ref.core.errors import InputError
from scrfd_ref.core.heads import normalize_heads, to_device_layout
from scrfd_ref.core.profiles import Profile

INPUT_FAULTS: dict[str, str] = {
    "input_clip": "low, high: pixel levels kept (0..255)",
    "input_compress": "factor: contrast kept around mid-grey (0..1), then rounded",
    "input_blur": "sigma: Gaussian blur of the network input, px",
}


@dataclass(frozen=True)
class InputFault:
    """A named fault of the preprocessing (:data:`INPUT_FAULTS`)."""

    name: str
    low: float = 0.0
    high: float = 255.0
    factor: float = 1.0
    sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in INPUT_FAULTS:
            raise InputError(f"unknown input fault {self.name!r}; one of "
                             f"{', '.join(INPUT_FAULTS)}")
        if self.name == "input_clip" and not 0 <= self.low < self.high <= 255:
            raise InputError(f"input_clip: need 0 <= low < high <= 255, got {self.low}, "
                             f"{self.high}")
        if self.name == "input_compress" and not 0 < self.factor <= 1:
            raise InputError(f"input_compress: factor must be in (0, 1], got {self.factor}")
        if self.name == "input_blur" and not self.sigma > 0:
            raise InputError(f"input_blur: sigma must be > 0, got {self.sigma}")

    @property
    def label(self) -> str:
        """``input_clip(40..215)``-style text for reports and test ids."""
        if self.name == "input_clip":
            return f"input_clip({self.low:g}..{self.high:g})"
        if self.name == "input_compress":
            return f"input_compress(x{self.factor:g})"
        return f"input_blur(sigma {self.sigma:g} px)"


def _pixel_planes(profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` as ``(1, 3, 1, 1)`` float32 in the blob's channel order."""
    mean = np.asarray(profile.mean, np.float32)
    std = np.asarray(profile.std, np.float32)
    return mean.reshape(1, 3, 1, 1), std.reshape(1, 3, 1, 1)


def apply_input_fault(blob: np.ndarray, fault: InputFault, profile: Profile) -> np.ndarray:
    """``(B, 3, H, W)`` float32 blob with ``fault`` applied in pixel space (a new array).

    The profile's mean and std are per channel in the order the model receives; the SCRFD
    ones are equal for the three channels, so the order cannot matter for them.
    """
    if profile.norm != "minusmean_divstd":
        raise InputError(f"input faults act on (pixel - mean) / std blobs; profile "
                         f"{profile.name!r} normalises with {profile.norm!r}")
    mean, std = _pixel_planes(profile)
    pixels = blob.astype(np.float32) * std + mean
    if fault.name == "input_clip":
        pixels = np.clip(pixels, fault.low, fault.high)
    elif fault.name == "input_compress":
        pixels = np.round(127.5 + (pixels - 127.5) * fault.factor)
    else:
        import cv2

        out = np.empty_like(pixels)
        for b in range(pixels.shape[0]):
            for c in range(pixels.shape[1]):
                out[b, c] = cv2.GaussianBlur(pixels[b, c], (0, 0), fault.sigma)
        pixels = out
    return ((pixels - mean) / std).astype(np.float32)


def nearest_resize(profile: Profile) -> Profile:
    """``profile`` with nearest-neighbour resizing (a device resampler that skips the
    interpolation: detail and thin edges of small faces are lost)."""
    return dataclasses.replace(profile, interpolation="nearest")


class FaultyBackend(Backend):
    """A backend whose pipeline has a fault: ``input_fault`` on the blob before the inner
    backend runs, ``head_fault`` (a :class:`~scrfd_ref.conformance.faults.Fault`) on its
    outputs, returned in the device layout."""

    name = "faulty"

    def __init__(self, inner: Backend, profile: Profile, *,
                 input_fault: InputFault | None = None, head_fault: Any = None) -> None:
        self.inner = inner
        self.profile = profile
        self.input_fault = input_fault
        self.head_fault = head_fault

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The inner backend's fixed input size."""
        return self.inner.input_size

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """The inner backend's outputs for the faulty input, with the head fault."""
        if self.input_fault is not None:
            blob = apply_input_fault(blob, self.input_fault, self.profile)
        outputs = self.inner.run(blob)
        if self.head_fault is None:
            return outputs
        from scrfd_ref.conformance.faults import apply_to_outputs

        size = (blob.shape[3], blob.shape[2])
        layout = to_device_layout(normalize_heads(outputs, size, where="faulty backend"))
        return apply_to_outputs(layout, self.head_fault)

    def info(self) -> dict[str, Any]:
        """The inner backend's info with the faults named (never mistaken for a device)."""
        info = dict(self.inner.info())
        info["fault"] = "; ".join(f.label for f in (self.input_fault, self.head_fault)
                                  if f is not None)
        return info

    def close(self) -> None:
        """Close the inner backend."""
        self.inner.close()


__all__ = ["INPUT_FAULTS", "FaultyBackend", "InputFault", "apply_input_fault",
           "nearest_resize"]
