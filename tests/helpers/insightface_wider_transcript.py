"""Transcript: what insightface's official SCRFD WIDER FACE test does to one image.

An independent, literal transcription in plain numpy + OpenCV + onnxruntime of
``detection/scrfd/tools/test_widerface.py`` (``--mode 0``, ``--thr 0.02``) running the
SCRFD configs through insightface's mmdet fork (``detection/scrfd/mmdet``) on mmcv-full
1.2.6 / 1.3.3 (the versions ``detection/scrfd/README.md`` says were tested). It imports
nothing from ``scrfd_ref`` on purpose: it is the second, independent source that pins the
project's expected WIDER AP. Sources read: deepinsight/insightface at commit
7fadd420c2351d0ffa8cac403421c1a3ed733365, open-mmlab/mmcv tags v1.2.6 and v1.3.3 (the
parts used below are identical in both tags).

Step by step (upstream file -> function -> what is transcribed):

1. Load. ``mmdet/datasets/pipelines/loading.py`` ``LoadImageFromFile`` (test pipeline:
   no ``to_float32``) -> ``mmcv.imfrombytes(bytes, flag='color')`` ->
   ``cv2.imdecode(buf, cv2.IMREAD_COLOR)``: uint8 BGR, ``ori_shape = img.shape``.
   :func:`load_image`.

2. Resize. ``configs/scrfd/scrfd_*.py`` ``test_pipeline``: ``MultiScaleFlipAug(img_scale=
   (640, 640), flip=False)`` (``test_widerface.py`` mode 0 sets ``img_scale = (640, 640)``)
   -> ``Resize(keep_ratio=True)``. ``MultiScaleFlipAug.__call__`` puts ``results['scale'] =
   (640, 640)``; ``transforms.py`` ``Resize._resize_img`` calls ``mmcv.imrescale(img,
   scale, return_scale=True, backend='cv2')`` -> ``rescale_size``: ``scale_factor =
   min(max(scale) / max(h, w), min(scale) / min(h, w))`` (Python float64), ``_scale_size``:
   ``new_w, new_h = int(w * scale + 0.5), int(h * scale + 0.5)``; ``imresize`` ->
   ``cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)`` ('bilinear') on the
   **uint8** BGR image. Then, back in ``_resize_img`` ("the w_scale and h_scale has minor
   difference"): ``w_scale = new_w / w``, ``h_scale = new_h / h`` (float64) and
   ``scale_factor = np.array([w_scale, h_scale, w_scale, h_scale], dtype=np.float32)``;
   ``img_shape = resized.shape`` (the resized, *not* padded, shape).

3. ``RandomFlip(flip_ratio=0.0)``: no-op.

4. Normalize. ``Normalize(mean=[127.5]*3, std=[128.0]*3, to_rgb=True)`` ->
   ``mmcv.imnormalize``: ``img.astype(np.float32)``, ``cv2.cvtColor(BGR2RGB)``,
   ``cv2.subtract(img, 127.5)``, ``cv2.multiply(img, 1 / 128)``. Every pixel value is an
   integer 0..255, so ``x - 127.5`` and ``* 2**-7`` are both exact in float32: any float32
   or float64 evaluation order gives the same bits; this file uses numpy float32.

5. Pad. ``Pad(size=(640, 640), pad_val=0)`` (``test_widerface.py`` mode 0 sets
   ``transform.size = pipeline.img_scale``) -> ``mmcv.impad(img, shape=size)``:
   ``padding = (0, 0, shape[1] - w, shape[0] - h)`` -> ``cv2.copyMakeBorder`` constant 0
   at the bottom and right only, applied **after** Normalize, so the padding is 0.0 in
   normalised space (i.e. the colour 127.5), not the colour 0.
   ``ImageToTensor``: HWC -> CHW; batch of 1. :func:`preprocess`.

6. Network. The released ONNX files are the export of ``SCRFDHead.forward_single`` under
   ``torch.onnx.is_in_onnx_export()``: per stride, ``cls_score.permute(0, 2, 3, 1)
   .reshape(b, -1, 1).sigmoid()`` (scores already sigmoided) and ``bbox_pred.permute(0, 2,
   3, 1).reshape(b, -1, 4)`` (the ``Scale``-multiplied distances, still in stride units: the
   export skips ``* stride[0]``, which ``_get_bboxes_single`` applies and
   ``python-package/insightface/model_zoo/scrfd.py`` re-applies as ``bbox_preds *
   stride``). Rows are location-major (row-major y, x) with the 2 anchors of a location
   adjacent. Output order: scores(8, 16, 32), boxes(8, 16, 32)[, kps(8, 16, 32)] (the same
   count-based layout ``scrfd.py._init_vars`` uses: 6/9 outputs -> strides 8, 16, 32 with 2
   anchors, 10/15 -> strides 8..128 with 1). Outputs with a batch axis are reshaped to
   ``(-1, C)``. Distances ``* stride`` in float32 (a power of two: exact).

7. Anchor centres. ``AnchorGenerator(ratios=[1.0], scales=[1, 2], base_sizes=[16, 64, 256],
   strides=[8, 16, 32])`` with ``center_offset=0``: base anchors are symmetric about 0, so
   ``SCRFDHead.anchor_center`` = ``((x1 + x2) / 2, (y1 + y2) / 2)`` is exactly
   ``(x * stride, y * stride)`` for grid cell ``(y, x)`` (``_meshgrid`` row-major), each
   repeated for the 2 anchors; float32.

8. Decode. ``SCRFDHead._get_bboxes_single`` (``nms_pre=-1``: no top-k) ->
   ``mmdet/core/bbox/transforms.py`` ``distance2bbox(points, distance, max_shape=img_shape)``:
   ``x1 = cx - l``, ``y1 = cy - t``, ``x2 = cx + r``, ``y2 = cy + b`` then
   ``clamp(min=0, max=img_shape[1])`` for x and ``max=img_shape[0]`` for y, where
   ``img_shape`` is the *resized* (unpadded) ``(new_h, new_w)``; float32. Levels are
   concatenated 8, 16, 32. ``rescale=True`` (``test_widerface.py`` calls ``model(
   return_loss=False, rescale=True, ...)``): ``mlvl_bboxes /= new_tensor(scale_factor)``:
   float32 division by the float32 ``[w_scale, h_scale, w_scale, h_scale]``.

9. Score threshold. ``test_widerface.py``: ``cfg.test_cfg.score_thr = args.thr`` (0.02) ->
   ``mmdet/core/post_processing/bbox_nms.py`` ``multiclass_nms``: ``valid_mask = scores >
   score_thr`` (strict ``>``; a float32 tensor against a Python float compares in
   float32, and for float32 scores ``s > 0.02`` is the same test in float32 or float64).
   ``min_bbox_size=0`` is not used by this head; ``max_per_img=-1``: no cap.

10. NMS. ``multiclass_nms`` -> ``mmcv.ops.batched_nms(bboxes, scores, labels, nms=dict(
    type='nms', iou_threshold=0.45))``: one class (label 0), so the class offset is
    ``0 * (max + 1) = 0`` and the boxes are unchanged; fewer than ``split_thr=10000``
    boxes -> one ``nms`` call, otherwise one per class then ``argsort(descending=True)``
    (the same kept set and order for one class). ``mmcv.ops.nms(..., offset=0)`` on the
    GPU (``test_widerface.py`` wraps the model in ``MMDataParallel(device_ids=[0])``) ->
    ``mmcv/ops/csrc/pytorch/nms_cuda.cu`` ``NMSCUDAKernelLauncher``: ``scores.sort(0,
    descending=True)``, then greedy keep in that order, suppressing later boxes for which
    ``nms_cuda_kernel.cuh`` ``devIoU`` holds: in float32 with offset 0,
    ``w = fmaxf(min(x2) - max(x1), 0)``, ``h`` likewise, ``inter = w * h``,
    ``Sa = (x2 - x1) * (y2 - y1)``, and suppress iff ``inter > thr * (Sa + Sb - inter)``
    with ``thr = (float)0.45`` (strict ``>``, no division). (mmcv's CPU ``nms_cpu`` instead
    uses ``inter / (areas_i + areas_j - inter) >= thr``; the official run is on the GPU, so
    the CUDA form is transcribed.) Returned in the sorted order: descending score.
    No "+1" anywhere: ``nms(boxes, scores, iou_threshold, offset=0)`` and ``batched_nms``
    never passes ``offset``. One consequence of the multiply form, kept on purpose: an
    inverted box (``x2 < x1`` by float32 rounding, the network predicting ~0 distances)
    has a negative area, so against a zero-area kept box ``0 > thr * (negative)`` holds
    and it is suppressed, where a division form would keep it (4 boxes, all scored
    0.020-0.022, in the 394 images of the five shared events with scrfd_500m_bnkps).
    Output rows ``[x1, y1, x2, y2, score]`` float32 (``bbox2result`` ->
    ``result[0][0]``). :func:`detect`, :func:`nms_mmcv_cuda`.

11. WIDER rows. ``test_widerface.py``: ``xywh = result.copy(); w = xywh[:, 2] - xywh[:, 0];
    h = xywh[:, 3] - xywh[:, 1]; xywh[:, 2] = w; xywh[:, 3] = h`` (float32, every box kept,
    no rounding, no filtering); ``event_name = filepath.split('/')[-2]``, ``img_name =
    pb.rstrip('.jpg')`` (a character-set strip: equal to dropping ``.jpg`` for every WIDER
    name since they end in a digit; asserted). :func:`wider_rows`, :func:`predict_events`.

What cannot be pinned to the bit from the sources, and the choice made here:

* Ties in score: CUDA ``scores.sort`` does not promise an order for equal scores; this file
  uses a stable descending sort (ties keep concatenation order: stride 8, 16, 32,
  location-major, anchor-minor).
* nvcc contracts ``Sa + Sb - inter`` into fused multiply-adds by default, so the GPU union
  may differ from the unfused float32 value here by an ulp; it can only matter for a pair
  whose IoU is within ~1e-7 of 0.45.
* The network itself: onnxruntime CPU instead of PyTorch CUDA (sigmoid, convolutions), and
  ``cv2.resize`` INTER_LINEAR on uint8 from the installed OpenCV (fixed-point; the
  official run used whatever opencv-python mmcv was installed with).
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Iterable

import cv2
import numpy as np
import onnxruntime as ort

MEAN = np.float32(127.5)  # Normalize(mean=[127.5, 127.5, 127.5])
STD = np.float32(128.0)  # Normalize(std=[128.0, 128.0, 128.0])


def load_image(path: str) -> np.ndarray:
    """``LoadImageFromFile`` -> ``mmcv.imfrombytes(flag='color')``: uint8 BGR."""
    with open(path, "rb") as f:
        img_bytes = f.read()
    img_np = np.frombuffer(img_bytes, np.uint8)
    img = cv2.imdecode(img_np, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode {path}")
    return img


def rescale_size(old_size: tuple[int, int],
                 scale: tuple[int, int]) -> tuple[tuple[int, int], float]:
    """``mmcv.rescale_size(old_size=(w, h), scale=tuple, return_scale=True)`` + ``_scale_size``."""
    w, h = old_size
    max_long_edge = max(scale)
    max_short_edge = min(scale)
    scale_factor = min(max_long_edge / max(h, w), max_short_edge / min(h, w))
    new_size = (int(w * float(scale_factor) + 0.5), int(h * float(scale_factor) + 0.5))
    return new_size, scale_factor


def preprocess(image_bgr: np.ndarray, input_size: tuple[int, int] = (640, 640)):
    """Resize(keep_ratio) -> RandomFlip(0) -> Normalize -> Pad -> ImageToTensor.

    ``input_size`` is both ``MultiScaleFlipAug.img_scale`` and ``Pad.size`` (as
    ``test_widerface.py`` mode 0 sets them); ``Pad`` reads it as ``(h, w)``.

    Returns ``(blob float32 (1, 3, H, W), scale_factor float32 (4,), (new_h, new_w))``.
    """
    img = np.asarray(image_bgr)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError("expected a uint8 BGR image of shape (h, w, 3)")
    # Resize._resize_img, keep_ratio=True
    h, w = img.shape[:2]
    new_size, _ = rescale_size((w, h), tuple(input_size))
    resized = cv2.resize(img, new_size, interpolation=cv2.INTER_LINEAR)  # imresize 'bilinear'
    new_h, new_w = resized.shape[:2]
    w_scale = new_w / w
    h_scale = new_h / h
    scale_factor = np.array([w_scale, h_scale, w_scale, h_scale], dtype=np.float32)
    img_shape = (new_h, new_w)
    # RandomFlip(flip_ratio=0.0): nothing.
    # Normalize -> imnormalize: float32, BGR->RGB, subtract mean, multiply by 1/std (exact).
    norm = resized.astype(np.float32)
    norm = norm[:, :, ::-1]
    norm = (norm - MEAN) * (np.float32(1.0) / STD)
    # Pad(size=input_size, pad_val=0) -> impad: bottom/right, constant 0, after Normalize.
    pad_h, pad_w = input_size
    if new_h > pad_h or new_w > pad_w:
        raise ValueError(f"resized image {img_shape} does not fit the pad shape {input_size}")
    padded = np.zeros((pad_h, pad_w, 3), dtype=np.float32)
    padded[:new_h, :new_w, :] = norm
    # ImageToTensor + collate: (1, 3, H, W)
    blob = np.ascontiguousarray(padded.transpose(2, 0, 1))[None]
    return blob, scale_factor, img_shape


def _layout(n_outputs: int) -> tuple[list[int], int]:
    """Strides and anchors per location by output count (``scrfd.py._init_vars``)."""
    if n_outputs in (6, 9):
        return [8, 16, 32], 2
    if n_outputs in (10, 15):
        return [8, 16, 32, 64, 128], 1
    raise ValueError(f"unexpected SCRFD output count {n_outputs}")


def anchor_centers(height: int, width: int, stride: int, num_anchors: int) -> np.ndarray:
    """``AnchorGenerator.grid_anchors`` + ``SCRFDHead.anchor_center``: (x*s, y*s), float32."""
    centers = np.zeros((height, width, num_anchors, 2), dtype=np.float32)
    for y in range(height):
        for x in range(width):
            centers[y, x, :, 0] = x * stride
            centers[y, x, :, 1] = y * stride
    return centers.reshape(-1, 2)


def distance2bbox(points: np.ndarray, distance: np.ndarray, max_shape) -> np.ndarray:
    """``mmdet/core/bbox/transforms.py`` ``distance2bbox`` with clamp to ``max_shape`` (h, w)."""
    x1 = points[:, 0] - distance[:, 0]
    y1 = points[:, 1] - distance[:, 1]
    x2 = points[:, 0] + distance[:, 2]
    y2 = points[:, 1] + distance[:, 3]
    x1 = np.minimum(np.maximum(x1, np.float32(0)), np.float32(max_shape[1]))
    y1 = np.minimum(np.maximum(y1, np.float32(0)), np.float32(max_shape[0]))
    x2 = np.minimum(np.maximum(x2, np.float32(0)), np.float32(max_shape[1]))
    y2 = np.minimum(np.maximum(y2, np.float32(0)), np.float32(max_shape[0]))
    return np.stack([x1, y1, x2, y2], axis=-1)


def nms_mmcv_cuda(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """``mmcv.ops.nms`` on CUDA (offset 0): indices kept, in descending-score order."""
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    thr = np.float32(iou_threshold)  # `const float iou_threshold`
    zero = np.float32(0)
    order = np.argsort(-scores, kind="stable")  # scores.sort(0, descending=True)
    b = boxes[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    n = b.shape[0]
    removed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if removed[i]:
            continue
        keep.append(i)
        j = slice(i + 1, n)
        left = np.maximum(x1[i], x1[j])
        right = np.minimum(x2[i], x2[j])
        top = np.maximum(y1[i], y1[j])
        bottom = np.minimum(y2[i], y2[j])
        width = np.maximum(right - left, zero)
        height = np.maximum(bottom - top, zero)
        inter = width * height
        sa = (x2[i] - x1[i]) * (y2[i] - y1[i])
        sb = (x2[j] - x1[j]) * (y2[j] - y1[j])
        removed[j] |= inter > thr * (sa + sb - inter)  # devIoU
    return order[np.asarray(keep, dtype=np.int64)]


def detect(session: ort.InferenceSession, image_bgr: np.ndarray, score_thr: float = 0.02,
           nms_thr: float = 0.45, input_size: tuple[int, int] = (640, 640)) -> np.ndarray:
    """One image -> ``(n, 5)`` float32 ``x1 y1 x2 y2 score`` in original pixels, post-NMS."""
    blob, scale_factor, img_shape = preprocess(image_bgr, input_size)
    input_name = session.get_inputs()[0].name
    net_outs = session.run(None, {input_name: blob})
    return postprocess_outputs(net_outs, (blob.shape[3], blob.shape[2]), scale_factor,
                               img_shape, score_thr, nms_thr)


def postprocess_outputs(net_outs, input_size: tuple[int, int], scale_factor: np.ndarray,
                        img_shape: tuple[int, int], score_thr: float = 0.02,
                        nms_thr: float = 0.45) -> np.ndarray:
    """Steps 6-10 on the network's outputs: ``(n, 5)`` float32 ``x1 y1 x2 y2 score``.

    ``input_size`` is the padded network input ``(W, H)``, ``img_shape`` the resized
    ``(h, w)`` the boxes are clamped to, ``scale_factor`` the float32 ``[w, h, w, h]``
    rescale.
    """
    strides, num_anchors = _layout(len(net_outs))
    fmc = len(strides)
    in_w, in_h = input_size
    mlvl_bboxes = []
    mlvl_scores = []
    for idx, stride in enumerate(strides):
        scores = np.asarray(net_outs[idx], dtype=np.float32).reshape(-1, 1)
        bbox_pred = np.asarray(net_outs[idx + fmc], dtype=np.float32).reshape(-1, 4)
        bbox_pred = bbox_pred * np.float32(stride)
        height, width = in_h // stride, in_w // stride
        points = anchor_centers(height, width, stride, num_anchors)
        if points.shape[0] != scores.shape[0] or points.shape[0] != bbox_pred.shape[0]:
            raise ValueError(f"stride {stride}: {scores.shape[0]} rows for "
                             f"{points.shape[0]} anchors")
        mlvl_bboxes.append(distance2bbox(points, bbox_pred, max_shape=img_shape))
        mlvl_scores.append(scores)
    bboxes = np.concatenate(mlvl_bboxes)
    bboxes = bboxes / np.asarray(scale_factor, dtype=np.float32)  # rescale=True; float32
    scores = np.concatenate(mlvl_scores)[:, 0]
    valid = scores > np.float32(score_thr)  # multiclass_nms: scores > score_thr
    inds = np.flatnonzero(valid)
    bboxes, scores = bboxes[inds], scores[inds]
    if inds.size == 0:
        return np.zeros((0, 5), dtype=np.float32)
    keep = nms_mmcv_cuda(bboxes, scores, nms_thr)
    dets = np.concatenate([bboxes[keep], scores[keep, None]], axis=1)
    return dets.astype(np.float32, copy=False)


def wider_rows(dets: np.ndarray) -> np.ndarray:
    """``test_widerface.py``: ``x1 y1 x2 y2 s`` -> ``x y w h s`` (w = x2 - x1, all kept)."""
    xywh = np.array(dets, dtype=np.float32, copy=True).reshape(-1, 5)
    w = xywh[:, 2] - xywh[:, 0]
    h = xywh[:, 3] - xywh[:, 1]
    xywh[:, 2] = w
    xywh[:, 3] = h
    return xywh


def make_session(model_path: str) -> ort.InferenceSession:
    return ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])


def predict_events(model_path: str, images_root: str, events: Iterable[str],
                   score_thr: float = 0.02, nms_thr: float = 0.45) -> dict:
    """``{(event, name): (n, 5) x y w h score}`` over ``<images_root>/<event>/*.jpg`` sorted."""
    session = make_session(model_path)
    preds = {}
    for event in events:
        folder = os.path.join(images_root, event)
        for pb in sorted(f for f in os.listdir(folder) if f.endswith(".jpg")):
            img_name = pb.rstrip(".jpg")
            assert img_name == pb[:-len(".jpg")], pb
            dets = detect(session, load_image(os.path.join(folder, pb)), score_thr, nms_thr)
            preds[(event, img_name)] = wider_rows(dets)
    return preds


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True, help="WIDER_val/images")
    p.add_argument("--events", nargs="+", required=True)
    p.add_argument("--thr", type=float, default=0.02)
    args = p.parse_args(argv)
    preds = predict_events(args.model, args.images, args.events, score_thr=args.thr)
    for event in args.events:
        rows = [v for (e, _), v in preds.items() if e == event]
        print(f"{event}: {len(rows)} images, {sum(len(r) for r in rows)} detections")


if __name__ == "__main__":
    main()
