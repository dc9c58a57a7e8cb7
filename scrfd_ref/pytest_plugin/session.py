"""The session hooks of the scrfd-ref pytest plugin (registered by
:mod:`scrfd_ref.pytest_plugin.options`): the gates and the device folder checked before any
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

from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.formats.datadir import SHARED_EVENTS, SHARED_MODEL_FILES  # noqa: F401
from scrfd_ref.pytest_plugin.keys import (  # noqa: F401 - the keys, re-exported
    GATES_KEY,
    INCONCLUSIVE_KEY,
    NOTICES_KEY,
    PERF_KEY,
    PLAN_KEY,
    RECIPE_KEY,
    REPORT_KEY,
    SESSION_VERDICT_KEY,
    SOURCE_KEY,
    VDSP_KEY,
)
from scrfd_ref.pytest_plugin.matrix import (  # noqa: F401 - device_specs re-exported
    device_specs,
    not_run_lines,
    plan_not_run,
)
from scrfd_ref.pytest_plugin.verdict import VERDICT_PROPERTY


def pytest_configure(config: pytest.Config) -> None:
    from scrfd_ref.conformance.gates import Gates
    from scrfd_ref.core.errors import ScrfdRefError
    from scrfd_ref.device.flow import dump_source
    from scrfd_ref.report.document import ConformanceReport
    from scrfd_ref.report.run_record import VERDICT_OPTIONS, now_utc, run_record

    config.stash[REPORT_KEY] = ConformanceReport()
    given = {o: config.getoption(o, default=None) for o in VERDICT_OPTIONS}
    config.stash[REPORT_KEY].meta["run"] = run_record(
        ["pytest", *config.invocation_params.args], given, now_utc())
    config.stash[PERF_KEY] = []
    try:  # a bad --gates file or device folder stops the session before any test runs
        _check_options(config)
        _check_output_folders(config)
        config.stash[GATES_KEY] = Gates.load(config.getoption("--gates"))
        outputs = config.getoption("--device-outputs")
        if outputs:
            folder = Path(outputs)
            if not folder.is_dir():
                raise pytest.UsageError(f"--device-outputs {folder}: no such folder")
            config.stash[SOURCE_KEY] = dump_source(
                folder, allow_incomplete=config.getoption("--allow-incomplete"),
                option="--device-outputs")
            _check_dump_options(config, folder, config.stash[SOURCE_KEY])
        _read_device_configs(config)
    except ScrfdRefError as exc:
        raise pytest.UsageError(str(exc)) from None


def _check_options(config: pytest.Config) -> None:
    """Every scrfd-ref option with a fixed set of values checked before collection: a
    typo stops the session with one line naming the closest valid value (pytest's usage
    exit 4), never a traceback during collection."""
    from scrfd_ref.backends import available_backends
    from scrfd_ref.core.dtypes import DTYPES
    from scrfd_ref.core.errors import did_you_mean
    from scrfd_ref.core.profiles import PROFILES

    for option, known, what in (("--dtype", list(DTYPES), "a dtype"),
                                ("--variant", list(data_mod.VARIANTS), "a variant"),
                                ("--backend", None, "an available backend")):
        for value in config.getoption(option) or ():
            known = known if known is not None else list(available_backends())
            if value not in known:
                raise pytest.UsageError(f"{option} {value}: not {what}"
                                        + did_you_mean(value, known))
    profile = config.getoption("--profile")
    if profile and profile not in PROFILES:
        raise pytest.UsageError(f"--profile {profile}: not a profile"
                                + did_you_mean(profile, sorted(PROFILES)))
    heads = config.getoption("--head-images")
    if heads < 1:
        raise pytest.UsageError(f"--head-images {heads}: expected an integer >= 1 (the number "
                                "of images whose raw heads are compared)")


def _check_output_folders(config: pytest.Config) -> None:
    """``--report`` and ``--ref-cache`` checked before any test runs: each a folder that can
    be written, neither one of the inputs nor inside the ``--device-outputs`` folder (a
    file there was found after the whole run, as a traceback; a cache inside the dump
    wrote into the user's input)."""
    from scrfd_ref.formats.files import output_dir

    inputs = [(config.getoption("--device-outputs"), "--device-outputs")]
    for option in ("--report", "--ref-cache"):
        if config.getoption(option):
            output_dir(config.getoption(option), option, inputs=inputs)


def _check_dump_options(config: pytest.Config, folder: Path, source) -> None:
    """A --device-outputs folder against the options and its own manifest: the variant
    and dtype must be known, a --dtype other than the recorded one needs --force-dtype,
    and a complete dump must still hold every image it recorded, in the recorded order."""
    from scrfd_ref.formats.device_outputs import check_recorded

    meta = source.identity
    dtypes = config.getoption("--dtype")
    if not (config.getoption("--variant") or meta.get("variant")) or not (
            dtypes or meta.get("dtype") or meta.get("output_dtype")):
        raise pytest.UsageError(f"--device-outputs {folder}: no scrfd_dump.json saying the "
                                "variant and dtype; pass --variant and --dtype")
    recorded = meta.get("dtype")
    if dtypes and recorded and dtypes[0] != recorded and not config.getoption("--force-dtype"):
        raise pytest.UsageError(
            f"--dtype {dtypes[0]}: the dump's manifest {folder / 'scrfd_dump.json'} records "
            f"dtype {recorded}; drop --dtype, or pass --force-dtype to judge it as "
            f"{dtypes[0]} anyway")
    check_recorded(folder, partial=not (source.manifest or {}).get("complete", True))


def _read_device_configs(config: pytest.Config) -> None:
    """Read ``--vdsp-params`` and ``--build-yaml`` (refused files stop the session)."""
    from scrfd_ref.core.profiles import get_profile
    from scrfd_ref.formats.build_yaml import read_build_yaml
    from scrfd_ref.formats.vdsp import apply_vdsp, read_vdsp_params
    from scrfd_ref.quantize.convert import QuantRecipe

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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """An inconclusive verdict's report carries its message as it is (no "Failed:"
    prefix, no traceback), so the JUnit XML failure message starts with INCONCLUSIVE."""
    from scrfd_ref.pytest_plugin.verdict import (
        DEVICE_PROPERTY,
        JUDGING_PROPERTY,
        judged_device_of,
        judges_devices,
    )

    report = yield
    if (report.when == "call" and report.failed and call.excinfo is not None
            and dict(item.user_properties).get(VERDICT_PROPERTY) == "inconclusive"):
        report.longrepr = str(getattr(call.excinfo.value, "msg", call.excinfo.value))
    device = judged_device_of(item)
    if device is not None:     # the device this test judges: the session verdict counts it
        report.user_properties.append((DEVICE_PROPERTY, device))
    elif judges_devices(item):  # a judging test whose matrix was empty: it set out to judge
        report.user_properties.append((JUDGING_PROPERTY, "1"))
    return report


def pytest_report_teststatus(report, config: pytest.Config):
    """A conformance test that ends inconclusive (the images cannot decide) is reported in
    its own category: ``I`` / ``INCONCLUSIVE`` and "N inconclusive" in the summary line,
    never counted as "failed" (pytest's exit status is still non-zero: it is not evidence
    of conformance; the JUnit XML keeps it as a failure whose message starts with
    INCONCLUSIVE)."""
    if report.when == "call" and report.failed and \
            dict(report.user_properties).get(VERDICT_PROPERTY) == "inconclusive":
        return "inconclusive", "I", "INCONCLUSIVE"
    return None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """What was not run here and why (once), the inconclusive verdicts with what the
    images lack, then a vamp-style table of every perf run of the session
    (benchmarks/test_bench_vamp.py)."""
    tr = terminalreporter
    result = config.stash.get(SESSION_VERDICT_KEY, None)
    if result is not None:
        tr.section("scrfd-ref session verdict", green=result.passed, red=not result.passed)
        tr.write_line(f"{result.headline()}: {result.reason}")
        for d in result.devices:
            if d.state != "pass" or d.reasons:
                tr.write_line(f"- {d.device}: {d.state}"
                              + (f": {'; '.join(d.reasons)}" if d.reasons else ""))
    notices = config.stash.get(NOTICES_KEY, [])
    if notices:   # said here: inside a fixture, pytest would keep them to failed tests
        tr.section("scrfd-ref: notices", yellow=True)
        for line in dict.fromkeys(notices):
            tr.write_line(f"- {line}")
    left_out = not_run_lines(config)
    if left_out:
        tr.section("scrfd-ref: not run here (allowed; see conftest.py / plan_matrix)")
        for line in left_out:
            tr.write_line(f"- {line}")
    undecided = config.stash.get(INCONCLUSIVE_KEY, [])
    if undecided:
        accepted = config.getoption("--accept-inconclusive")
        tr.section("scrfd-ref: inconclusive (the images cannot decide; not a device failure)"
                   + (": ACCEPTED by --accept-inconclusive, not evidence of conformance"
                      if accepted else ""), yellow=True)
        for device, level, lines in undecided:
            for line in lines:
                tr.write_line(f"- {device} {level}: {line}")
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


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The session verdict (:mod:`scrfd_ref.pytest_plugin.verdict`), computed once on the
    controller before any reporter writes (JUnit, pytest-html, the terminal summary), then
    the report with it. An xdist worker only saves its records for the controller."""
    from scrfd_ref.pytest_plugin import verdict as session_verdict

    config = session.config
    folder = config.getoption("--report")
    report = config.stash.get(REPORT_KEY, None)
    if report is None:
        return
    if _xdist_worker(config) is not None:
        if folder:
            report.write_partial(folder, _xdist_worker(config))
        return
    if folder:
        report.collect_partials(folder)
    if not session_verdict.is_conformance_session(config):
        return
    result = session_verdict.compute(session, report, plan_not_run(config))
    config.stash[SESSION_VERDICT_KEY] = result
    session_verdict.emit(session, result)
    report.session = result.to_dict()
    _finish_record(config, report, int(session.exitstatus))
    if folder:
        js, md, html = report.write(folder)
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"scrfd-ref report: {html} (open in a browser), {md} and {js}")




def _finish_record(config: pytest.Config, report, exit_status: int) -> None:
    """End time, exit status, seconds per level, and the gates disclosure (every limit
    that differs from the shipped file) in the report."""
    from scrfd_ref.conformance.gates_disclosure import disclose
    from scrfd_ref.pytest_plugin.verdict import test_seconds
    from scrfd_ref.report.run_record import now_utc

    run = report.meta.setdefault("run", {})
    run.update(finished=now_utc(), exit_status=exit_status)
    seconds = test_seconds(config)
    for rec in report.devices.values():
        for level in rec.get("levels", {}).values():
            if level.get("test") in seconds:
                level["seconds"] = round(seconds[level["test"]], 3)
    gates = config.stash.get(GATES_KEY, None)
    if gates is not None:
        disclosure = disclose(gates)
        report.meta["gates"] = disclosure.path
        report.meta["gates_disclosure"] = disclosure.to_dict()
        report.session["gates"] = disclosure.banner()
