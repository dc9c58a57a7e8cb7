"""The vendor device flow's steps, with any backend standing in for the device.

``image2npz`` (images -> input npz + datalist), ``dump`` (input npz -> vamp-style output
npz through a backend), ``npz_decode`` (output npz + datalist + original images -> WIDER
txt).

Every step checks its whole input before it writes anything
(:mod:`scrfd_ref.formats.device_outputs`), writes files atomically, and keeps a manifest in its
output folder (:mod:`scrfd_ref.formats.manifest`): a dump records the model, backend,
dtype, profile, image list and the content of its inputs (sha256 of each input npz) in
``scrfd_dump.json``, so an interrupted dump resumes only into the same run (inputs
regenerated under the same names are another run), its consumers refuse it while
incomplete (or pair what exists, when accepted on purpose), and ``npz_decode`` decodes
with the preprocessing and the image list the dump recorded. Each manifest lists the files
its run writes: ``--overwrite`` removes those and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from tqdm import tqdm

from scrfd_ref import __version__
from scrfd_ref.backends import Backend
from scrfd_ref.core.decode import decode
from scrfd_ref.core.errors import InputError, UsageError, problem_list
from scrfd_ref.core.heads import normalize_heads
from scrfd_ref.core.parallel import StageClock, map_with_pool, prefetch
from scrfd_ref.core.postprocess import postprocess
from scrfd_ref.core.preprocess import letterbox_geometry, preprocess
from scrfd_ref.core.profiles import Profile, geometry_differences, profile_from_dict
from scrfd_ref.formats.dataset import list_images, prediction_files
from scrfd_ref.formats.device_npz import (
    OUTPUT_NAME,
    OUTPUT_PATTERN,
    input_fingerprints,
    is_input_npz,
    output_path,
    read_datalist,
    read_input_npz,
    write_datalist,
    write_input_npz,
    write_output_npz,
)
from scrfd_ref.formats.device_outputs import CheckedOutputs, check_outputs
from scrfd_ref.formats.files import display, same_path
from scrfd_ref.formats.images import read_image, read_image_size
from scrfd_ref.formats.manifest import (
    DUMP_MANIFEST,
    RUN_MANIFEST,
    RunManifest,
    Source,
    list_sha256,
    open_run,
    read_source,
)
from scrfd_ref.formats.vdsp import VdspParams
from scrfd_ref.formats.wider_txt import wider_rows, write_predictions

DUMP_META = DUMP_MANIFEST


def image2npz(dataset_path: str | Path, target_path: str | Path, text_path: str | Path, *,
              events: Sequence[str] | None = None, progress: bool = True) -> list[Path]:
    """Write ``<target>/<name>.npz`` (``input_0`` uint8 RGB CHW) per ``<dataset>/<event>/<name>.jpg``
    and the datalist of absolute npz paths; return the npz paths in datalist order.

    Raises:
        InputError: two events hold images of the same name (the flat npz folder would
            overwrite one with the other).
    """
    items = list_images(dataset_path, events)
    seen: dict[str, str] = {}
    dupes = []
    for it in items:
        if it.name in seen:
            dupes.append(f"{it.name} ({seen[it.name]}, {it.event})")
        seen.setdefault(it.name, it.event)
    if dupes:
        raise InputError(f"{display(dataset_path)}: image names repeat across events "
                         f"({', '.join(dupes[:5])}); the flat npz folder would overwrite them")
    for item in items:   # every header within the pixel limit before one file is written
        read_image_size(item.path)
    target = Path(target_path)
    foreign = [f"{it.name}.npz" for it in items if (target / f"{it.name}.npz").exists()
               and not is_input_npz(target / f"{it.name}.npz")]
    if foreign:
        raise UsageError(f"--target-path {display(target)}: {len(foreign)} file(s) under the "
                         f"names image2npz writes are not input npz files ({', '.join(foreign[:5])})"
                         "; they are not replaced: move them away, or choose another folder")
    paths = []
    for item, image in tqdm(prefetch(lambda it: read_image(it.path), items, depth=8),
                            total=len(items), desc="image2npz", unit="img", disable=not progress):
        paths.append(write_input_npz(target / f"{item.name}.npz", image))
    write_datalist(text_path, paths)
    return paths


def _dump_files(folder: Path) -> list[Path]:
    files = [f for f in folder.iterdir() if OUTPUT_NAME.match(f.name) and f.is_file()]
    return sorted(files) + ([folder / "datalist.txt"] if (folder / "datalist.txt").is_file() else [])


def dump_identity(backend: Backend, profile: Profile, entries: Sequence[Path], dtype: str,
                  meta: Mapping[str, Any] | None = None,
                  inputs: Mapping[str, list] | None = None) -> dict[str, Any]:
    """What makes two dumps the same dump (the manifest's ``identity``); ``inputs`` (from
    :func:`~scrfd_ref.formats.device_npz.input_fingerprints`) adds the inputs' content."""
    info = backend.info()
    identity = {**(meta or {}), "backend": info.get("backend", backend.name),
                "output_dtype": dtype, "profile": profile.to_dict(),
                "image_list_sha256": list_sha256(Path(e).name for e in entries)}
    if inputs is not None:
        identity["inputs_sha256"] = list_sha256(inputs[Path(e).name][2] for e in entries)
    return identity


