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

import tomllib
from pathlib import Path
from typing import Any, Mapping

from scrfd_ref.core.dtypes import DTYPES
from scrfd_ref.core.errors import InputError, ManifestError
from scrfd_ref.device.cuts import CUTS_FORMAT, CUTS_MANIFEST
from scrfd_ref.device.stages import STAGE_KINDS
from scrfd_ref.diagnose.localize import Band, LocalizeResult, score_stage
from scrfd_ref.formats.cut_npz import read_cut_npz
from scrfd_ref.formats.datadir import project_file
from scrfd_ref.formats.device_npz import OUTPUT_PATTERN
from scrfd_ref.formats.files import display, file_digest
from scrfd_ref.formats.manifest import read_source
from scrfd_ref.formats.run_outputs import hash_problems
from scrfd_ref.formats.strict import StrictFormatError, regular_file_text

RUN_MANIFEST = "localize_run.json"
DEFAULT_BANDS = project_file("localize_bands.toml")


def read_bands(path: str | Path | None = None) -> tuple[str, dict[str, dict[str, Band]]]:
    """The bands file (default ``data/localize_bands.toml``): ``(source, {dtype: {kind:
    Band}})``; every dtype x stage kind must have ``snr_db``, ``channel_snr_db`` (numbers)
    and ``why`` (text).

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
    table: dict[str, dict[str, Band]] = {}
    extra = sorted(set(doc) - set(DTYPES) - {"version"})
    if extra:
        raise InputError(f"bands file {display(p)}: unknown section(s) {', '.join(extra)}; "
                         f"sections are the dtypes {', '.join(DTYPES)}")
    for dtype in DTYPES:
        section = doc.get(dtype)
        if not isinstance(section, dict):
            raise InputError(f"bands file {display(p)}: no [{dtype}] section")
        table[dtype] = {}
        for kind in STAGE_KINDS:
            entry = section.get(kind)
            where = f"bands file {display(p)}: [{dtype}.{kind}]"
            if not isinstance(entry, dict) or set(entry) != {"snr_db", "channel_snr_db", "why"}:
                raise InputError(f"{where} must hold exactly snr_db, channel_snr_db and why")
            nums = [entry["snr_db"], entry["channel_snr_db"]]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in nums) \
                    or not isinstance(entry["why"], str) or not entry["why"].strip():
                raise InputError(f"{where}: snr_db and channel_snr_db are numbers (dB), why "
                                 "a sentence")
            table[dtype][kind] = Band(float(nums[0]), float(nums[1]), entry["why"].strip())
    return display(p), table


def read_cuts(cuts: Path, option: str = "--cuts") -> dict[str, Any]:
    """The finished manifest of a cut folder (its goldens checked against their sha256)."""
    source = read_source(cuts, CUTS_MANIFEST, option=option)
    if source.manifest is None:
        raise ManifestError(f"{option} {display(cuts)}: no {CUTS_MANIFEST}; give the folder "
                            "`scrfd-ref localize cut` wrote")
    doc = source.manifest
    if doc.get("kind") != "localize-cut" or doc["identity"].get("cuts_format") != CUTS_FORMAT:
        raise ManifestError(f"{option} {display(cuts)}: {CUTS_MANIFEST} is not a cut folder of "
                            f"format {CUTS_FORMAT}; cut the model again with this scrfd-ref")
    images = int(doc.get("images") or 0)
    goldens = [f"{s['golden']}/{OUTPUT_PATTERN.format(i)}" for s in doc["stages"]
               for i in range(images)]
    problems = hash_problems(cuts, goldens, doc, manifest=CUTS_MANIFEST)
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
    source = read_source(outputs, RUN_MANIFEST, option="--outputs")
    doc = source.manifest
    if doc is None:
        return None
    want = cuts_doc["identity"]["model_sha256"]
    if doc["identity"].get("cuts_model_sha256") != want \
            or doc["identity"].get("cuts_image_list_sha256") \
            != cuts_doc["identity"]["image_list_sha256"]:
        raise InputError(f"--outputs {display(outputs)}: {RUN_MANIFEST} says it ran other cuts "
                         "(another model or image list than --cuts); judge it with its own cuts")
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
    source, table = read_bands(bands)
    goldens, got, prefixes = {}, {}, {}
    for s, seg, pre in plan:
        shapes = [o["shape"] for o in s["outputs"]]
        goldens[s["slug"]] = [read_cut_npz(cuts / s["golden"] / OUTPUT_PATTERN.format(i), shapes)
                              for i in range(images)]
        got[s["slug"]] = [read_cut_npz(f, shapes) for f in seg]
        if pre:
            prefixes[s["slug"]] = [read_cut_npz(f, shapes) for f in pre]
    label = device or (run or {}).get("identity", {}).get("device") or display(outputs)
    if Path(source).is_file():
        source = f"{source} (sha256 {file_digest(source)[:12]})"
    return judge_stages(doc["stages"], goldens, got, table[dtype], dtype=dtype, device=label,
                        bands_source=source, prefixes=prefixes)


def judge_stages(stages: list[Mapping[str, Any]], goldens: Mapping[str, list],
                 outputs: Mapping[str, list], bands: Mapping[str, Band], *, dtype: str,
                 device: str, bands_source: str,
                 prefixes: Mapping[str, list] | None = None) -> LocalizeResult:
    """Judge arrays already read: ``goldens[slug][i][k]`` / ``outputs[slug][i][k]`` is
    output k of image i of that stage's segment; ``bands`` the dtype's bands by kind."""
    scores = [score_stage(s["index"], s, goldens[s["slug"]], outputs[s["slug"]],
                          bands[s["kind"]], (prefixes or {}).get(s["slug"]))
              for s in stages]
    images = len(next(iter(goldens.values()), []))
    return LocalizeResult(dtype, device, images, scores, bands_source)


__all__ = ["DEFAULT_BANDS", "RUN_MANIFEST", "judge_folder", "judge_stages", "read_bands",
           "read_cuts"]
