"""The session hooks of the scrfd-ref pytest plugin (registered by
:mod:`scrfd_ref.conformance.plugin`): the gates and the device folder checked before any
test runs, the conformance matrix and its tiers, the not-run summary, the perf table and
the conformance report.

The reference is never a device (benchmarks still time it). What the matrix leaves out,
and why, is decided in one place (:func:`scrfd_ref.conformance.runs.plan_matrix`: the
allowed cases of the conventions page) and printed once at the end of the session; under
``--require-data`` anything else that cannot run fails.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from scrfd_ref.conformance.plugin import DEFAULT_BACKENDS
from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.formats.datadir import SHARED_EVENTS, SHARED_MODEL_FILES  # noqa: F401

REPORT_KEY = pytest.StashKey["object"]()
GATES_KEY = pytest.StashKey[object]()
SOURCE_KEY = pytest.StashKey[object]()
PLAN_KEY = pytest.StashKey[dict]()
VDSP_KEY = pytest.StashKey[object]()
RECIPE_KEY = pytest.StashKey[object]()


def pytest_configure(config: pytest.Config) -> None:
    from scrfd_ref.conformance.gates import Gates
    from scrfd_ref.conformance.report import ConformanceReport
    from scrfd_ref.core.errors import ScrfdRefError
    from scrfd_ref.device.flow import dump_source

    config.stash[REPORT_KEY] = ConformanceReport()
    config.stash[PERF_KEY] = []
    try:  # a bad --gates file or device folder stops the session before any test runs
        config.stash[GATES_KEY] = Gates.load(config.getoption("--gates"))
        outputs = config.getoption("--device-outputs")
        if outputs:
            folder = Path(outputs)
            if not folder.is_dir():
                raise pytest.UsageError(f"--device-outputs {folder}: no such folder")
            config.stash[SOURCE_KEY] = dump_source(
                folder, allow_incomplete=config.getoption("--allow-incomplete"),
                option="--device-outputs")
        _read_device_configs(config)
    except ScrfdRefError as exc:
        raise pytest.UsageError(str(exc)) from None


def _read_device_configs(config: pytest.Config) -> None:
    """Read ``--vdsp-params`` and ``--build-yaml`` (refused files stop the session)."""
    from scrfd_ref.core.profiles import get_profile
    from scrfd_ref.device.quantize import QuantRecipe
    from scrfd_ref.formats.build_yaml import read_build_yaml
    from scrfd_ref.formats.vdsp import apply_vdsp, read_vdsp_params

    if config.getoption("--vdsp-params"):
        vdsp = read_vdsp_params(config.getoption("--vdsp-params"))
        apply_vdsp(get_profile(config.getoption("--profile") or "device-flow"), vdsp)
        config.stash[VDSP_KEY] = vdsp
    if config.getoption("--build-yaml"):
        build = read_build_yaml(config.getoption("--build-yaml"))
        config.stash[RECIPE_KEY] = (build, QuantRecipe.from_build_yaml(build))


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Notices the user must see once: gates taken from the defaults, dump provenance."""
    lines = []
    gates = config.stash.get(GATES_KEY, None)
    if gates is not None and gates.notice():
        lines.append(f"scrfd-ref: notice: {gates.notice()}")
    source = config.stash.get(SOURCE_KEY, None)
    if source is not None and source.notice:
        lines.append(f"scrfd-ref: notice: {source.notice}")
    vdsp = config.stash.get(VDSP_KEY, None)
    if vdsp is not None:
        lines.append(f"scrfd-ref: preprocessing from vdsp params {vdsp.source} (sha256 "
                     f"{vdsp.sha256[:12]})")
    built = config.stash.get(RECIPE_KEY, None)
    if built is not None:
        build, recipe = built
        lines.append(f"scrfd-ref: int8 devices follow build YAML {build.source}: "
                     f"{recipe.method}, {'per channel' if recipe.per_channel else 'per tensor'}"
                     f", {recipe.calib_count} calibration images")
        if build.unsupported:
            lines.append("scrfd-ref: warning: build YAML keys not understood (ignored): "
                         + ", ".join(build.unsupported))
    return lines


