"""``scrfd-ref localize trials``: how well localize works on a model (see
:mod:`scrfd_ref.diagnose.localize_trials`)."""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from scrfd_ref.cli.args import add_command, resolve_model, resolve_profile
from scrfd_ref.formats.files import display, input_file, output_dir, write_bytes, write_text

#: margin below the lowest honest score, per dtype (dB): other images move an honest
#: device's SNR by a few dB (int8 most: its ranges follow the images)
BAND_MARGIN_DB = {"fp32": 20.0, "fp16": 6.0, "bf16": 6.0, "int8": 10.0}
#: what trials must reach to exit 0
MIN_HONEST, MIN_NAMED = 0.95, 0.90


def datalist_folders(datalist: Path) -> list[Path]:
    """The folders of a datalist's input npz files (inputs: no output goes inside them)."""
    from scrfd_ref.formats.device_npz import read_datalist

    if not datalist.is_file():
        return []
    return sorted({Path(e).parent for e in read_datalist(datalist)})


def _slug(model: str) -> str:
    """A folder name for a model given as a variant or a path."""
    return model.replace("/", "_").replace("\\", "_")


def _entry(header: str, e: Mapping[str, Any], dtype: str) -> list[str]:
    low_snr, low_ch = e["lowest_db"]
    why = (f"lowest of {', '.join(e['devices'])} over {e['n']} stage run(s) of "
           f"{', '.join(e['variants'])}: segment {low_snr} dB, worst channel {low_ch} dB, "
           f"less {BAND_MARGIN_DB[dtype]:g} dB for other images")
    return [header, f"snr_db = {e['snr_db']}", f"channel_snr_db = {e['channel_snr_db']}",
            f'why = "{why}"', ""]


def bands_toml(measured: tuple[Mapping, Mapping], source: str, fallback: Any) -> str:
    """The bands file text (:func:`~scrfd_ref.diagnose.localize_trials.measure_bands`'s
    kind and stage bands), each table with its justification; a dtype x kind nothing
    measured keeps ``fallback``'s (a :class:`~scrfd_ref.diagnose.localize.Bands`)."""
    from scrfd_ref.core.dtypes import DTYPES
    from scrfd_ref.device.stages import STAGE_KINDS

    kinds, stages = measured
    lines = ["# Localize bands: the lowest segment SNR and worst-channel SNR (dB) that honest",
             "# devices of each dtype reach on each kind of stage (any model), and on each stage",
             "# of the variants measured, less a margin for other images. Tolerant comparisons",
             "# (never bit-exact: an honest device of another arithmetic rounds differently).",
             "# A stage below either bound is outside its band; a stage of a measured variant",
             "# is judged by its own band, any other by its kind's.",
             f"# Measured by `scrfd-ref localize trials` on {source}.", "version = 1", ""]
    for dtype in DTYPES:
        for kind in STAGE_KINDS:
            e = (kinds.get(dtype) or {}).get(kind)
            if e is not None:
                lines += _entry(f"[{dtype}.{kind}]", e, dtype)
                continue
            f = fallback.kinds[dtype][kind]
            lines += [f"[{dtype}.{kind}]", f"snr_db = {f.snr_db}",
                      f"channel_snr_db = {f.channel_snr_db}", f'why = "{f.why}"', ""]
    for (variant, dtype, stage), e in sorted(stages.items()):
        lines += _entry(f'[stages."{variant}".{dtype}."{stage}"]', e, dtype)
    return "\n".join(lines)


