"""``localize judge``: read a cut folder, a device's outputs and the bands; judge.

The cut folder is the one ``localize cut`` wrote (``localize_cuts.json``, complete, every
golden matching its recorded sha256). The device's outputs are one folder per cut named
after the cut model (``<outputs>/NN_<stage>.segment/output_NNNNNN.npz``, and optionally
``NN_<stage>.prefix/``), one file per image of the cut's datalist, keys ``output_0..``
in the cut's output order (what ``scrfd-ref dump`` or ``localize run`` writes, or a
vendor's tools in the dump conventions). Every segment must be there; prefixes may be.
When the outputs folder carries ``localize_run.json`` (``localize run``), its files are
checked against their recorded sha256 and the run must have used these cuts.
"""
from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any, Mapping

from scrfd_ref.core.dtypes import DTYPES
from scrfd_ref.core.errors import InputError, ManifestError
from scrfd_ref.device.cuts import CUTS_FORMAT, CUTS_MANIFEST
from scrfd_ref.device.stages import STAGE_KINDS
from scrfd_ref.diagnose.localize import EXACT_DB, Band, Bands, LocalizeResult, score_stage
from scrfd_ref.formats.cut_npz import read_cut_npz
from scrfd_ref.formats.datadir import project_file
from scrfd_ref.formats.device_npz import OUTPUT_PATTERN
from scrfd_ref.formats.files import display, file_digest
from scrfd_ref.formats.manifest import list_sha256, read_source
from scrfd_ref.formats.run_outputs import hash_problems
from scrfd_ref.formats.strict import StrictFormatError, regular_file_text

RUN_MANIFEST = "localize_run.json"
DEFAULT_BANDS = project_file("localize_bands.toml")


def _band(entry: Any, where: str) -> Band:
    if not isinstance(entry, dict) or set(entry) != {"snr_db", "channel_snr_db", "why"}:
        raise InputError(f"{where} must hold exactly snr_db, channel_snr_db and why")
    nums = [entry["snr_db"], entry["channel_snr_db"]]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(v) and abs(v) <= EXACT_DB for v in nums) \
            or not isinstance(entry["why"], str) or not entry["why"].strip():
        raise InputError(f"{where}: snr_db and channel_snr_db are finite numbers of dB (-{EXACT_DB:g} "
                         f"to {EXACT_DB:g}), why a sentence")
    return Band(float(nums[0]), float(nums[1]), entry["why"].strip())


def read_bands(path: str | Path | None = None) -> Bands:
    """The bands file (default ``data/localize_bands.toml``).

    ``[<dtype>.<kind>]`` for every dtype and stage kind (any model), and optionally
    ``[stages.<variant>.<dtype>."<stage name>"]`` for the stages of measured variants;
    each holds ``snr_db``, ``channel_snr_db`` (numbers, dB) and ``why`` (text).

    Raises:
        InputError: unreadable, not TOML, a missing or unknown section or key (named).
    """
    p = Path(path) if path is not None else DEFAULT_BANDS
    try:
        doc = tomllib.loads(regular_file_text(p))
    except FileNotFoundError:
        raise InputError(f"bands file not found: {display(p)}") from None
    except (StrictFormatError, OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"bands file {display(p)}: not a readable TOML file ({exc})") from None
    where = f"bands file {display(p)}"
    extra = sorted(set(doc) - set(DTYPES) - {"version", "stages"})
    if doc.get("version", 1) != 1 or isinstance(doc.get("version"), bool):
        raise InputError(f"{where}: version {doc.get('version')!r}; this scrfd-ref reads "
                         "version 1")
    if extra:
        raise InputError(f"{where}: unknown section(s) {', '.join(extra)}; sections are the "
                         f"dtypes {', '.join(DTYPES)} and stages")
    kinds: dict[str, dict[str, Band]] = {}
    for dtype in DTYPES:
        section = doc.get(dtype)
        if not isinstance(section, dict):
            raise InputError(f"{where}: no [{dtype}] section")
        unknown = sorted(set(section) - set(STAGE_KINDS))
        if unknown:
            raise InputError(f"{where}: [{dtype}] has unknown kind(s) {', '.join(unknown)}; "
                             f"kinds are {', '.join(STAGE_KINDS)}")
        kinds[dtype] = {k: _band(section.get(k), f"{where}: [{dtype}.{k}]") for k in STAGE_KINDS}
    stages: dict[tuple[str, str, str], Band] = {}
    table = doc.get("stages", {})
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise InputError(f"{where}: [stages] holds one table per variant ([stages.<variant>."
                         "<dtype>.\"<stage>\"])")
    for variant, by_dtype in table.items():
        for dtype, by_stage in by_dtype.items():
            if dtype not in DTYPES or not isinstance(by_stage, dict):
                raise InputError(f"{where}: [stages.{variant}.{dtype}] is not a dtype's table")
            for stage, entry in by_stage.items():
                stages[(variant, dtype, stage)] = _band(
                    entry, f"{where}: [stages.{variant}.{dtype}.\"{stage}\"]")
    digest = file_digest(p)[:12] if p.is_file() else "?"
    return Bands(f"{display(p)} (sha256 {digest})", kinds, stages)