def dump(backend: Backend | Sequence[Backend], datalist: str | Path, out_dir: str | Path,
         profile: Profile, *,
         dtype: str = "fp32", progress: bool = True, meta: Mapping[str, Any] | None = None,
         resume: bool = True, overwrite: bool = False, clock: StageClock | None = None) -> int:
    """Run every datalist input through ``backend`` and write vamp-style output npz files.

    ``backend`` may be several sessions of the same model (one intra-op thread each):
    each worker thread then takes whole inputs (read, letterbox, infer, check, write) on
    its own session (:func:`scrfd_ref.core.parallel.map_with_pool`); ``clock`` collects
    the time per stage (read, preprocess, infer, check, write).

    Inputs are letterboxed with ``profile`` (the device resizes and normalises; the
    profile says how). The backend must produce the device layout (a model exported
    with ``export-device-layout``); outputs are cast to ``dtype`` (fp16 or fp32).
    ``scrfd_dump.json`` (the manifest: ``meta`` such as model sha256, variant and dtype,
    plus backend, output dtype, profile, image list) and a copy of the datalist
    (``datalist.txt``) go beside the outputs, so the folder replays on its own. A dump
    into a folder of the same run resumes (files already written are kept unless
    ``resume`` is False); a folder of another run is refused unless ``overwrite``.

    Returns the number of output files written by this call.

    Raises:
        InputError: missing or unreadable inputs (all listed), a standard-layout model.
        UsageError: ``out_dir`` holds another run, or is where the inputs are.
    """
    entries = read_datalist(datalist)
    out = Path(out_dir)
    missing = [f"{display(p)}: input npz not found" for p in entries if not p.is_file()]
    if missing:
        raise problem_list(missing, f"datalist {display(datalist)}")
    for p in entries:
        if p.parent.exists() and same_path(p.parent, out) and OUTPUT_NAME.match(p.name):
            raise UsageError(f"--out {display(out)}: the datalist lists {display(p)}, a file "
                             "this dump would overwrite; write the outputs elsewhere")
    sessions = list(backend) if isinstance(backend, (list, tuple)) else [backend]
    first = sessions[0]
    fingerprints = input_fingerprints(entries)  # content, always (identity by content)
    identity = dump_identity(first, profile, entries, dtype, meta, fingerprints)
    copy = out / "datalist.txt"
    own_copy = not (copy.exists() and same_path(copy, datalist))
    run = open_run(out, DUMP_MANIFEST, "dump", identity, overwrite=overwrite,
                   run_files=_dump_files, inputs=[datalist, *entries],
                   outputs=[OUTPUT_PATTERN.format(i) for i in range(len(entries))]
                   + (["datalist.txt"] if own_copy else []))
    with run:
        return _dump_into(run, sessions, entries, datalist, fingerprints, own_copy, profile,
                          dtype, resume, progress,
                          clock if clock is not None else StageClock())


def _dump_into(run: RunManifest, sessions: list[Backend], entries: list[Path],
               datalist: str | Path, fingerprints: Mapping[str, list], own_copy: bool,
               profile: Profile, dtype: str, resume: bool, progress: bool,
               clock: StageClock) -> int:
    """The body of :func:`dump` once its run is open (files recorded as written)."""
    out = run.folder
    run.update(image_list=[Path(e).name for e in entries], inputs=fingerprints)
    if own_copy:
        write_datalist(out / "datalist.txt", entries)
        run.record(out / "datalist.txt")
    kept = run.keep([output_path(out, i).name for i in range(len(entries))], resume)
    todo = [(i, p) for i, p in enumerate(entries) if output_path(out, i).name not in kept]

    def one(session: Backend, item: tuple[int, Path]) -> bool:
        i, path = item
        with clock.stage("read"):
            arr = read_input_npz(path)
        with clock.stage("preprocess"):
            blob = preprocess([arr], profile)[0]
        with clock.stage("infer"):
            outputs = session.run(blob)
        with clock.stage("check"):
            heads = normalize_heads(outputs, profile.input_size,
                                    where=f"{session.name} on {display(path)}",
                                    check_finite=False)
        if heads.layout != "device":
            raise InputError(f"{session.name}: the model gives the standard layout; dump writes "
                             "the device layout: export it first (scrfd-ref export-device-layout)")
        with clock.stage("write"):
            run.record(write_output_npz(output_path(out, i), outputs, dtype))
        return heads.has_landmarks

    landmarks = run.doc.get("landmarks")
    for has_landmarks in tqdm(map_with_pool(one, todo, sessions), total=len(todo),
                              desc="dump", unit="img", disable=not progress):
        landmarks = has_landmarks
    # ``landmarks: false`` declares a landmark-free device (a model exported with
    # --drop-landmarks): the conformance suite then does not expect landmark heads
    run.finish(files=len(entries), written=len(todo), images=len(entries),
               backend_info=sessions[0].info(), scrfd_ref=__version__, landmarks=landmarks)
    return len(todo)