def trials_markdown(summary: Mapping[str, Any]) -> str:
    """The trial table as Markdown: per fault x device, stage named in the trials whose
    fault moves its stage beyond the honest band; honest rows first; a last column counts
    the faults that stay inside the honest noise (right: no stage or their stage)."""
    table, below, stages = summary["table"], summary["below_noise"], summary["stages"]
    devices = sorted({d for row in [*table.values(), *below.values()] for d in row})
    out = ["| trial | stages | " + " | ".join(devices) + " | all | inside honest noise |",
           "|---|---|" + "---|" * (len(devices) + 2)]
    for fault in sorted(set(table) | set(below), key=lambda f: (f != "honest", f)):
        row = table.get(fault, {})
        cells = [f"{row[d][1]}/{row[d][0]}" if d in row else "" for d in devices]
        n, k = sum(v[0] for v in row.values()), sum(v[1] for v in row.values())
        bn = sum(v[0] for v in below.get(fault, {}).values())
        bk = sum(v[1] for v in below.get(fault, {}).values())
        label = "honest (no stage)" if fault == "honest" else f"{fault} (stage named)"
        out.append(f"| {label} | {'' if fault == 'honest' else stages.get(fault, 0)} | "
                   + " | ".join(cells) + f" | {k}/{n} ({100 * k / max(n, 1):.0f} %) | "
                   + (f"{bk}/{bn}" if bn else "") + " |")
    return "\n".join(out) + "\n"


