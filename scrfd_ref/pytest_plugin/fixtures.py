"""The conformance fixtures of the scrfd-ref pytest plugin
(:mod:`scrfd_ref.pytest_plugin.options`): ``gates``, ``conformance_profile``, ``reference_run``,
``device_run``, ``ap_paired``, ``judge``, ... build and cache the runs a device is judged
by, and judge them. The data fixtures are in :mod:`scrfd_ref.pytest_plugin.fixtures_data`.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from scrfd_ref.pytest_plugin.keys import (
    GATES_KEY,
    PERF_KEY,
    RECIPE_KEY,
    REPORT_KEY,
    SOURCE_KEY,
    VDSP_KEY,
)

__all__ = ["judge", "perf_rows", "gates", "conformance_profile", "eval_items",
           "conformance_report", "run_cache", "conformance_set", "variant_model",
           "landmark_free", "reference_run", "device_run", "ap_paired", "ap_pair",
           "reference_ap", "reference_run_for", "slices_paired"]



# ----------------------------------------------------------------------------- conformance


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
    from scrfd_ref.core.errors import ScrfdRefError
    from scrfd_ref.core.profiles import get_profile
    from scrfd_ref.device.flow import check_vdsp_record, decode_profile
    from scrfd_ref.formats.vdsp import apply_vdsp

    name = pytestconfig.getoption("--profile")
    source = pytestconfig.stash.get(SOURCE_KEY, None)
    vdsp = pytestconfig.stash.get(VDSP_KEY, None)
    requested = get_profile(name) if name else None
    force = pytestconfig.getoption("--force-profile")
    try:
        if vdsp is not None:
            recorded = ((source.identity.get("profile") or {}).get("name")
                        if source is not None else None)
            requested = apply_vdsp(get_profile(name or recorded or "device-flow"), vdsp)
            if source is not None:
                check_vdsp_record(source, vdsp, force=force)
        if source is None:
            return requested or get_profile("widerface-eval")
        profile, _ = decode_profile(source, requested, force=force)
    except ScrfdRefError as exc:
        pytest.fail(str(exc), pytrace=False)
    return profile


@pytest.fixture(scope="session")
def eval_items(wider_images_dir: Path, ground_truth):
    """Every WIDER val image present whose event is in the ground truth, except the int8
    calibration images (``data/calibration_images.txt``): calibration and evaluation never
    share an image."""
    from scrfd_ref.formats.dataset import list_images
    from scrfd_ref.quantize.calibration import calibration_keys

    events = [p.name for p in sorted(wider_images_dir.iterdir())
              if p.is_dir() and p.name in ground_truth.events]
    held_out = set(calibration_keys())
    return [i for i in list_images(wider_images_dir, events)
            if f"{i.event}/{i.name}" not in held_out]


@pytest.fixture(scope="session")
def conformance_report(pytestconfig: pytest.Config, conformance_profile, gates, eval_items):
    """The session's report collector (written at the end with --report DIR)."""
    from scrfd_ref.report.document import library_versions

    report = pytestconfig.stash[REPORT_KEY]
    report.meta.update(profile=conformance_profile.to_dict(), gates=gates.source,
                       versions=library_versions(), images=len(eval_items),
                       events=sorted({i.event for i in eval_items}))
    vdsp = pytestconfig.stash.get(VDSP_KEY, None)
    if vdsp is not None:
        report.meta["vdsp_params"] = vdsp.to_record()
    built = pytestconfig.stash.get(RECIPE_KEY, None)
    if built is not None:
        report.meta["build_yaml"] = built[0].to_record()
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
    from scrfd_ref.conformance.runs import replay_images
    from scrfd_ref.core.errors import ScrfdRefError

    items, index = list(eval_items), None
    if device_spec.outputs_dir is not None:
        try:
            items, index = replay_images(Path(device_spec.outputs_dir), items,
                                         partial=device_spec.partial)
        except ScrfdRefError as exc:
            pytest.fail(f"--device-outputs: {exc}", pytrace=False)
    return items, head_images(items, pytestconfig.getoption("--head-images")), index


