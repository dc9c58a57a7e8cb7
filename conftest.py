"""Options, markers and fixtures of every scrfd-ref test suite (one place).

Data comes from the data directory (``--data-dir`` or ``$SCRFD_DATA``); a test that needs
a missing file is skipped with the path in its reason, or fails under ``--require-data``
(CI). Conformance tests take a ``device_spec`` fixture parametrized over
backend x dtype x variant (ids like ``ort-int8-500m_bnkps``) or one replay folder
(``--device-outputs``); each is compared with the fp32 ONNX Runtime reference of its
variant, computed once per session (or per xdist worker, or shared via ``--ref-cache``).

The reference is never a device (benchmarks still time it). What the matrix leaves out,
and why, is decided in one place (:func:`scrfd_ref.conformance.plan_matrix`: the allowed
cases of the conventions page) and printed once at the end of the session; under
``--require-data`` anything else that cannot run fails.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# the independent references of tests/ (the WIDER oracle, the insightface WIDER-test
# transcription) are importable by every suite, benchmarks included
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

from scrfd_ref import data as data_mod

#: the real model files of the shared data folder (README of ../shared/data)
SHARED_MODEL_FILES = (
    "scrfd_500m_bnkps.onnx",
    "scrfd_500m_bnkps_dynamic.onnx",
    "scrfd_2.5g_bnkps_dynamic.onnx",
    "scrfd_1g.onnx",
    "scrfd_2.5g.onnx",
)
#: the five complete WIDER FACE val events in the shared data
SHARED_EVENTS = ("0--Parade", "13--Interview", "19--Couple", "20--Family_Group", "4--Dancing")
DEFAULT_BACKENDS = ("ort", "opencv", "gpu")
REPORT_KEY = pytest.StashKey["object"]()


# ----------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("scrfd-ref")
    g.addoption("--data-dir", default=None,
                help="data folder with models/, widerface/, images/ (default: $SCRFD_DATA, "
                     "then ../shared/data)")
    g.addoption("--require-data", action="store_true",
                default=os.environ.get("SCRFD_REQUIRE_DATA") == "1",
                help="fail, instead of skip, when a data file a test needs is missing (CI; "
                     "also SCRFD_REQUIRE_DATA=1). Variants without weights still skip.")
    g.addoption("--backend", action="append", default=None, metavar="NAME",
                help=f"conformance: backend(s) to check, repeatable (default: "
                     f"{', '.join(DEFAULT_BACKENDS)} and installed plugins)")
    g.addoption("--dtype", action="append", default=None, metavar="DTYPE",
                help="conformance: fp32, fp16, int8, repeatable (default: all)")
    g.addoption("--variant", action="append", default=None, metavar="VARIANT",
                help="conformance: SCRFD variant(s), repeatable (default: all eight; those "
                     "without weights skip)")
    g.addoption("--device-outputs", default=None, metavar="DIR",
                help="conformance: replay a folder of device output npz files (datalist.txt "
                     "in or beside it; scrfd_dump.json gives variant/dtype/profile if present)")
    g.addoption("--profile", default=None, metavar="NAME",
                help="conformance: profile of both runs (default widerface-eval; for "
                     "--device-outputs the dump's own)")
    g.addoption("--gates", default=None, metavar="FILE",
                help="conformance: gates TOML file (default data/gates.toml; gates it leaves "
                     "out take the defaults, named once in the header)")
    g.addoption("--allow-incomplete", action="store_true",
                help="conformance: accept a --device-outputs folder whose scrfd_dump.json says "
                     "the dump did not finish")
    g.addoption("--force-profile", action="store_true",
                help="conformance: run --profile although the dump recorded another "
                     "preprocessing geometry")
    g.addoption("--report", default=None, metavar="DIR",
                help="conformance: write report.json, report.md, PR curves and overlays here")
    g.addoption("--ref-cache", default=None, metavar="DIR",
                help="conformance: save/reuse fp32 reference runs here (share between xdist "
                     "workers or hosts)")
    g.addoption("--head-images", type=int, default=12, metavar="N",
                help="conformance: images whose raw heads are compared (default 12)")
    p = parser.getgroup("scrfd-ref perf (vamp-style benchmark runs)")
    p.addoption("--perf-instances", type=int, default=1, metavar="I",
                help="concurrent instances (threads, each with its own session), vamp -i")
    p.addoption("--perf-processes", type=int, default=1, metavar="P",
                help="processes, each running the instances, vamp -p")
    p.addoption("--perf-batch", type=int, action="append", default=None, metavar="B",
                help="images per call, vamp -b; repeatable (default: 1 and 8)")
    p.addoption("--perf-shape", default="3,640,640", metavar="C,H,W",
                help="shape of one input, vamp -s (default 3,640,640)")
    p.addoption("--perf-iterations", type=int, default=20, metavar="N",
                help="measured calls per instance (default 20; 2 with --benchmark-disable)")
    p.addoption("--perf-threads", type=int, default=None, metavar="T",
                help="ONNX Runtime intra-op threads per instance (default: ORT's choice)")


GATES_KEY = pytest.StashKey[object]()
SOURCE_KEY = pytest.StashKey[object]()
PLAN_KEY = pytest.StashKey[dict]()


def pytest_configure(config: pytest.Config) -> None:
    from scrfd_ref.device_flow import dump_source
    from scrfd_ref.errors import ScrfdRefError
    from scrfd_ref.gates import Gates
    from scrfd_ref.report import ConformanceReport

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
    except ScrfdRefError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Notices the user must see once: gates taken from the defaults, dump provenance."""
    lines = []
    gates = config.stash.get(GATES_KEY, None)
    if gates is not None and gates.notice():
        lines.append(f"scrfd-ref: notice: {gates.notice()}")
    source = config.stash.get(SOURCE_KEY, None)
    if source is not None and source.notice:
        lines.append(f"scrfd-ref: notice: {source.notice}")
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