def cmd_trials(args: argparse.Namespace) -> int:
    """Measure localize on a model: honest devices and faults injected into single nodes.

    For each --model and each --datalist (image sets), the model is cut and every honest
    device (--honest) runs every segment: it should get "no stage". Then each fault of
    --faults is injected into one node per stage it applies to (seeded choice) and run on
    each --fault-devices device (int8_scale into the ort/int8 build): the stage holding
    the node should be named. With --calibration-datalist the bands are first measured on
    those images (honest devices, all models) and written to OUT/bands.toml. Writes
    trials.json and trials.md; exit 1 when honest devices get "no stage" in fewer than
    95 % of trials or faults are named in fewer than 90 %.
    """
    import orjson

    from scrfd_ref.diagnose import localize_trials as lt
    from scrfd_ref.diagnose.localize_folder import read_bands

    profile = resolve_profile(args, "device-flow")
    profile = profile.replace(input_size=profile.input_size or (640, 640))
    models = {m: resolve_model(m, args.data_dir) for m in (args.model or ["500m_bnkps"])}
    lists = [input_file(d, "--datalist", "datalist") for d in args.datalist]
    cals = [input_file(d, "--calibration-datalist", "datalist")
            for d in args.calibration_datalist or []]
    lists_all = [*lists, *cals]
    out = output_dir(args.out, "--out", inputs=[*lists_all, *models.values(),
                                                *(f for d in lists_all
                                                  for f in datalist_folders(d))])
    bands = read_bands(input_file(args.bands, "--bands", "bands file") if args.bands else None)
    work = out / "cuts"
    if cals:
        scores = []
        for name, model in models.items():
            for cal in cals:
                image_set = lt.make_image_set(
                    model, cal, work / f"{_slug(name)}.calibration.{cal.stem}", profile)
                for device in args.honest:
                    scores += lt.segment_scores(image_set, device, work / "tmp")
                image_set.release()
                shutil.rmtree(image_set.cuts, ignore_errors=True)
        measured = lt.measure_bands(scores, BAND_MARGIN_DB)
        where = f"{', '.join(models)} x {', '.join(display(c) for c in cals)}"
        write_text(out / "bands.toml", bands_toml(measured, where, bands))
        write_bytes(out / "calibration_scores.json",
                    orjson.dumps(scores, option=orjson.OPT_INDENT_2))
        bands = read_bands(out / "bands.toml")
        print(f"localize trials: bands measured on {where} -> {display(out / 'bands.toml')}")
    def maker(model: Path, name: str, d: Path):
        return lambda: lt.make_image_set(model, d, work / f"{_slug(name)}.{d.stem}", profile)

    plan = [(name, [(d.stem, maker(model, name, d)) for d in lists])
            for name, model in models.items()]

    def release(image_set: lt.ImageSet) -> None:
        image_set.release()
        shutil.rmtree(image_set.cuts, ignore_errors=True)   # goldens: tens of MB per image

    stream = out / "trials.jsonl"     # each trial as it ends: nothing lost to an interruption
    stream.unlink(missing_ok=True)

    def report(r: lt.TrialResult) -> None:
        with open(stream, "ab") as f:
            f.write(orjson.dumps(asdict(r) | {"correct": r.correct}) + b"\n")
        if not args.quiet:
            mark = "ok  " if r.correct else "MISS"
            print(f"  {mark} {r.variant:12s} {r.image_set:10s} {r.device:18s} {r.fault:18s} "
                  f"{r.node or '':14s} expected {r.expected} named {r.named}", file=sys.stderr)

    results = lt.run_trials(plan, bands, faults=args.faults, fault_devices=args.fault_devices,
                            honest_devices=args.honest, seed=args.seed, report=report,
                            release=release)
    summary = lt.trial_table(results)
    summary["bands"] = bands.source
    write_bytes(out / "trials.json", orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    md = trials_markdown(summary)
    write_text(out / "trials.md", f"# localize trials\n\nbands: {bands.source}\n\n{md}")
    print(md)
    honest = [r for r in results if r.fault == "honest"]
    faults = [r for r in results if r.fault != "honest" and r.observable]
    ok_h = sum(r.correct for r in honest) / max(1, len(honest))
    ok_f = sum(r.correct for r in faults) / max(1, len(faults))
    print(f"honest devices: no stage in {100 * ok_h:.1f} % of {len(honest)} trials (target "
          f"{100 * MIN_HONEST:g} %); faults: stage named in {100 * ok_f:.1f} % of {len(faults)} "
          f"(target {100 * MIN_NAMED:g} %) among the faults that move their stage beyond the "
          "honest band")
    if not honest and not faults:
        print("scrfd-ref localize trials: no trial ran", file=sys.stderr)
        return 1
    return 0 if ok_h >= MIN_HONEST and ok_f >= MIN_NAMED else 1


def register_trials(lsub: Any, honest: Sequence[str] | None = None) -> None:
    """Add ``localize trials`` to the ``localize`` sub-parsers."""
    from scrfd_ref.core.profiles import PROFILES
    from scrfd_ref.diagnose.localize_trials import (
        FAULT_DEVICES,
        FLOAT_FAULTS,
        HONEST_DEVICES,
    )
    from scrfd_ref.device.node_faults import NODE_FAULTS
    from scrfd_ref.quantize.cut_builds import CUT_DEVICES

    t = add_command(lsub, "trials", cmd_trials)
    t.add_argument("--model", "-m", action="append", default=None,
                   help="model or variant (repeat for several; default 500m_bnkps)")
    t.add_argument("--datalist", action="append", required=True, metavar="FILE",
                   help="an image set (input npz datalist) for the trials; repeat for several")
    t.add_argument("--calibration-datalist", action="append", default=None, metavar="FILE",
                   help="measure the bands on these images first (write OUT/bands.toml); "
                        "repeat for several image sets (the bands hold the lowest of all)")
    t.add_argument("--bands", default=None, metavar="FILE",
                   help="bands file (default: the shipped data/localize_bands.toml)")
    t.add_argument("--honest", nargs="+", default=list(HONEST_DEVICES), choices=list(CUT_DEVICES),
                   metavar="DEVICE", help="honest devices (default: %(default)s)")
    t.add_argument("--fault-devices", nargs="+", default=list(FAULT_DEVICES),
                   choices=list(CUT_DEVICES), metavar="DEVICE",
                   help="devices faults are injected into (default: %(default)s)")
    t.add_argument("--faults", nargs="+", default=[*FLOAT_FAULTS, "int8_scale"],
                   choices=list(NODE_FAULTS), metavar="FAULT",
                   help="faults: " + "; ".join(f"{k}: {v}" for k, v in NODE_FAULTS.items()))
    t.add_argument("--seed", type=int, default=0, help="seed of the node choice (default 0)")
    t.add_argument("--profile", "-P", default=None, choices=sorted(PROFILES),
                   help="preprocessing of the images (default device-flow)")
    t.add_argument("--out", required=True, metavar="DIR", help="folder for trials.json / .md")
    t.add_argument("--quiet", "-q", action="store_true", help="no line per trial")
