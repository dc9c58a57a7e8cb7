"""The session verdict in the pytest plugin: collected from every test of every device,
computed once at the end of the session (:func:`scrfd_ref.conformance.session_verdict.
session_verdict`), and shown identically everywhere a user looks:

- the exit status (a verdict other than PASS never exits 0);
- one extra test row, ``scrfd-ref::session-verdict``, passed or failed with the verdict's
  reason: the terminal's summary line, JUnit XML and pytest-html all list it (and JUnit's
  ``<properties>`` carry ``scrfd_ref_session_verdict``);
- report.json (``session``), report.md and report.html (the banner).

Only a conformance session gets a verdict: one whose tests were parametrized with a device,
or that was given ``--device-outputs`` or ``--report``. A run of unit tests alone has none.
Under pytest-xdist the controller computes it from the reports the workers send.
"""
from __future__ import annotations

import pytest

#: user property naming the device a test report belongs to
DEVICE_PROPERTY = "scrfd_ref_device"
#: the user property that marks a test report as an inconclusive verdict
VERDICT_PROPERTY = "scrfd_ref_verdict"
#: node id of the verdict's own row in every report
VERDICT_NODEID = "scrfd-ref::session-verdict"


def device_of(item: pytest.Item) -> str | None:
    """The id of the device ``item`` is parametrized with (None: not a device test)."""
    callspec = getattr(item, "callspec", None)
    spec = callspec.params.get("device_spec") if callspec is not None else None
    return getattr(spec, "id", None)


#: the fixtures through which a test judges its device (a test that only times a device, a
#: benchmark, judges nothing and does not count towards the verdict)
JUDGING_FIXTURES = frozenset({"device_run", "reference_run", "judge"})


#: the user property of a judging test that got no device (the matrix left every one out)
JUDGING_PROPERTY = "scrfd_ref_judging_test"


def judges_devices(item: pytest.Item) -> bool:
    """True when ``item`` is a test that judges devices (it takes ``device_spec`` and a
    judging fixture), whether or not the matrix gave it one."""
    names = set(getattr(item, "fixturenames", ()))
    return "device_spec" in names and bool(JUDGING_FIXTURES & names)


def judged_device_of(item: pytest.Item) -> str | None:
    """The id of the device ``item`` judges (None: it judges none)."""
    if not JUDGING_FIXTURES & set(getattr(item, "fixturenames", ())):
        return None
    return device_of(item)


def first_line(report: pytest.TestReport) -> str:
    """The first line of a failure or skip: the exception's message, or the skip reason."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:      # a skip: (path, line, why)
        text = str(longrepr[2]).removeprefix("Skipped: ")
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(longrepr or "")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


class SessionVerdictPlugin:
    """Collects the outcome of every phase of every device test of the session (on the
    controller under xdist: the reports the workers send carry the device in their user
    properties)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.outcomes: list = []
        #: a judging test ran (or was skipped) without a device: the session set out to judge
        self.set_out = False

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from scrfd_ref.conformance.session_verdict import PhaseOutcome

        props = dict(report.user_properties)
        self.set_out = self.set_out or JUDGING_PROPERTY in props
        device = props.get(DEVICE_PROPERTY)
        if device is None or report.nodeid == VERDICT_NODEID:
            return
        self.outcomes.append(PhaseOutcome(device, report.nodeid, report.when, report.outcome,
                                          "" if report.passed else first_line(report),
                                          props.get(VERDICT_PROPERTY) == "inconclusive",
                                          float(report.duration)))


def collector(config: pytest.Config) -> SessionVerdictPlugin:
    """The session's collector (registered by the plugin's ``pytest_configure``)."""
    return config.pluginmanager.get_plugin(PLUGIN_NAME)


PLUGIN_NAME = "scrfd_ref.pytest_plugin.verdict"


def is_conformance_session(config: pytest.Config) -> bool:
    """Did this session set out to judge devices?"""
    plugin = collector(config)
    return bool(plugin.outcomes or plugin.set_out or config.getoption("--device-outputs")
                or config.getoption("--report"))


def compute(session: pytest.Session, report, left_out: list[str]) -> object:
    """The session's :class:`~scrfd_ref.conformance.session_verdict.SessionVerdict`
    (``left_out``: what the matrix plan left out, and why)."""
    from scrfd_ref.conformance.session_verdict import session_verdict
    from scrfd_ref.report.format import level_verdict

    config = session.config
    levels = {dev: {name: level_verdict(lv) for name, lv in rec.get("levels", {}).items()}
              for dev, rec in report.devices.items()}
    return session_verdict(collector(config).outcomes, levels, left_out,
                           accept_inconclusive=config.getoption("--accept-inconclusive"))


def emit(session: pytest.Session, verdict) -> None:
    """The verdict as one test row (setup, call, teardown reports) every reporter lists,
    a JUnit global property, and the exit status."""
    config = session.config
    outcome = "passed" if verdict.passed else "failed"
    text = f"scrfd-ref session verdict: {verdict.headline()}: {verdict.reason}"
    location = ("scrfd-ref", None, "session verdict")
    props = [("scrfd_ref_session_verdict", verdict.verdict)]
    if verdict.verdict == "INCONCLUSIVE":   # its own word in the summary, never "failed"
        props.append((VERDICT_PROPERTY, "inconclusive"))
        text = f"INCONCLUSIVE {text}"
    session.testscollected += 1             # the row is one more test: progress stays 100 %
    for when in ("setup", "call", "teardown"):
        rep = pytest.TestReport(VERDICT_NODEID, location, {}, outcome if when == "call"
                                else "passed", text if when == "call" and not verdict.passed
                                else None, when, [], 0.0, user_properties=props)
        config.hook.pytest_runtest_logreport(report=rep)
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - pytest without the junitxml stash key
        xml_key = None
    xml = config.stash.get(xml_key, None) if xml_key is not None else None
    if xml is not None:
        xml.add_global_property("scrfd_ref_session_verdict", verdict.verdict)
        xml.add_global_property("scrfd_ref_session_reason", verdict.reason)
    if not verdict.passed and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def test_seconds(config: pytest.Config) -> dict[str, float]:
    """Seconds per test node id (every phase) of the device tests."""
    out: dict[str, float] = {}
    for o in collector(config).outcomes:
        out[o.test] = out.get(o.test, 0.0) + o.seconds
    return out