def _xdist_worker(config: pytest.Config) -> str | None:
    return getattr(config, "workerinput", {}).get("workerid")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Benchmarks refuse to time under pytest-xdist (workers share the cores)."""
    xdist = _xdist_worker(config) is not None or bool(getattr(config.option, "numprocesses", 0))
    if not xdist or config.getoption("benchmark_disable", default=False):
        return
    skip = pytest.mark.skip(reason="benchmarks do not time under pytest-xdist (workers share "
                                   "cores and skew every number): run `pytest benchmarks/ "
                                   "-p no:xdist`, or add --benchmark-disable to only execute them")
    for item in items:
        if "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


PERF_KEY = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """What was not run here and why (once), then a vamp-style table of every perf run of
    the session (benchmarks/test_bench_vamp.py)."""
    tr = terminalreporter
    left_out = not_run_lines(config)
    if left_out:
        tr.section("scrfd-ref: not run here (allowed; see conftest.py / plan_matrix)")
        for line in left_out:
            tr.write_line(f"- {line}")
    rows = config.stash.get(PERF_KEY, [])
    if not rows:
        return
    tr.section("scrfd-ref perf (vamp-style)")
    tr.write_line(f"{'device':<24} {'i':>2} {'p':>2} {'b':>3} {'shape':>11} {'img/s':>9} "
                  f"{'mean ms':>8} {'p50':>8} {'p90':>8} {'p95':>8} {'p99':>8}")
    for r in rows:
        lat = r["latency_ms"]
        tr.write_line(f"{r['device']:<24} {r['instances']:>2} {r['processes']:>2} {r['batch']:>3} "
                      f"{r['shape']:>11} {r['throughput_ips']:>9.2f} {lat['mean']:>8.2f} "
                      f"{lat['p50']:>8.2f} {lat['p90']:>8.2f} {lat['p95']:>8.2f} {lat['p99']:>8.2f}")
    if any(r.get("quick") for r in rows):
        tr.write_line("(quick mode: --benchmark-disable ran 2 calls per instance; numbers are "
                      "not measurements)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    folder = session.config.getoption("--report")
    report = session.config.stash.get(REPORT_KEY, None)
    if not folder or report is None:
        return
    worker = _xdist_worker(session.config)
    if worker is not None:
        report.write_partial(folder, worker)
    elif report.devices or any(Path(folder).glob(".partial-*.json")):
        js, md = report.write(folder)
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"scrfd-ref report: {md} and {js}")


# ----------------------------------------------------------------------------- the matrix


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
    from scrfd_ref.backends import available_backends
    from scrfd_ref.conformance.gates import DTYPES
    from scrfd_ref.conformance.runs import DeviceSpec, MatrixPlan, plan_matrix

    variants = config.getoption("--variant") or list(data_mod.VARIANTS)
    bad = [v for v in variants if v not in data_mod.VARIANTS]
    if bad:
        raise pytest.UsageError(f"--variant {', '.join(bad)}: known: {', '.join(data_mod.VARIANTS)}")
    dtypes = config.getoption("--dtype")
    bad = [d for d in dtypes or () if d not in DTYPES]
    if bad:
        raise pytest.UsageError(f"--dtype {', '.join(bad)}: known: {', '.join(DTYPES)}")
    outputs = config.getoption("--device-outputs")
    if outputs:
        folder = Path(outputs)
        meta = _dump_meta(config)
        variant = (config.getoption("--variant") or [meta.get("variant")])[0]
        dtype = (dtypes or [meta.get("dtype") or meta.get("output_dtype")])[0]
        if not variant or not dtype:
            raise pytest.UsageError(f"--device-outputs {folder}: no scrfd_dump.json saying the "
                                    "variant and dtype; pass --variant and --dtype")
        return MatrixPlan([DeviceSpec("replay", dtype, variant, folder)], [])
    backends = config.getoption("--backend")
    if backends is None:
        backends = list(DEFAULT_BACKENDS) + [b for b in available_backends()
                                             if b not in DEFAULT_BACKENDS and b != "replay"]
    known = available_backends()
    bad = [b for b in backends if b not in known]
    if bad:
        raise pytest.UsageError(f"--backend {', '.join(bad)}: available: {', '.join(known)}")
    return plan_matrix(variants, backends, list(dtypes or DTYPES),
                       data_mod.data_dir(config.getoption("--data-dir")),
                       require_data=config.getoption("--require-data"),
                       include_reference=include_reference)


#: the devices of the default tier when the user narrows nothing: one variant, the two
#: lower precisions on ONNX Runtime (the rest of the matrix is marked ``acceptance``)
DEFAULT_TIER: tuple[tuple[str, str, str], ...] = (
    ("ort", "fp32", "500m_bnkps"), ("ort", "fp16", "500m_bnkps"), ("ort", "int8", "500m_bnkps"))
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