# ----------------------------------------------------------------------------- data


@pytest.fixture(scope="session")
def data_root(pytestconfig: pytest.Config) -> Path:
    """The data directory the session reads models, images and WIDER FACE from."""
    return data_mod.data_dir(pytestconfig.getoption("--data-dir"))


@pytest.fixture(scope="session")
def need(pytestconfig: pytest.Config):
    """``need(path, what)`` returns ``path`` or skips (fails under --require-data)."""
    strict = pytestconfig.getoption("--require-data")

    def _need(path: Path, what: str = "data file") -> Path:
        if Path(path).exists():
            return Path(path)
        reason = f"{what} missing: {path} (set SCRFD_DATA or --data-dir)"
        if strict:
            pytest.fail(f"--require-data: {reason}", pytrace=False)
        pytest.skip(reason)

    return _need


@pytest.fixture(scope="session", params=SHARED_MODEL_FILES)
def shared_model(request: pytest.FixtureRequest, data_root: Path, need) -> Path:
    """Each real SCRFD model file of the shared data (parametrized)."""
    return need(data_root / "models" / request.param, "model file")


@pytest.fixture(scope="session")
def sample_images(data_root: Path, need) -> list[Path]:
    """The two shared sample images plus the first 4 images of each shared WIDER event (22)."""
    images = [need(data_root / "images" / n, "sample image")
              for n in ("one_face_1280x720.jpg", "debug_input.jpg")]
    for event in SHARED_EVENTS:
        folder = need(data_root / "widerface" / "WIDER_val" / "images" / event, "WIDER event folder")
        images += sorted(folder.glob("*.jpg"))[:4]
    return images


@pytest.fixture(scope="session")
def wider_images_dir(data_root: Path, need) -> Path:
    """``WIDER_val/images`` of the data directory."""
    return need(data_root / "widerface" / "WIDER_val" / "images", "WIDER val images")


@pytest.fixture(scope="session")
def ground_truth(data_root: Path, need):
    """The official WIDER FACE val ground truth (.mat files)."""
    from scrfd_ref.formats.ground_truth import load_ground_truth

    return load_ground_truth(need(data_root / "widerface" / "ground_truth", "WIDER ground truth"))


# ----------------------------------------------------------------------------- conformance


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
    from scrfd_ref.conformance import DeviceSpec, MatrixPlan, plan_matrix
    from scrfd_ref.gates import DTYPES

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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device_spec" in metafunc.fixturenames:
        # comparisons never take the reference as a device; benchmarks may time it
        compares = {"reference_run", "device_run"} & set(metafunc.fixturenames)
        specs = device_specs(metafunc.config, include_reference=not compares)
        metafunc.parametrize("device_spec", specs, ids=[s.id for s in specs], scope="session")


def not_run_lines(config: pytest.Config) -> list[str]:
    """What the conformance matrix left out and why, each once (allowed cases only)."""
    lines: list[str] = []
    for plan in config.stash.get(PLAN_KEY, {}).values():
        lines += [x for x in plan.not_run if x not in lines]
    return lines


