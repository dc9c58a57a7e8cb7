"""The whole flow wired once: image -> blob -> backend -> heads -> decode -> NMS.

>>> det = Detector("scrfd_500m_bnkps.onnx", profile="insightface")  # doctest: +SKIP
>>> dets = det.detect(cv2.imread("face.jpg"))                         # doctest: +SKIP
>>> dets.boxes, dets.scores, dets.landmarks                           # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scrfd_ref.backends import Backend, get_backend
from scrfd_ref.core.decode import decode
from scrfd_ref.core.detections import Detections
from scrfd_ref.core.errors import InputError, UsageError
from scrfd_ref.core.heads import Heads, normalize_heads
from scrfd_ref.core.postprocess import postprocess
from scrfd_ref.core.preprocess import Transform, preprocess
from scrfd_ref.core.profiles import Profile, get_profile


class Detector:
    """SCRFD face detector: a backend plus a profile.

    Args:
        model: ONNX model path, or a ready :class:`~scrfd_ref.backends.Backend`.
        profile: profile name or :class:`Profile` (``insightface``, ``widerface-eval``,
            ``device-flow``).
        input_size: network input ``(W, H)``; default: the model's fixed size if it has
            one, else the profile's (640x640).
        backend: backend name when ``model`` is a path (default ``ort``).
        backend_options: keyword options for the backend (providers, threads, ...).
        **overrides: profile fields to change (``score_thr=0.3``, ``nms_thr=0.5``, ...).
    """

    def __init__(self, model: str | Path | Backend, profile: str | Profile = "insightface",
                 input_size: tuple[int, int] | None = None, backend: str = "ort",
                 backend_options: dict[str, Any] | None = None, **overrides: Any) -> None:
        self.backend = model if isinstance(model, Backend) else get_backend(
            backend, model, **(backend_options or {}))
        #: how to build the same detector again (None: built around a given backend)
        self._recipe = None if isinstance(model, Backend) else (model, backend,
                                                                dict(backend_options or {}))
        fixed = self.backend.input_size
        if input_size is not None and fixed is not None and tuple(input_size) != fixed:
            raise UsageError(f"--input-size {input_size[0]},{input_size[1]}: the model input is "
                             f"fixed at {fixed[0]}x{fixed[1]}; drop --input-size or export the "
                             "model with a dynamic input")
        size = input_size or fixed
        self.profile = get_profile(profile, input_size=tuple(size) if size else None, **overrides)

    def heads(self, blob: np.ndarray) -> Heads:
        """Run the backend on a blob and recognise its outputs."""
        return normalize_heads(self.backend.run(blob), self.profile.input_size,
                               where=f"{self.backend.name} outputs")

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect faces in several BGR images (one backend call); one result per image."""
        blob, transforms = preprocess(images, self.profile)
        return self.detections_from_heads(self.heads(blob), transforms)

    def detect(self, image: np.ndarray) -> Detections:
        """Detect faces in one BGR ``uint8 (h, w, 3)`` image."""
        return self.detect_batch([image])[0]

    def detections_from_heads(self, heads: Heads, transforms: Sequence[Transform]) -> list[Detections]:
        """Decode + post-process heads of a batch with this detector's profile."""
        if heads.batch != len(transforms):
            raise InputError(f"heads hold {heads.batch} images but {len(transforms)} "
                             "transforms were given")
        return [postprocess(c, t, self.profile)
                for c, t in zip(decode(heads, self.profile.score_thr,
                                                  self.profile.score_strict), transforms)]

    def info(self) -> dict[str, Any]:
        """Backend identity and every profile setting, for reports and JSON."""
        return {"backend": self.backend.info(), "profile": self.profile.to_dict()}

    def pool(self, workers: int | None = None) -> list["Detector"]:
        """The detectors of a data-parallel run (:mod:`scrfd_ref.backends.pool`): ``workers``
        (default one per usable core) replicas with one intra-op thread each, or ``[self]``
        when one worker was asked for, the backend cannot be replicated (an accelerator,
        another backend) or this detector was built around a ready backend. The caller
        closes the replicas (every one that is not ``self``)."""
        from scrfd_ref.backends.pool import pool_options, pool_size

        if self._recipe is None:
            return [self]
        model, backend, options = self._recipe
        size = pool_size(backend, options, workers)
        if size == 1:
            return [self]
        return [Detector(model, self.profile, backend=backend,
                         backend_options=pool_options(options, size)) for _ in range(size)]

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def detect_from_outputs(outputs: Sequence[np.ndarray], transforms: Sequence[Transform],
                        profile: str | Profile = "insightface", **overrides: Any) -> list[Detections]:
    """Decode raw outputs (any layout) of a batch with a profile; no backend needed."""
    prof = get_profile(profile, **overrides)
    heads = normalize_heads(outputs, prof.input_size)
    return [postprocess(c, t, prof) for c, t in zip(decode(heads, prof.score_thr, prof.score_strict),
                                                             transforms)]
