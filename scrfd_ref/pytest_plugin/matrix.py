"""The conformance matrix of a session: which devices it judges (backend x dtype x variant,
or one replay folder), which of them the default tier runs, and what the plan leaves out and
why (:func:`scrfd_ref.conformance.runs.plan_matrix`), printed once at the end.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.pytest_plugin.keys import PLAN_KEY, SOURCE_KEY
from scrfd_ref.pytest_plugin.options import DEFAULT_BACKENDS


def plan_not_run(config: pytest.Config) -> list[str]:
    """What the matrix plan left out, and why (planned here when this process did not
    collect: the xdist controller)."""
    if not config.stash.get(PLAN_KEY, {}):
        try:
            device_specs(config)
        except Exception:  # noqa: BLE001 - a plan that cannot be made leaves nothing out
            return []
    return not_run_lines(config)


def _dump_meta(config: pytest.Config) -> dict:
    """The identity the --device-outputs folder's manifest recorded ({} without one)."""
    source = config.stash.get(SOURCE_KEY, None)
    return source.identity if source is not None else {}


def device_specs(config: pytest.Config, include_reference: bool = False) -> list:
    """The devices this session checks, from --backend/--dtype/--variant/--device-outputs
    (planned once per session; what is left out is remembered for the summary)."""
    plans = config.stash.setdefault(PLAN_KEY, {})
    if include_reference not in plans:
        plans[include_reference] = _plan(config, include_reference)
    return plans[include_reference].specs


def _plan(config: pytest.Config, include_reference: bool):
    """The matrix of the options (checked when the session started: :func:`_check_options`,
    :func:`_check_dump_options`)."""
    from scrfd_ref.backends import available_backends
    from scrfd_ref.conformance.runs import DeviceSpec, MatrixPlan, plan_matrix
    from scrfd_ref.core.dtypes import DTYPES

    variants = config.getoption("--variant") or list(data_mod.VARIANTS)
    dtypes = config.getoption("--dtype")
    outputs = config.getoption("--device-outputs")
    if outputs:
        meta = _dump_meta(config)
        variant = (config.getoption("--variant") or [meta.get("variant")])[0]
        dtype = (dtypes or [meta.get("dtype") or meta.get("output_dtype")])[0]
        source = config.stash.get(SOURCE_KEY, None)
        partial = bool(source is not None and source.manifest is not None
                       and source.manifest.get("complete") is False)
        return MatrixPlan([DeviceSpec("replay", dtype, variant, Path(outputs), partial)], [])
    backends = config.getoption("--backend")
    if backends is None:
        backends = list(DEFAULT_BACKENDS) + [b for b in available_backends()
                                             if b not in DEFAULT_BACKENDS and b != "replay"]
    return plan_matrix(variants, backends, list(dtypes or DTYPES),
                       data_mod.data_dir(config.getoption("--data-dir")),
                       require_data=config.getoption("--require-data"),
                       include_reference=include_reference)


#: the devices of the default tier when the user narrows nothing: one variant, the two
#: float precisions below fp32 on ONNX Runtime, whose models build in a second (the int8
#: model's calibration and mixed-precision search take minutes: it and the rest of the
#: matrix are marked ``acceptance``)
DEFAULT_TIER: tuple[tuple[str, str, str], ...] = (
    ("ort", "fp32", "500m_bnkps"), ("ort", "fp16", "500m_bnkps"), ("ort", "bf16", "500m_bnkps"))
NARROWING = ("--backend", "--dtype", "--variant", "--device-outputs")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device_spec" in metafunc.fixturenames:
        # comparisons never take the reference as a device; benchmarks may time it
        compares = {"reference_run", "device_run"} & set(metafunc.fixturenames)
        specs = device_specs(metafunc.config, include_reference=not compares)
        narrowed = any(metafunc.config.getoption(o) for o in NARROWING)
        params = [pytest.param(s, id=s.id, marks=() if narrowed or
                               (s.backend, s.dtype, s.variant) in DEFAULT_TIER
                               else pytest.mark.acceptance) for s in specs]
        metafunc.parametrize("device_spec", params, scope="session")


def not_run_lines(config: pytest.Config) -> list[str]:
    """What the conformance matrix left out and why, each once (allowed cases only)."""
    lines: list[str] = []
    for plan in config.stash.get(PLAN_KEY, {}).values():
        lines += [x for x in plan.not_run if x not in lines]
    return lines