_STAGE_KEYS = ("index", "name", "kind", "slug", "nodes", "op_types", "inputs", "outputs",
               "prefix", "segment", "golden")


def _stage_problem(s: Any, i: int) -> str | None:
    if not isinstance(s, dict) or any(k not in s for k in _STAGE_KEYS):
        return f"stage {i} lacks some of {', '.join(_STAGE_KEYS)}"
    if s["kind"] not in STAGE_KINDS or s["index"] != i or not s["outputs"]:
        return f"stage {i} ({s.get('name')!r}) has a wrong kind, index or no outputs"
    for t in [*s["inputs"], *s["outputs"]]:
        if not (isinstance(t, dict) and isinstance(t.get("shape"), list)
                and all(isinstance(d, int) and 0 < d < 1 << 20 for d in t["shape"])):
            return f"stage {i} ({s['name']}) declares a tensor without a valid shape"
    return None


def cuts_digest(doc: Mapping[str, Any]) -> str:
    """One sha256 over every file of a cut folder (its manifest's record): what a run of
    the cuts records, so its outputs are judged only against the same cuts."""
    return list_sha256(f"{k}={v}" for k, v in sorted((doc.get("sha256") or {}).items()))


def _finished(folder: Path, name: str, option: str, again: str) -> dict | None:
    """The manifest ``name`` of ``folder`` (None: none), refused when its run did not finish
    (``again`` says what to run)."""
    try:
        return read_source(folder, name, option=option).manifest
    except ManifestError as exc:
        if "did not finish" in str(exc):
            raise ManifestError(f"{option} {display(folder)}: the run that wrote it did not "
                                f"finish ({name} says complete: false); {again}") from None
        raise


def read_cuts(cuts: Path, option: str = "--cuts") -> dict[str, Any]:
    """The finished manifest of a cut folder, every file it wrote checked against its sha256.

    Raises:
        ManifestError: no manifest, an incomplete or foreign one, stages that do not parse.
        InputError: a file of the folder missing or changed since ``localize cut`` wrote it.
    """
    where = f"{option} {display(cuts)}"
    doc = _finished(cuts, CUTS_MANIFEST, option, "run `scrfd-ref localize cut` again")
    if doc is None:
        raise ManifestError(f"{where}: no {CUTS_MANIFEST}; give the folder "
                            "`scrfd-ref localize cut` wrote")
    if doc.get("kind") != "localize-cut" or doc["identity"].get("cuts_format") != CUTS_FORMAT:
        raise ManifestError(f"{where}: {CUTS_MANIFEST} is not a cut folder of format "
                            f"{CUTS_FORMAT}; cut the model again with this scrfd-ref")
    stages, images = doc.get("stages"), doc.get("images")
    problem = ("no stages" if not isinstance(stages, list) or not stages else
               next((p for i, st in enumerate(stages) if (p := _stage_problem(st, i))), None))
    names = doc.get("image_list")
    if problem is None and not (isinstance(names, list) and len(names) == images):
        problem = "images and image_list disagree"
    if problem:
        raise ManifestError(f"{where}: {CUTS_MANIFEST} is damaged ({problem}); cut the model "
                            "again")
    files = list(doc.get("outputs") or [])
    missing = [f for f in files if not (cuts / f).is_file()]
    if missing or not doc.get("sha256"):
        raise InputError(f"{where}: {len(missing)} file(s) of the cut folder are missing "
                         f"({', '.join(missing[:3])}); restore them or cut the model again")
    problems = hash_problems(cuts, files, doc, manifest=CUTS_MANIFEST)
    if problems:
        raise InputError(problems[0])
    return doc