@pytest.fixture(scope="session")
def perf_rows(pytestconfig: pytest.Config) -> list:
    """Where perf benchmarks leave their results for the end-of-session table."""
    return pytestconfig.stash[PERF_KEY]


@pytest.fixture(scope="session")
def gates(pytestconfig: pytest.Config):
    """The acceptance gates (``--gates`` or the committed data/gates.toml), validated when
    the session starts."""
    return pytestconfig.stash[GATES_KEY]


@pytest.fixture(scope="session")
def conformance_profile(pytestconfig: pytest.Config):
    """The profile both the device and the reference run with (a dump's recorded one;
    another geometry only with --force-profile)."""
    from scrfd_ref.device_flow import decode_profile
    from scrfd_ref.errors import ScrfdRefError
    from scrfd_ref.profiles import get_profile

    name = pytestconfig.getoption("--profile")
    source = pytestconfig.stash.get(SOURCE_KEY, None)
    if source is None:
        return get_profile(name or "widerface-eval")
    try:
        profile, _ = decode_profile(source, get_profile(name) if name else None,
                                    force=pytestconfig.getoption("--force-profile"))
    except ScrfdRefError as exc:
        pytest.fail(str(exc), pytrace=False)
    return profile


@pytest.fixture(scope="session")
def eval_items(wider_images_dir: Path, ground_truth):
    """Every WIDER val image present whose event is in the ground truth."""
    from scrfd_ref.widerface.run import list_images

    events = [p.name for p in sorted(wider_images_dir.iterdir())
              if p.is_dir() and p.name in ground_truth.events]
    return list_images(wider_images_dir, events)


@pytest.fixture(scope="session")
def conformance_report(pytestconfig: pytest.Config, conformance_profile, gates, eval_items):
    """The session's report collector (written at the end with --report DIR)."""
    from scrfd_ref.report import library_versions

    report = pytestconfig.stash[REPORT_KEY]
    report.meta.update(profile=conformance_profile.to_dict(), gates=gates.source,
                       versions=library_versions(), images=len(eval_items),
                       events=sorted({i.event for i in eval_items}))
    return report


class _Runs:
    """Session cache of runs, keyed by device id (and variant for references)."""

    def __init__(self) -> None:
        self.runs: dict[str, object] = {}
        self.ap: dict[str, object] = {}


@pytest.fixture(scope="session")
def run_cache() -> _Runs:
    return _Runs()


