"""Run a device over an image set and keep what the three conformance levels need.

A :class:`DeviceSpec` names a device (backend x dtype x variant, or a replay folder);
:func:`open_backend` builds its backend (converting the model to the dtype, cached);
:func:`run_device` runs it over images with one profile and returns a :class:`Run`:
final detections of every image plus head outputs of a few images. Runs are saved and
reloaded as files (:meth:`Run.save` / :meth:`Run.load`), so the fp32 reference can be
shared through a cache folder (pytest-xdist workers, several hosts) and a comparison can
be replayed without the device.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from scrfd_ref import __version__
from scrfd_ref.backends import Backend, get_backend
from scrfd_ref.core.decode import decode
from scrfd_ref.core.detections import Detections
from scrfd_ref.core.errors import BackendUnavailable, InputError, ScrfdRefError
from scrfd_ref.core.heads import Heads, normalize_heads
from scrfd_ref.core.parallel import prefetch
from scrfd_ref.core.postprocess import postprocess
from scrfd_ref.core.preprocess import letterbox_geometry, preprocess
from scrfd_ref.core.profiles import Profile
from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.formats.dataset import ImageItem
from scrfd_ref.formats.images import read_image

REFERENCE = ("ort", "fp32")

#: variants whose weights the shared data does not hold: their absence is an allowed skip
#: (../shared/docs/conventions.md); a missing model of any other variant fails under
#: --require-data
WEIGHTS_NOT_SHARED: tuple[str, ...] = ("500m", "10g", "10g_bnkps", "34g")
#: backend x dtype combinations a backend does not support: left out of the matrix
UNSUPPORTED: dict[tuple[str, str], str] = {
    ("opencv", "int8"): "cv2.dnn cannot run ONNX Runtime's QDQ int8 models (it rejects them "
                        "on 1g / 2.5g and gives constant scores on 2.5g_bnkps)",
    ("opencv", "bf16"): "cv2.dnn has no bfloat16 (neither a bf16 target nor the Cast of the "
                        "bf16-storage emulation); the bf16 devices are ort (emulated) and "
                        "openvino (native)",
}


def backend_unavailable(name: str) -> str | None:
    """Why backend ``name`` cannot run on this machine (None when it can): only the GPU
    backend depends on the machine (the allowed "no GPU" skip). An optional extra that is
    not installed (openvino) stays in the matrix: its devices skip with the install line,
    or fail under --require-data."""
    if name != "gpu":
        return None
    from scrfd_ref.backends.gpu import gpu_providers

    try:
        gpu_providers()
    except BackendUnavailable as exc:
        return str(exc)
    return None


def dtype_unavailable(backend: str, dtype: str) -> str | None:
    """Why ``backend`` cannot run ``dtype`` on this machine although it runs others (None
    when it can, or when the backend itself is missing): OpenVINO's native bf16 / fp16
    need the CPU capability (the allowed "no native bf16" case of the conventions)."""
    if backend != "openvino":
        return None
    try:
        from scrfd_ref.backends.openvino import dtype_unavailable as why
        return why(dtype)
    except BackendUnavailable:
        return None


@dataclass
class MatrixPlan:
    """The devices a conformance session checks, and what it leaves out and why."""

    specs: list["DeviceSpec"]
    not_run: list[str]


def plan_matrix(variants: Sequence[str], backends: Sequence[str], dtypes: Sequence[str],
                data_root: Path, *, require_data: bool, include_reference: bool = False
                ) -> MatrixPlan:
    """Every backend x dtype x variant to check, leaving out only the allowed cases.

    Left out, each named once in ``not_run``: the reference itself (ort fp32; unless
    ``include_reference``, for benchmarks), unsupported combinations (:data:`UNSUPPORTED`),
    backends this machine cannot run (no GPU), and variants without weights, which is
    allowed under ``require_data`` only for :data:`WEIGHTS_NOT_SHARED`: any other missing
    model stays in the matrix, so its tests fail naming the file.
    """
    not_run: list[str] = []
    if not include_reference:
        not_run.append(f"{REFERENCE[0]} {REFERENCE[1]}: the fp32 reference itself, not a device")
    absent = [v for v in variants if data_mod.find_model(v, data_root) is None
              and (v in WEIGHTS_NOT_SHARED or not require_data)]
    if absent:
        not_run.append(f"{', '.join(absent)}: no weights under {data_root / 'models'} (put "
                       f"scrfd_<variant>.onnx there)")
    down = {b: why for b in backends if (why := backend_unavailable(b))}
    for b, why in down.items():
        not_run.append(why if why.startswith(f"{b}:") else f"{b}: {why}")
    unsupported = {(b, d): why for (b, d), why in UNSUPPORTED.items()
                   if b in backends and d in dtypes}
    unsupported.update({(b, d): why for b in backends if b not in down for d in dtypes
                        if (why := dtype_unavailable(b, d))})
    for (b, d), why in unsupported.items():
        not_run.append(why if why.startswith(f"{b} {d}:") else f"{b} {d}: {why}")
    specs = [DeviceSpec(b, d, v) for v in variants if v not in absent for b in backends
             if b not in down for d in dtypes
             if (b, d) not in unsupported and (include_reference or (b, d) != REFERENCE)]
    return MatrixPlan(specs, not_run)


@dataclass(frozen=True)
class DeviceSpec:
    """One device under test: ``backend-dtype-variant`` (replay: outputs folder too)."""

    backend: str
    dtype: str
    variant: str
    outputs_dir: Path | None = None
    partial: bool = False     # an interrupted dump replayed on purpose (--allow-incomplete)

    @property
    def id(self) -> str:
        """Readable test id, e.g. ``ort-int8-500m_bnkps``."""
        return f"{self.backend}-{self.dtype}-{self.variant}"

    @property
    def is_reference(self) -> bool:
        """True for the fp32 ONNX Runtime run, the reference itself."""
        return (self.backend, self.dtype) == REFERENCE and self.outputs_dir is None


def open_backend(spec: DeviceSpec, model: Path | None, *, cache: Path | None = None,
                 recipe: Any = None) -> Backend:
    """Build the backend of ``spec``: the model converted to its dtype (cached), or replay;
    ``recipe``: the int8 :class:`~scrfd_ref.quantize.convert.QuantRecipe` (a build YAML's).

    Raises BackendUnavailable (a one-line reason) when the combination cannot run here.
    """
    if spec.outputs_dir is not None:
        return get_backend("replay", spec.outputs_dir, dtype=spec.dtype, partial=spec.partial)
    if model is None:
        raise BackendUnavailable(data_mod.missing_model_reason(spec.variant))
    from scrfd_ref.quantize.prepare import prepare_model

    path = prepare_model(model, dtype=spec.dtype, cache=cache, backend=spec.backend,
                         recipe=recipe if spec.dtype == "int8" else None)
    return get_backend(spec.backend, path, dtype=spec.dtype)


@dataclass
class Run:
    """What one device produced over an image set with one profile.

    Attributes:
        device: the device id (``ort-fp32-500m_bnkps``).
        info: backend identity (library, version, provider, dtype, device).
        profile: every profile setting used.
        detections: ``{image key: Detections}`` for every image, key ``event/name``.
        heads: ``{image key: Heads}`` (batch 1) for the head-level images only.
        scales: ``{image key: letterbox scale}`` (network-input px per original px,
            ``sqrt(scale_x * scale_y)``), for the size buckets.
    """

    device: str
    info: dict[str, Any]
    profile: dict[str, Any]
    detections: dict[str, Detections]
    heads: dict[str, Heads] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)

    def predictions(self) -> dict[tuple[str, str], np.ndarray]:
        """``{(event, name): (n, 5) x y w h score}`` for WIDER evaluation (inverted boxes dropped)."""
        from scrfd_ref.formats.wider_txt import wider_rows

        return {tuple(k.split("/", 1)): wider_rows(d)[0] for k, d in self.detections.items()}

    def save(self, folder: str | Path) -> Path:
        """Write the run to ``folder`` (atomically: a temp folder renamed into place)."""
        from scrfd_ref.formats.files import atomic_dir

        target = Path(folder)
        arrays: dict[str, np.ndarray] = {}
        for k, d in self.detections.items():
            arrays[f"det/{k}/boxes"], arrays[f"det/{k}/scores"] = d.boxes, d.scores
            if d.landmarks is not None:
                arrays[f"det/{k}/landmarks"] = d.landmarks
        for k, h in self.heads.items():
            for name, a in _head_items(h):
                arrays[f"heads/{k}/{name}"] = a
        meta = {"device": self.device, "info": self.info, "profile": self.profile,
                "images": list(self.detections), "head_images": list(self.heads),
                "heads_meta": {k: {"layout": h.layout, "input_size": list(h.input_size),
                                   "kps": h.kps is not None} for k, h in self.heads.items()},
                "scales": self.scales, "scrfd_ref": __version__}
        from scrfd_ref.formats.files import file_digest

        with atomic_dir(target) as tmp:
            np.savez(tmp / "run.npz", **arrays)
            # checked by load: the arrays' file, and every other field of run.json
            meta["sha256"] = {"run.npz": file_digest(tmp / "run.npz"),
                              "run.json": _meta_digest(meta)}
            (tmp / "run.json").write_text(json.dumps(meta, indent=1))
        return target

    @classmethod
    def load(cls, folder: str | Path) -> "Run":
        """Read a run written by :meth:`save`; clear errors for a broken folder, or one
        whose ``run.npz`` is not the file :meth:`save` recorded (sha256 in ``run.json``)."""
        from scrfd_ref.formats.files import file_digest
        from scrfd_ref.formats.strict import json_loads, regular_file_text

        f = Path(folder)
        try:
            meta = json_loads(regular_file_text(f / "run.json"))
            recorded = meta.get("sha256") or {}
            if recorded.get("run.npz") != file_digest(f / "run.npz"):
                raise InputError("run.npz is not the file saved with run.json (sha256 "
                                 f"{'differs' if recorded.get('run.npz') else 'not recorded'})")
            if recorded.get("run.json") != _meta_digest(meta):
                raise InputError("run.json was changed after it was saved (its sha256 differs)")
            with np.load(f / "run.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            dets = {k: Detections(arrays[f"det/{k}/boxes"], arrays[f"det/{k}/scores"],
                                  arrays.get(f"det/{k}/landmarks"))
                    for k in meta["images"]}
            heads = {}
            for k in meta["head_images"]:
                hm = meta["heads_meta"][k]
                get = lambda kind: tuple(arrays[f"heads/{k}/{kind}_{s}"] for s in (8, 16, 32))  # noqa: E731
                heads[k] = Heads(hm["layout"], tuple(hm["input_size"]), get("score"),
                                 get("bbox"), get("kps") if hm["kps"] else None)
            return cls(meta["device"], meta["info"], meta["profile"], dets, heads,
                       {k: float(v) for k, v in meta.get("scales", {}).items()})
        except Exception as exc:  # noqa: BLE001 - any damage means "not a saved run"
            raise InputError(f"{f}: not a readable saved run ({type(exc).__name__}: "
                             f"{exc})") from exc


def _meta_digest(meta: dict[str, Any]) -> str:
    """sha256 of a saved run's ``run.json`` fields other than the ``sha256`` record."""
    import hashlib

    body = {k: v for k, v in meta.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _head_items(h: Heads) -> list[tuple[str, np.ndarray]]:
    groups = [("score", h.scores), ("bbox", h.boxes)] + ([("kps", h.kps)] if h.kps is not None else [])
    return [(f"{kind}_{s}", a) for kind, arrays in groups for s, a in zip(h.strides, arrays)]


def _batch1(h: Heads, i: int) -> Heads:
    pick = lambda arrays: tuple(a[i:i + 1].copy() for a in arrays)  # noqa: E731
    return Heads(h.layout, h.input_size, pick(h.scores), pick(h.boxes),
                 pick(h.kps) if h.kps is not None else None, h.strides)


def run_device(backend: Backend, profile: Profile, items: Sequence[ImageItem], *,
               head_images: Sequence[str] = (), device: str = "?",
               replay_index: dict[str, int] | None = None, progress: bool = True) -> Run:
    """Run ``backend`` over ``items`` with ``profile``; keep detections and some heads.

    For a replay backend, ``replay_index`` maps image names to output-file indices
    (datalist order); the image is then only read for its size.
    """
    keep_heads = set(head_images)
    scales: dict[str, float] = {}
    dets: dict[str, Detections] = {}
    heads_kept: dict[str, Heads] = {}

    def load(item: ImageItem):
        image = read_image(item.path)
        if replay_index is not None:
            t = letterbox_geometry((image.shape[1], image.shape[0]), profile.input_size,
                                   profile.letterbox)
            return None, [t]
        return preprocess([image], profile)

    where = f"{device} outputs"
    for item, (blob, transforms) in tqdm(prefetch(load, items, depth=4), total=len(items),
                                         desc=device, unit="img", disable=not progress,
                                         leave=False):
        key = f"{item.event}/{item.name}"
        scales[key] = math.sqrt(transforms[0].scale_x * transforms[0].scale_y)
        if replay_index is not None:
            if item.name not in replay_index:
                raise InputError(f"{device}: no device output for image {key}")
            outputs = backend.outputs_for(replay_index[item.name])  # type: ignore[attr-defined]
        else:
            outputs = backend.run(blob)
        heads = normalize_heads(outputs, profile.input_size, where=f"{where} for {key}",
                                check_finite=False)
        if key in keep_heads:
            heads_kept[key] = _batch1(heads, 0)
        if _finite(heads):
            dets[key] = postprocess(decode(heads, profile.score_thr, profile.score_strict)[0],
                                    transforms[0], profile)
        else:  # a device emitting NaN/Inf: no detections, the head check names the head
            dets[key] = Detections.empty(heads.kps is not None)
    return Run(device, backend.info(), profile.to_dict(), dets, heads_kept, scales)


def _finite(h: Heads) -> bool:
    return all(np.isfinite(a).all() for _, a in _head_items(h))


def run_key(model: Path, spec: DeviceSpec, profile: Profile, items: Sequence[ImageItem],
            head_images: Sequence[str]) -> str:
    """Cache key of a run: model bytes, device, profile, image list, library versions."""
    import onnxruntime

    from scrfd_ref.quantize.prepare import file_digest

    h = hashlib.sha256()
    for part in (file_digest(model), spec.id, json.dumps(profile.to_dict(), sort_keys=True),
                 "|".join(f"{i.event}/{i.name}" for i in items), "|".join(head_images),
                 onnxruntime.__version__, np.__version__, __version__):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def cached_run(cache: Path | None, key: str, compute, notice=None) -> Run:
    """Load the run saved under ``cache/key`` or compute and save it (``cache=None``: compute).

    A damaged entry is removed and rebuilt; ``notice(text)`` (default: a line on stderr)
    says so.
    """
    if cache is None:
        return compute()
    folder = Path(cache) / f"run-{key}"
    if folder.exists():
        try:
            return Run.load(folder)
        except ScrfdRefError as exc:
            (notice or _stderr_notice)(f"reference cache entry {folder} is damaged ({exc}); "
                                       "rebuilding it")
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
            else:
                folder.unlink(missing_ok=True)
    run = compute()
    run.save(folder)
    return run


def _stderr_notice(text: str) -> None:
    import sys

    print(f"scrfd-ref: notice: {text}", file=sys.stderr)


def replay_images(outputs_dir: Path, images: Sequence[ImageItem], *, partial: bool = False
                  ) -> tuple[list[ImageItem], dict[str, int]]:
    """Images covered by a dump folder (datalist beside it) and their output indices.

    The datalist is ``<outputs_dir>/datalist.txt`` or ``<outputs_dir>/../datalist.txt``
    (repeated lines or names are refused by the reader). A complete dump whose folder or
    datalist no longer holds every image its manifest recorded, in the recorded order, is
    refused (:func:`~scrfd_ref.formats.device_outputs.check_recorded`). ``partial``: an
    interrupted dump accepted on purpose: only the lines whose outputs exist.
    """
    from scrfd_ref.formats.device_npz import read_datalist
    from scrfd_ref.formats.device_outputs import check_outputs, check_recorded, find_datalist

    check_recorded(outputs_dir, partial=partial)
    entries = read_datalist(find_datalist(outputs_dir))
    index = {p.stem: i for i, p in enumerate(entries)}
    if partial:
        done = {s.index for s in check_outputs(outputs_dir, partial=True,
                                               allow_nonfinite=True).slots}
        index = {stem: i for stem, i in index.items() if i in done}
    chosen = [it for it in images if it.name in index]
    if not chosen:
        raise InputError(f"{outputs_dir}: the datalist names none of the evaluation images")
    return chosen, index