def _device_files(outputs: Path, folder: str, images: int, required: bool) -> list[Path] | None:
    where = outputs / folder
    if not where.is_dir():
        if required:
            raise InputError(f"--outputs {display(outputs)}: no folder {folder}/ (the outputs of "
                             f"cut {folder}); every segment must be run")
        return None
    files = [where / OUTPUT_PATTERN.format(i) for i in range(images)]
    missing = [f.name for f in files if not f.is_file()]
    extra = sorted(p.name for p in where.glob("output_*.npz") if p not in set(files))
    if missing or extra:
        what = (f"missing {', '.join(missing[:3])}" if missing
                else f"more files than images ({', '.join(extra[:3])})")
        raise InputError(f"{display(where)}: {what}; the cut's datalist has {images} image(s), "
                         "one output file each")
    return files


def _check_run(outputs: Path, cuts_doc: Mapping[str, Any], rels: list[str]) -> dict | None:
    doc = _finished(outputs, RUN_MANIFEST, "--outputs",
                    "run `scrfd-ref localize run` again (it starts over)")
    if doc is None:
        return None
    if doc["identity"].get("cuts_sha256") != cuts_digest(cuts_doc):
        raise InputError(f"--outputs {display(outputs)}: {RUN_MANIFEST} says it ran other cuts "
                         "(another model, image list, profile or input size than --cuts, or "
                         "cuts written again since); judge it with its own cuts")
    problems = hash_problems(outputs, rels, doc, manifest=RUN_MANIFEST)
    if problems:
        raise InputError(problems[0])
    return doc


def judge_folder(cuts: Path, outputs: Path, dtype: str | None = None,
                 bands: str | Path | None = None, device: str | None = None) -> LocalizeResult:
    """Judge a device's cut outputs against the goldens and the honest bands.

    ``dtype`` (the device's arithmetic; default: what ``localize_run.json`` records)
    picks the bands. Raises InputError / ManifestError for anything that does not pair.
    """
    doc = read_cuts(cuts)
    images = int(doc["images"])
    if images == 0:
        raise InputError(f"--cuts {display(cuts)}: the cut folder holds no image; nothing to judge")
    plan = []
    for s in doc["stages"]:
        slug = s["slug"]
        plan.append((s, _device_files(outputs, f"{slug}.segment", images, True),
                     _device_files(outputs, f"{slug}.prefix", images, False)))
    rels = [f.relative_to(outputs).as_posix() for _, seg, pre in plan
            for f in [*seg, *(pre or [])]]
    run = _check_run(outputs, doc, rels)
    recorded = (run or {}).get("identity", {}).get("dtype")
    if dtype is None:
        if recorded is None:
            raise InputError(f"--outputs {display(outputs)}: no {RUN_MANIFEST} says which dtype "
                             "the device ran; give --dtype")
        dtype = recorded
    elif recorded is not None and recorded != dtype:
        raise InputError(f"--dtype {dtype}: {RUN_MANIFEST} in {display(outputs)} records "
                         f"{recorded}; drop --dtype or judge with --dtype {recorded}")
    table = read_bands(bands)
    goldens, got, prefixes = {}, {}, {}
    for s, seg, pre in plan:
        shapes = [o["shape"] for o in s["outputs"]]
        goldens[s["slug"]] = [read_cut_npz(cuts / s["golden"] / OUTPUT_PATTERN.format(i), shapes)
                              for i in range(images)]
        got[s["slug"]] = [read_cut_npz(f, shapes) for f in seg]
        if pre:
            prefixes[s["slug"]] = [read_cut_npz(f, shapes) for f in pre]
    label = device or (run or {}).get("identity", {}).get("device") or display(outputs)
    return judge_stages(doc["stages"], goldens, got, table, dtype=dtype, device=label,
                        variant=doc["identity"].get("variant"), prefixes=prefixes)


def judge_stages(stages: list[Mapping[str, Any]], goldens: Mapping[str, list],
                 outputs: Mapping[str, list], bands: Bands, *, dtype: str, device: str,
                 variant: str | None = None,
                 prefixes: Mapping[str, list] | None = None) -> LocalizeResult:
    """Judge arrays already read: ``goldens[slug][i][k]`` / ``outputs[slug][i][k]`` is
    output k of image i of that stage's segment; each stage against its band for a
    ``dtype`` device (the stage's own when ``bands`` holds it for ``variant``)."""
    scores = [score_stage(s["index"], s, goldens[s["slug"]], outputs[s["slug"]],
                          bands.band(dtype, s["kind"], s["name"], variant),
                          (prefixes or {}).get(s["slug"]))
              for s in stages]
    images = len(next(iter(goldens.values()), []))
    return LocalizeResult(dtype, device, images, scores, bands.source)


__all__ = ["DEFAULT_BANDS", "RUN_MANIFEST", "cuts_digest", "judge_folder", "judge_stages", "read_bands",
           "read_cuts"]