def head_images(items, n: int) -> list[str]:
    """The ``n`` images (evenly spread) whose raw heads a run keeps."""
    n = max(0, n)
    step = max(1, len(items) // n) if n else len(items) + 1
    return [f"{it.event}/{it.name}" for it in items[::step][:n]]


@pytest.fixture(scope="session")
def variant_model(device_spec, variant_file):
    """The ONNX file of the device's variant."""
    return variant_file(device_spec.variant)


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


def _reference(config: pytest.Config, run_cache: "_Runs", variant: str, model: Path, profile,
               items, heads=()):
    """The fp32 ORT run of ``variant`` (memory cache, then --ref-cache, then computed)."""
    from scrfd_ref.conformance.runs import (
        REFERENCE,
        DeviceSpec,
        cached_run,
        open_backend,
        run_device,
        run_key,
    )

    spec = DeviceSpec(*REFERENCE, variant)
    key = run_key(model, spec, profile, items, heads)
    if key not in run_cache.runs:
        def compute():
            with open_backend(spec, model) as backend:
                return run_device(backend, profile, items, head_images=heads,
                                  device=f"reference {spec.id}", progress=False)
        from scrfd_ref.pytest_plugin.keys import NOTICES_KEY

        cache = config.getoption("--ref-cache")
        notices = config.stash.setdefault(NOTICES_KEY, [])
        run_cache.runs[key] = cached_run(Path(cache) if cache else None, key, compute,
                                         notice=notices.append)
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
    from scrfd_ref.conformance.runs import open_backend, run_device
    from scrfd_ref.core.errors import BackendUnavailable, ScrfdRefError

    items, heads, index = conformance_set
    if device_spec.id not in run_cache.runs:
        try:
            built = pytestconfig.stash.get(RECIPE_KEY, None)
            backend = open_backend(device_spec, variant_model,
                                   recipe=built[1] if built is not None else None)
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
    events = sorted({k.split("/", 1)[0] for k in run.detections})
    left_out = _left_out_of_dump(index, items)
    conformance_report.device(device_spec.id, spec={"backend": device_spec.backend,
                                                    "dtype": device_spec.dtype,
                                                    "variant": device_spec.variant,
                                                    "images": len(run.detections),
                                                    "events": events,
                                                    "left_out": left_out,
                                                    "provenance": _provenance(
                                                        device_spec, variant_model,
                                                        pytestconfig)},
                              info=run.info)
    return run


def _left_out_of_dump(index, items) -> dict | None:
    """The dump's images that were not judged, and why (None: not a dump, or none)."""
    from scrfd_ref.quantize.calibration import calibration_keys

    if index is None:
        return None
    judged = {it.name for it in items}
    left = [name for name in index if name not in judged]
    if not left:
        return None
    calibration = {k.split("/", 1)[1] for k in calibration_keys()}
    why = []
    n_cal = sum(1 for name in left if name in calibration)
    if n_cal:
        why.append(f"{n_cal} int8 calibration image{'s' * (n_cal != 1)} (never judged: "
                   "calibration and evaluation never share an image)")
    if len(left) - n_cal:
        why.append(f"{len(left) - n_cal} not among the data folder's WIDER val images")
    return {"count": len(left), "why": "; ".join(why), "images": left[:20]}


def _provenance(device_spec, model: Path, config: pytest.Config) -> dict:
    """Where the device's outputs come from (:mod:`scrfd_ref.conformance.provenance`)."""
    from scrfd_ref.conformance.provenance import replay_provenance, run_provenance
    from scrfd_ref.formats.files import file_digest

    if device_spec.outputs_dir is not None:
        source = config.stash.get(SOURCE_KEY, None)
        return replay_provenance(source.manifest if source is not None else None,
                                 str(device_spec.outputs_dir))
    return run_provenance(device_spec.backend, device_spec.dtype, Path(model).name,
                          file_digest(model))


@pytest.fixture(scope="session")
def ap_paired(device_spec, device_run, reference_run, ground_truth, run_cache, gates):
    """The paired image bootstrap of device vs reference WIDER AP on the device's images
    (official protocol; confidence, resamples and seed from the dtype's AP gates)."""
    from scrfd_ref.conformance.checks import ap_bootstrap

    if device_spec.id not in run_cache.ap:
        keys = [tuple(k.split("/", 1)) for k in device_run.detections]
        run_cache.ap[device_spec.id] = ap_bootstrap(
            reference_run.predictions(), device_run.predictions(), ground_truth, keys, gates,
            device_spec.dtype)
    return run_cache.ap[device_spec.id]


@pytest.fixture(scope="session")
def slices_paired(device_spec, device_run, reference_run, ground_truth, gates):
    """``(paired, missing)``: the per-slice paired bootstrap of device vs reference
    (:func:`scrfd_ref.conformance.slice_checks.slices_bootstrap`), or ``(None, why)`` when
    the ground truth has no face attributes."""
    from scrfd_ref.conformance.slice_checks import slices_bootstrap

    if not ground_truth.has_attributes:
        return None, (f"the ground truth {ground_truth.source} has no face attributes; "
                      "put the official wider_face_val.mat (with its *_label_list keys) in "
                      "DATA/widerface/ground_truth (--data-dir / SCRFD_DATA)")
    keys = [tuple(k.split("/", 1)) for k in device_run.detections]
    return slices_bootstrap(reference_run.predictions(), device_run.predictions(),
                            ground_truth, keys, gates, device_spec.dtype), ""


@pytest.fixture(scope="session")
def ap_pair(ap_paired):
    """(reference, device) WIDER results on the device's images, official protocol (the
    full sets of :func:`ap_paired`)."""
    return ap_paired.result_a, ap_paired.result_b


@pytest.fixture(scope="session")
def reference_run_for(variant_file, eval_items, run_cache, pytestconfig):
    """``reference_run_for(variant, profile)``: the fp32 ORT reference run of ``variant`` on
    the held-out images (cached: the very run the conformance suite compares devices with,
    same images and head images)."""
    from scrfd_ref.core.profiles import get_profile

    def _run(variant: str, profile: str):
        heads = head_images(list(eval_items), pytestconfig.getoption("--head-images"))
        return _reference(pytestconfig, run_cache, variant, variant_file(variant),
                          get_profile(profile), list(eval_items), heads)

    return _run


@pytest.fixture(scope="session")
def reference_ap(reference_run_for, ground_truth):
    """``reference_ap(variant, profile)``: WIDER AP of the fp32 ORT reference run (cached,
    the same run the conformance suite compares devices against)."""
    from scrfd_ref.widerface.evaluate import evaluate

    def _ap(variant: str, profile: str):
        preds = reference_run_for(variant, profile).predictions()
        return evaluate(preds, ground_truth, images=list(preds))

    return _ap


@pytest.fixture
def judge(device_spec, conformance_report, request, pytestconfig):
    """``judge(result)``: record a check's :class:`~scrfd_ref.conformance.checks.LevelResult`
    in the session report, then by its verdict: a failed gate fails the test listing every
    failed gate; an inconclusive one (the images cannot decide) fails it too, worded as
    INCONCLUSIVE with what the images lack and reported in its own category (the summary
    line says "inconclusive", never "failed"), unless ``--accept-inconclusive``, which
    lets it pass and lists it at the end as accepted, not as evidence."""
    from scrfd_ref.pytest_plugin.keys import INCONCLUSIVE_KEY
    from scrfd_ref.pytest_plugin.verdict import VERDICT_PROPERTY

    def _judge(result) -> None:
        conformance_report.record(device_spec.id, result.level, result.rows, result.metrics,
                                  test=request.node.nodeid)
        verdict = result.verdict
        if verdict == "fail":
            _likely_causes(request, device_spec, conformance_report)
            pytest.fail(f"{device_spec.id}: {result.level} gates failed:\n"
                        + "\n".join(result.failures), pytrace=False)
        if verdict == "inconclusive":
            lines = result.inconclusive or [f"{result.level}: nothing was judged"]
            pytestconfig.stash.setdefault(INCONCLUSIVE_KEY, []).append(
                (device_spec.id, result.level, lines))
            if pytestconfig.getoption("--accept-inconclusive"):
                return
            request.node.user_properties.append((VERDICT_PROPERTY, "inconclusive"))
            pytest.fail(f"INCONCLUSIVE {device_spec.id}: {result.level}: the images cannot "
                        "decide (not evidence of conformance, not a device failure; "
                        "--accept-inconclusive accepts it for a smoke run):\n"
                        + "\n".join(lines), pytrace=False)
    return _judge


def _likely_causes(request, device_spec, report) -> None:
    """Once per failing device: the output-level diagnosis of its kept heads
    (:mod:`scrfd_ref.diagnose.heads`) in the report's "Likely causes" section."""
    from scrfd_ref.diagnose.run import diagnose_with_gates

    section = report.sections.setdefault("likely_causes", {"devices": {}, "markdown": ""})
    if device_spec.id in section["devices"]:
        return
    gates = request.getfixturevalue("gates")
    dev, ref = request.getfixturevalue("device_run"), request.getfixturevalue("reference_run")
    keys = [k for k in ref.heads if k in dev.heads]
    if not keys:
        section["devices"][device_spec.id] = ["no head-level image in common: nothing to "
                                              "diagnose"]
    else:
        result = diagnose_with_gates([ref.heads[k] for k in keys],
                                     [dev.heads[k] for k in keys], gates, device_spec.dtype)
        section["devices"][device_spec.id] = result.lines()
    lines = ["## Likely causes", "",
             "For each device with a failed gate, the known causes that undoing on its raw "
             "heads makes it match (scrfd-ref diagnose; preprocessing variants there too).", ""]
    for dev_id, found in section["devices"].items():
        lines += [f"- `{dev_id}`:"] + [f"  - {ln.strip()}" for ln in found]
    section["markdown"] = "\n".join(lines)

