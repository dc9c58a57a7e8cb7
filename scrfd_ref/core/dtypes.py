"""The dtypes a device computes in: declared once, every list derived from here.

A dtype names the arithmetic of a device build, not the dtype of its files: a bf16 device
writes its outputs as float32 (every bf16 value widens exactly), an int8 device as
float16 (its head outputs are dequantized). Each :class:`DtypeSpec` says what the rest of
the project needs to know:

- ``output_dtype``: what ``scrfd-ref dump`` writes for a device of this dtype
  (``--output-dtype`` overrides it);
- ``gates``: the section of the gates file (``[bf16.heads]`` ...) that judges it;
- ``emulation``: the storage emulation (:mod:`scrfd_ref.device.emulate`) that stands in
  for an honest device of this dtype on any machine (``None``: the dtype has its own
  conversion, or is the reference's);
- ``significand_bits``: bits of precision of a stored value (fp32 24, fp16 11, bf16 8;
  int8 has a per-tensor scale instead), which sets the expected rounding noise;
- ``cpu_capability``: the OpenVINO CPU capability (``OPTIMIZATION_CAPABILITIES``) a native
  run needs (``BF16``: AVX512_BF16 or AMX; ``FP16``: AVX512_FP16 / AMX_FP16 or ARM);
- ``build_yaml``: a vendor build YAML may ask for it (seed-flow.md section 7: the vamc
  compiler builds fp16 or int8).

CLI ``choices=``, the conformance matrix, the gates sections, the diagnose precision
hypotheses and the reports all iterate :data:`DTYPES`; no other module spells the list.
"""
from __future__ import annotations

from dataclasses import dataclass

from scrfd_ref.core.errors import InputError, did_you_mean


@dataclass(frozen=True)
class DtypeSpec:
    """What one dtype needs (see the module docstring)."""

    name: str
    description: str
    output_dtype: str
    emulation: str | None
    significand_bits: int | None
    cpu_capability: str | None = None
    build_yaml: bool = False

    @property
    def gates(self) -> str:
        """The gates-file section of this dtype (its name)."""
        return self.name


#: every dtype, in the order reports list them (the reference's first)
SPECS: tuple[DtypeSpec, ...] = (
    DtypeSpec("fp32", "IEEE float32: the reference's arithmetic", "fp32", None, 24, "FP32"),
    DtypeSpec("fp16", "IEEE float16 storage (11 significant bits), fp32 or fp16 accumulation",
              "fp16", "fp16-storage", 11, "FP16", build_yaml=True),
    DtypeSpec("bf16", "bfloat16 storage (8 significant bits, fp32's exponent range), fp32 "
              "accumulation", "fp32", "bf16-storage", 8, "BF16"),
    DtypeSpec("int8", "int8 weights and activations with float scales (QDQ), int32 "
              "accumulation; head outputs dequantized", "fp16", None, None, "INT8",
              build_yaml=True),
)
DTYPES: tuple[str, ...] = tuple(s.name for s in SPECS)
#: the dtypes a vendor build YAML may ask for
BUILD_YAML_DTYPES: tuple[str, ...] = tuple(s.name for s in SPECS if s.build_yaml)
_BY_NAME = {s.name: s for s in SPECS}


def dtype_spec(name: str, option: str = "dtype") -> DtypeSpec:
    """The :class:`DtypeSpec` of ``name``; InputError naming the closest dtype."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise InputError(f"{option} {name!r} is not a dtype"
                         + did_you_mean(str(name), DTYPES)) from None


def check_dtype(name: str, option: str = "dtype") -> str:
    """``name`` when it is one of :data:`DTYPES` (else the error of :func:`dtype_spec`)."""
    return dtype_spec(name, option).name


def output_dtype(name: str) -> str:
    """What a dump of a ``name`` device writes on disk (``fp32`` or ``fp16``)."""
    return dtype_spec(name).output_dtype


__all__ = ["BUILD_YAML_DTYPES", "DTYPES", "DtypeSpec", "SPECS", "check_dtype", "dtype_spec", "output_dtype"]