@dataclass(frozen=True)
class DecodeSummary:
    """What ``npz_decode`` did (``inverted``: boxes with a negative width or height, kept;
    ``unfinished``: 1-based datalist lines an incomplete dump has no output for yet)."""

    images: int
    detections: int
    inverted: int
    skipped: int = 0
    skipped_reasons: tuple[str, ...] = ()
    unfinished: tuple[int, ...] = ()
    lines: int = 0


def check_device_outputs(datalist: str | Path, outputs_dir: str | Path,
                         images_dir: str | Path, *, input_size: tuple[int, int] | None = None,
                         skip_bad: bool = False, partial: bool = False) -> CheckedOutputs:
    """Pair datalist lines with output files and original images; report every problem
    (see :func:`scrfd_ref.formats.device_outputs.check_outputs`)."""
    return check_outputs(outputs_dir, datalist, input_size=input_size, images_dir=images_dir,
                         skip_bad=skip_bad, partial=partial)


def decode_profile(source: Source, requested: Profile | None, *, force: bool = False,
                   **thresholds: Any) -> tuple[Profile, str | None]:
    """The profile to decode a dump with, and a notice (or None).

    The dump's recorded profile is the default; a ``requested`` profile whose
    preprocessing geometry differs from the recorded one is refused unless ``force``
    (decoding with another letterbox shifts every box). Thresholds (``score_thr``,
    ``nms_thr``, ...) may differ on purpose.

    Raises:
        UsageError: geometry differs from the recording and ``force`` is not set.
    """
    recorded = source.identity.get("profile")
    notice = None
    if recorded is None:
        base = requested or profile_from_dict({"name": "device-flow"})
        if requested is None:
            notice = "no recorded profile: decoding with device-flow"
    else:
        rec = profile_from_dict(recorded)
        if requested is None:
            base = rec
        else:
            diff = geometry_differences(rec, requested)
            if diff and not force:
                raise UsageError(
                    f"--profile {requested.name}: the dump was letterboxed with "
                    f"{rec.describe_geometry()} (profile {rec.name}) but "
                    f"{', '.join(diff)} differ; decode with the recorded profile (drop "
                    "--profile / --input-size) or pass --force-profile")
            base = requested
            if diff:
                notice = (f"--force-profile: decoding with {requested.describe_geometry()} "
                          f"although the dump recorded {rec.describe_geometry()}")
    return base.replace(**thresholds), notice


def _decode_files(folder: Path) -> list[Path]:
    return prediction_files(folder)