@pytest.fixture(scope="session")
def conformance_set(device_spec, eval_items, pytestconfig):
    """(images, head image keys, replay index) for this device."""
    from scrfd_ref.conformance import replay_images

    from scrfd_ref.errors import ScrfdRefError

    items, index = list(eval_items), None
    if device_spec.outputs_dir is not None:
        try:
            items, index = replay_images(Path(device_spec.outputs_dir), items)
        except ScrfdRefError as exc:
            pytest.fail(f"--device-outputs: {exc}", pytrace=False)
    n = max(0, pytestconfig.getoption("--head-images"))
    step = max(1, len(items) // n) if n else len(items) + 1
    heads = [f"{it.event}/{it.name}" for it in items[::step][:n]]
    return items, heads, index


@pytest.fixture(scope="session")
def variant_model(device_spec, data_root, pytestconfig):
    """The ONNX file of the device's variant (the matrix leaves out the variants whose
    absence is allowed; any other missing model fails here, or skips without
    --require-data)."""
    model = data_mod.find_model(device_spec.variant, data_root)
    if model is None:
        reason = data_mod.missing_model_reason(device_spec.variant, data_root)
        if pytestconfig.getoption("--require-data"):
            pytest.fail(f"--require-data: {reason}", pytrace=False)
        pytest.skip(reason)
    return model


@pytest.fixture(scope="session")
def landmark_free(device_spec, pytestconfig) -> bool:
    """True when the device declares it has no landmark heads (a dump whose manifest
    records ``landmarks: false``, e.g. of a model exported with --drop-landmarks); then
    the landmark gate does not apply. Without a declaration a device lacking the
    reference's landmarks fails."""
    source = pytestconfig.stash.get(SOURCE_KEY, None)
    if device_spec.outputs_dir is None or source is None or source.manifest is None:
        return False
    return source.manifest.get("landmarks") is False


@pytest.fixture(scope="session")
def peer(pytestconfig):
    """``insightface.model_zoo.scrfd``, the peer implementation (in the test extra): its
    absence fails under --require-data (CI) and skips otherwise."""
    try:
        import insightface.model_zoo.scrfd as scrfd
    except ImportError as exc:
        reason = f"the peer package insightface is not installed ({exc}); pip install -e '.[test]'"
        if pytestconfig.getoption("--require-data"):
            pytest.fail(f"--require-data: {reason}", pytrace=False)
        pytest.skip(reason)
    return scrfd


def _reference(config: pytest.Config, run_cache: "_Runs", variant: str, model: Path, profile,
               items, heads=()):
    """The fp32 ORT run of ``variant`` (memory cache, then --ref-cache, then computed)."""
    from scrfd_ref.conformance import (REFERENCE, DeviceSpec, cached_run, open_backend,
                                       run_device, run_key)

    spec = DeviceSpec(*REFERENCE, variant)
    key = run_key(model, spec, profile, items, heads)
    if key not in run_cache.runs:
        def compute():
            with open_backend(spec, model) as backend:
                return run_device(backend, profile, items, head_images=heads,
                                  device=f"reference {spec.id}", progress=False)
        cache = config.getoption("--ref-cache")
        run_cache.runs[key] = cached_run(Path(cache) if cache else None, key, compute)
    return run_cache.runs[key]


@pytest.fixture(scope="session")
def reference_run(device_spec, variant_model, conformance_profile, conformance_set, run_cache,
                  pytestconfig):
    """The fp32 ONNX Runtime run of the device's variant over the same images (cached)."""
    items, heads, _ = conformance_set
    return _reference(pytestconfig, run_cache, device_spec.variant, variant_model,
                      conformance_profile, items, heads)


@pytest.fixture(scope="session")
def device_run(device_spec, variant_model, conformance_profile, conformance_set, run_cache,
               conformance_report, pytestconfig):
    """The device's run (a backend that cannot run here fails under --require-data, else
    skips with a one-line reason)."""
    from scrfd_ref.conformance import open_backend, run_device
    from scrfd_ref.errors import BackendUnavailable, ScrfdRefError

    items, heads, index = conformance_set
    if device_spec.id not in run_cache.runs:
        try:
            backend = open_backend(device_spec, variant_model)
        except BackendUnavailable as exc:
            if pytestconfig.getoption("--require-data"):
                pytest.fail(f"--require-data: {device_spec.id} cannot run here: {exc}",
                            pytrace=False)
            pytest.skip(f"{device_spec.id}: {exc}")
        except ScrfdRefError as exc:  # a bad device folder: named, never a pass
            pytest.fail(f"{device_spec.id}: {exc}", pytrace=False)
        with backend:
            try:
                run_cache.runs[device_spec.id] = run_device(
                    backend, conformance_profile, items, head_images=heads,
                    device=device_spec.id, replay_index=index, progress=False)
            except ScrfdRefError as exc:
                pytest.fail(f"{device_spec.id}: {exc}", pytrace=False)
    run = run_cache.runs[device_spec.id]
    conformance_report.device(device_spec.id, spec={"backend": device_spec.backend,
                                                    "dtype": device_spec.dtype,
                                                    "variant": device_spec.variant},
                              info=run.info)
    return run


@pytest.fixture(scope="session")
def ap_pair(device_spec, device_run, reference_run, ground_truth, run_cache):
    """(reference, device) WIDER results on the device's images, official protocol."""
    from scrfd_ref.widerface.evaluate import evaluate

    if device_spec.id not in run_cache.ap:
        keys = [tuple(k.split("/", 1)) for k in device_run.detections]
        ref = evaluate(reference_run.predictions(), ground_truth, images=keys)
        dev = evaluate(device_run.predictions(), ground_truth, images=keys)
        run_cache.ap[device_spec.id] = (ref, dev)
    return run_cache.ap[device_spec.id]


@pytest.fixture(scope="session")
def reference_ap(data_root, eval_items, ground_truth, run_cache, pytestconfig):
    """``reference_ap(variant, profile)``: WIDER AP of the fp32 ORT reference run (cached,
    the same run the conformance suite compares devices against)."""
    from scrfd_ref.profiles import get_profile
    from scrfd_ref.widerface.evaluate import evaluate

    def _ap(variant: str, profile: str):
        model = data_mod.find_model(variant, data_root)
        if model is None:
            reason = data_mod.missing_model_reason(variant, data_root)
            if pytestconfig.getoption("--require-data"):
                pytest.fail(f"--require-data: {reason}", pytrace=False)
            pytest.skip(reason)
        run = _reference(pytestconfig, run_cache, variant, model, get_profile(profile), eval_items)
        preds = run.predictions()
        return evaluate(preds, ground_truth, images=list(preds))

    return _ap
