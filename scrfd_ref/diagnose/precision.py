"""Which arithmetic does a device's noise match? The precision hypothesis of ``diagnose``.

A device that claims one dtype but computes in another (OpenVINO's CPU plugin runs bf16
where the build was meant to be fp16) fails its gates with no fault to undo: its error is
plain rounding noise, only too much of it. The hypothesis compares the device's noise
level with honest devices of every dtype (:data:`~scrfd_ref.core.dtypes.DTYPES`) run on
the same images against the same reference:

- raw heads (``--device-outputs``): the foreground SNR of each head (dB, on the recorded
  reference's foreground anchors, heads of strides with enough of them);
- WIDER prediction files (``--predictions``): the jitter of matched detections, score and
  box (:mod:`scrfd_ref.diagnose.predictions`).

A level (head) where the device is worse than every honest device by more than the
margin carries a fault, not rounding noise (a scaled head, a dead stride): it is left
out, so a fault on a few heads does not pass for another arithmetic. Per honest device,
the offset is the median over the remaining levels of ``device - honest`` (dB). A dtype
*fits* when the offset of one of its honest devices is within the gates' margin
(``diagnose_precision_margin_db``, ``diagnose_pred_precision_margin_db``). The cause is
named when the claimed dtype does not fit and another does (the closest one), e.g.
``the device computes in bf16, not fp16 (foreground SNR 40.2 dB over 6 heads; honest
bf16 40.3, honest fp16 58.9)``.

:func:`honest_devices` lists the honest devices, derived from the dtype declarations:
fp32 is ONNX Runtime with graph optimisation disabled on one thread (another summation
order), a dtype with a storage emulation (:mod:`scrfd_ref.device.emulate`: fp16, bf16)
is that emulation, int8 is the default recipe (:func:`scrfd_ref.quantize.prepare.prepare_model`,
cached), and OpenVINO's NNCF int8 where the extra is installed (int8 noise depends on the
recipe). More honest devices of a dtype are more rows of the same table: a dtype fits
when any of its devices does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from scrfd_ref.diagnose.heads import Cause

#: (backend name, model file, backend options) of an honest device for a given fp32 model
Build = Callable[[Path], tuple[str, Path, dict[str, Any]]]


@dataclass(frozen=True)
class HonestDevice:
    """One honest device the precision hypothesis compares with.

    Attributes:
        label: short id (``ort fp32 (no graph optimisation, 1 thread)``).
        dtype: the arithmetic it computes in (one of the declared dtypes).
        build: the fp32 model file -> ``(backend, model file, backend options)``.
    """

    label: str
    dtype: str
    build: Build


def _fp32(model: Path) -> tuple[str, Path, dict[str, Any]]:
    return "ort", model, {"graph_optimization": "disable", "intra_threads": 1}


def _emulated(emulation: str) -> Build:
    def build(model: Path) -> tuple[str, Path, dict[str, Any]]:
        from scrfd_ref.device.emulate import RUN_OPTIONS, emulated_model

        return "ort", emulated_model(model, emulation), dict(RUN_OPTIONS)
    return build


def _converted(dtype: str) -> Build:
    def build(model: Path) -> tuple[str, Path, dict[str, Any]]:
        from scrfd_ref.quantize.prepare import prepare_model

        return "ort", prepare_model(model, dtype=dtype), {"dtype": dtype}
    return build


def _nncf_int8(model: Path) -> tuple[str, Path, dict[str, Any]]:
    from scrfd_ref.quantize.prepare import prepare_model

    return "openvino", prepare_model(model, dtype="int8", backend="openvino"), {"dtype": "int8"}


def honest_devices() -> tuple[HonestDevice, ...]:
    """One honest device per declared dtype (module docstring), and, where the OpenVINO
    extra is installed, OpenVINO's NNCF int8 as a second int8 device: int8 noise depends
    on the recipe (NNCF's foreground SNR is 0.2-6.1 dB above the default recipe's on
    500m_bnkps), so an honest int8 device fits when it is near either."""
    from scrfd_ref.core.dtypes import SPECS
    from scrfd_ref.quantize.nncf_int8 import nncf_missing

    out = []
    for spec in SPECS:
        if spec.name == "fp32":
            out.append(HonestDevice("ort fp32 (no graph optimisation, 1 thread)", "fp32", _fp32))
        elif spec.emulation:
            out.append(HonestDevice(f"emulated {spec.emulation}", spec.name,
                                    _emulated(spec.emulation)))
        else:
            out.append(HonestDevice(f"ort {spec.name} (default recipe)", spec.name,
                                    _converted(spec.name)))
    if nncf_missing() is None:
        out.append(HonestDevice("openvino NNCF int8", "int8", _nncf_int8))
    return tuple(out)


@dataclass
class PrecisionFit:
    """The device's noise level against honest devices of every dtype.

    Attributes:
        claimed: the dtype the device claims.
        metric: what the levels measure (``foreground SNR``, ``detection jitter``).
        device: the device's level per head (or per detection metric), dB.
        honest: ``{dtype: {honest device label: {head: dB}}}``.
        margin: a dtype fits when one of its devices' offsets is within this (dB).
        unit: what one level is (``heads``, ``metrics``).
        faulty: the levels left out: the device is worse there than every honest device
            by more than the margin.
    """

    claimed: str
    metric: str
    device: dict[str, float]
    honest: dict[str, dict[str, dict[str, float]]]
    margin: float
    unit: str = "heads"
    offsets: dict[str, float] = field(init=False)
    chosen: dict[str, str] = field(init=False)
    faulty: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.offsets, self.chosen = {}, {}
        every = [lv for devices in self.honest.values() for lv in devices.values()]
        self.faulty = sorted(k for k, v in self.device.items()
                             if every and all(v < lv[k] - self.margin for lv in every))
        for dtype, devices in self.honest.items():
            for label, levels in devices.items():
                diffs = [self.device[k] - levels[k] for k in self.device
                         if k in levels and k not in self.faulty]
                if not diffs:
                    continue
                off = float(np.median(diffs))
                if dtype not in self.offsets or abs(off) < abs(self.offsets[dtype]):
                    self.offsets[dtype], self.chosen[dtype] = off, label

    def fits(self, dtype: str) -> bool:
        """True when an honest ``dtype`` device's noise level is within the margin."""
        return dtype in self.offsets and abs(self.offsets[dtype]) <= self.margin

    @property
    def best(self) -> str | None:
        """The dtype whose honest devices come closest, when it fits."""
        fitting = [d for d in self.offsets if self.fits(d)]
        return min(fitting, key=lambda d: abs(self.offsets[d])) if fitting else None

    @property
    def kept(self) -> list[str]:
        """The levels compared (those not left out as faulty)."""
        return sorted(k for k in self.device if k not in self.faulty)

    def level(self, dtype: str | None = None) -> float:
        """Median level (dB) over the compared levels of the device, or of the chosen
        honest device of ``dtype``."""
        levels = self.device if dtype is None else self.honest[dtype][self.chosen[dtype]]
        return float(np.median([levels[k] for k in self.kept]))

    def cause(self) -> Cause | None:
        """``the device computes in bf16, not fp16`` when the claimed dtype does not fit
        and another does; None otherwise (or when nothing was measured)."""
        best = self.best
        if best is None or best == self.claimed or self.fits(self.claimed) or \
                self.claimed not in self.offsets:
            return None
        detail = (f"{self.metric} {self.level():.1f} dB over {len(self.kept)} "
                  f"{self.unit}; honest {best} {self.level(best):.1f}, honest "
                  f"{self.claimed} {self.level(self.claimed):.1f}; fits within "
                  f"{self.margin:g} dB")
        return Cause("precision", f"the device computes in {best}, not {self.claimed}",
                     self.kept, -abs(self.offsets[self.claimed]),
                     -abs(self.offsets[best]),
                     {"dtype": best, "claimed": self.claimed, "offsets": dict(self.offsets),
                      "honest_devices": dict(self.chosen)},
                     metric=f"distance of the {self.metric} from an honest device's",
                     detail=detail)

    def line(self) -> str:
        """``noise level: foreground SNR 40.2 dB (median of 6 heads); honest fp32 80.0,
        fp16 58.9, bf16 40.3, int8 31.8; fits bf16``."""
        if not self.offsets:
            why = (f"{', '.join(self.faulty)} worse than every honest device by more than "
                   f"{self.margin:g} dB" if self.faulty else "no honest device")
            return f"noise level: not compared ({why})"
        honest = ", ".join(f"{d} {self.level(d):.1f}" for d in self.offsets)
        fits = [d for d in self.offsets if self.fits(d)]
        left = (f"; left out as faulty (worse than every honest device): "
                f"{', '.join(self.faulty)}" if self.faulty else "")
        return (f"noise level: {self.metric} {self.level():.1f} dB (median of "
                f"{len(self.kept)} {self.unit}); honest {honest}; fits "
                f"{', '.join(fits) if fits else 'no honest dtype'} (within "
                f"{self.margin:g} dB){left}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"claimed": self.claimed, "metric": self.metric, "device": self.device,
                "honest": self.honest, "margin": self.margin, "offsets": self.offsets,
                "honest_devices": self.chosen, "faulty": self.faulty,
                "device_db": self.level() if self.kept else None,
                "fits": [d for d in self.offsets if self.fits(d)], "best": self.best}


def fit_precision(device: Mapping[str, float],
                  honest: Mapping[str, Mapping[str, Mapping[str, float]]], claimed: str,
                  margin: float, *, metric: str = "foreground SNR",
                  unit: str = "heads") -> PrecisionFit | None:
    """The :class:`PrecisionFit` of ``device``'s levels against ``honest`` ones (``{dtype:
    {label: {level: dB}}}``), on the levels every side measured; None when none is
    shared."""
    shared = set(device)
    for devices in honest.values():
        for levels in devices.values():
            shared &= set(levels)
    if not shared:
        return None
    keep = lambda levels: {k: float(v) for k, v in levels.items() if k in shared}  # noqa: E731
    return PrecisionFit(claimed, metric, keep(device),
                        {d: {lab: keep(lv) for lab, lv in devs.items()}
                         for d, devs in honest.items()}, margin, unit)