def npz_decode(datalist: str | Path, outputs_dir: str | Path, images_dir: str | Path,
               out_dir: str | Path, profile: Profile, *, progress: bool = True,
               skip_bad: bool = False, source: Source | None = None,
               overwrite: bool = False) -> DecodeSummary:
    """Decode vamp output npz files into WIDER txt (``<out>/<event>/<name>.txt``).

    Every output file and original image is checked first; nothing is written while one
    is bad, unless ``skip_bad`` (the bad entries are left out and counted). Each output's
    original image (found by name under the event folders) gives the size that, with
    ``profile``'s letterbox, maps detections back to original pixels. ``scrfd_run.json``
    in ``out_dir`` records the source and the profile. An incomplete dump accepted on
    purpose (``source`` says ``complete: false``) is decoded for the lines whose output
    exists (``unfinished`` names the others).

    Raises:
        InputError: every problem with the inputs, listed.
        UsageError: ``out_dir`` holds another run's predictions.
    """
    partial = bool(source is not None and source.manifest is not None
                   and not source.manifest.get("complete"))
    checked = check_device_outputs(datalist, outputs_dir, images_dir,
                                   input_size=profile.input_size, skip_bad=skip_bad,
                                   partial=partial)
    out = Path(out_dir)
    identity = {"source": {"dump": (source.manifest or {}).get("identity") if source else None,
                           "image_list_sha256": list_sha256(
                               s.entry.name for s in checked.slots)},
                "profile": profile.to_dict()}
    written = [f"{checked.originals[s.index].parent.name}/{checked.originals[s.index].stem}.txt"
               for s in checked.slots]
    run = open_run(out, RUN_MANIFEST, "npz-decode", identity, overwrite=overwrite,
                   run_files=_decode_files, outputs=written,
                   inputs=[datalist, outputs_dir, images_dir])
    n_dets = n_inv = 0
    with run:
        for slot in tqdm(checked.slots, desc="npz-decode", unit="img", disable=not progress):
            original = checked.originals[slot.index]
            t = letterbox_geometry(checked.sizes[slot.index], profile.input_size,
                                   profile.letterbox)
            heads = normalize_heads(checked.read(slot), profile.input_size,
                                    where=display(slot.file))
            dets = postprocess(decode(heads, profile.score_thr, profile.score_strict)[0], t,
                               profile)
            rows, inverted = wider_rows(dets)
            run.record(write_predictions(out, original.parent.name, original.stem, rows))
            n_dets += rows.shape[0]
            n_inv += inverted
        # an incomplete dump decoded on purpose: the lines it has no output for are recorded
        run.finish(images=len(checked.slots), detections=n_dets, skipped=len(checked.skipped),
                   skipped_entries={str(i + 1): why for i, why in checked.skipped.items()},
                   source_complete=not partial,
                   unfinished_lines=[i + 1 for i in checked.unfinished])
    return DecodeSummary(len(checked.slots), n_dets, n_inv, len(checked.skipped),
                         tuple(f"line {i + 1}: {why}" for i, why in checked.skipped.items()),
                         tuple(i + 1 for i in checked.unfinished),
                         len(checked.slots) + len(checked.skipped) + len(checked.unfinished))


def dump_source(outputs_dir: str | Path, *, allow_incomplete: bool = False,
                option: str = "--outputs") -> Source:
    """The manifest of a dump folder for a consumer (see :func:`read_source`)."""
    return read_source(outputs_dir, DUMP_MANIFEST, allow_incomplete=allow_incomplete,
                       option=option)


def check_recorded_inputs(source: Source, datalist: str | Path, outputs: str | Path) -> None:
    """Refuse a datalist whose input npz files are not the ones the dump was made from.

    A dump's manifest records each input's sha256 (``inputs``) and their list's
    (``identity.inputs_sha256``); inputs regenerated under the same names (another
    letterbox, another image) would otherwise be decoded against outputs made from
    different pixels. Every input is read and hashed (a file rewritten with its old size
    and modification time is still told apart).

    Raises:
        InputError: an input's content differs from the record (the files named).
    """
    recorded = (source.manifest or {}).get("inputs")
    if not source.identity.get("inputs_sha256") or not isinstance(recorded, Mapping):
        return
    # inputs that are not there are the pairing check's to name (check_outputs)
    entries = [e for e in read_datalist(datalist) if Path(e).is_file()]
    now = input_fingerprints(entries)  # content, always: a size and time can be kept
    changed = [name for name, fp in now.items()
               if isinstance(recorded.get(name), list) and len(recorded[name]) == 3
               and recorded[name][2] != fp[2]]
    if changed:
        shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
        raise InputError(f"--datalist {display(datalist)}: {len(changed)} input npz file(s) "
                         f"differ from the ones the dump {display(outputs)} was made from "
                         f"({shown}); decode with the inputs the device ran on")


def check_vdsp_record(source: Source, vdsp: VdspParams, *, force: bool = False) -> str | None:
    """Refuse a vdsp params file other than the one a dump recorded; a notice or None.

    A dump made with ``--vdsp-params`` records the file's content; decoding it with a
    different file would judge the device with another preprocessing.

    Raises:
        UsageError: the recorded file differs (the differing ``OpConfig`` fields are named)
            and ``force`` is not set.
    """
    recorded = source.identity.get("vdsp_params")
    if not isinstance(recorded, dict) or recorded.get("sha256") == vdsp.sha256:
        return None
    old = {"OpType": recorded.get("OpType"), **(recorded.get("OpConfig") or {})}
    new = {"OpType": vdsp.op_type, **dict(vdsp.config)}
    fields = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted({*old, *new})
              if old.get(k) != new.get(k)] or ["the text only"]
    what = (f"--vdsp-params {vdsp.source}: the dump was made with vdsp params "
            f"{recorded.get('file')} and this file differs ({'; '.join(fields[:4])}"
            f"{'; ...' if len(fields) > 4 else ''})")
    if not force:
        raise UsageError(what + "; give the recorded file, drop --vdsp-params, or pass "
                                "--force-profile")
    return "--force-profile: " + what
