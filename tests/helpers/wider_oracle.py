"""Oracle: a literal, loop-for-loop transcription of the official WIDER FACE evaluation.

Transcribed from the protocol of the official MATLAB ``eval_tools`` (``read_pred``,
``norm_score``, ``wider_eval`` / ``evaluation``, ``image_evaluation``, ``boxoverlap``,
``image_pr_info``, ``dataset_pr_info``, ``VOCap``) with the arithmetic of the common
Python port (float64 everywhere, "+1" IoU, ``>=`` thresholds ``1 - t / 1000``, numpy's
``np.maximum`` envelope and ``np.sum`` in the AP). Structure and loops follow the MATLAB
code one for one, so it is slow (seconds per thousand images) and obviously right; the
fast path in ``scrfd_ref.widerface.evaluate`` is tested against it.

Only two things are not literal, both switchable:

* ``sort=True`` performs ``read_pred``'s ``sort(score, 'descend')`` (stable, as MATLAB's
  sort is); ``sort=False`` skips it like the Python port does.
* ``defined_edge_cases=True`` applies the fast path's documented definitions where the
  official code divides by zero: constant scores (``max == min``) normalise to 1.0, and
  zero counted faces give recall 0 (hence AP 0). With ``False`` the official NaNs stay.

Score normalisation keeps MATLAB's running max / min started at ``realmin('single')`` /
``realmax('single')``, in float64. Predictions come as
``{(event, name): (n, 5) x y w h score}`` (missing images: no detections, as in MATLAB).

Ground truth: :func:`load_ground_truth_mat` reads the official ``.mat`` files itself with
``scipy.io.loadmat``, literally as the official Python port's ``get_gt_boxes`` does
(``event_list[i][0][0]``, ``file_list[i][0][j][0][0]``, ``face_bbx_list[i][0][j][0]``,
``gt_list[i][0][j][0]`` 1-based indices), so this module imports nothing from
``scrfd_ref`` and the project's ground-truth reader is checked against it. The evaluation
functions take any object with ``events`` and ``images`` (each with ``event``, ``name``,
``boxes``, ``counted``): :class:`OracleGT` from the files, or a synthetic ground truth
built directly in a test.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

GroundTruth = Any  # duck-typed: .events, .images (.event, .name, .boxes, .counted)


@dataclass(frozen=True)
class OracleImage:
    """One image as the official port reads it."""

    event: str
    name: str
    boxes: np.ndarray             # (n, 4) float64 x y w h
    counted: dict                 # setting -> 0-based indices (gt_list - 1)


@dataclass(frozen=True)
class OracleGT:
    """The official ground truth, read by :func:`load_ground_truth_mat`."""

    events: tuple
    images: tuple

    def counted_total(self, setting: str) -> int:
        """Boxes that count in ``setting`` (``count_face`` of the official loop)."""
        return int(sum(len(img.counted[setting]) for img in self.images))


def load_ground_truth_mat(gt_dir: str | os.PathLike, events: Sequence[str] | None = None
                          ) -> OracleGT:
    """``get_gt_boxes(gt_dir)`` of the official port, then one record per image.

    Reads ``wider_face_val.mat`` (``face_bbx_list``, ``event_list``, ``file_list``) and
    ``wider_{easy,medium,hard}_val.mat`` (``gt_list``) with ``scipy.io.loadmat`` and
    walks them with the port's indexing. ``events`` keeps only those events (in file
    order).
    """
    from scipy.io import loadmat

    gt_mat = loadmat(os.path.join(gt_dir, "wider_face_val.mat"))
    hard_mat = loadmat(os.path.join(gt_dir, "wider_hard_val.mat"))
    medium_mat = loadmat(os.path.join(gt_dir, "wider_medium_val.mat"))
    easy_mat = loadmat(os.path.join(gt_dir, "wider_easy_val.mat"))
    facebox_list = gt_mat["face_bbx_list"]
    event_list = gt_mat["event_list"]
    file_list = gt_mat["file_list"]
    gt_lists = {"hard": hard_mat["gt_list"], "medium": medium_mat["gt_list"],
                "easy": easy_mat["gt_list"]}
    keep = None if events is None else set(events)
    out_events, images = [], []
    for i in range(len(event_list)):
        event_name = str(event_list[i][0][0])
        if keep is not None and event_name not in keep:
            continue
        out_events.append(event_name)
        img_list = file_list[i][0]
        gt_bbx_list = facebox_list[i][0]
        for j in range(len(img_list)):
            gt_boxes = gt_bbx_list[j][0].astype("float")
            counted = {}
            for setting, gt_list in gt_lists.items():
                keep_index = gt_list[i][0][j][0]
                counted[setting] = [int(k) - 1 for k in np.asarray(keep_index).ravel()]
            images.append(OracleImage(event_name, str(img_list[j][0][0]),
                                      gt_boxes.reshape(-1, 4), counted))
    return OracleGT(tuple(out_events), tuple(images))

REALMIN_SINGLE = float(np.finfo(np.float32).tiny)  # realmin('single')
REALMAX_SINGLE = float(np.finfo(np.float32).max)  # realmax('single')
SETTINGS = ("easy", "medium", "hard")


def read_pred(gt: GroundTruth, predictions: Mapping, sort: bool = True) -> list:
    """``read_pred.m``: per event, per image, the ``(n, 5)`` boxes or None (empty)."""
    pred_list = []
    for event in gt.events:
        img_list = [img for img in gt.images if img.event == event]
        bbx_list = [None] * len(img_list)
        for j in range(len(img_list)):
            key = (event, img_list[j].name)
            if key not in predictions:
                continue  # "Can not find the prediction file"
            raw = np.asarray(predictions[key], dtype=np.float64)
            bbx_num = raw.shape[0] if raw.size else 0
            bbx = np.zeros((bbx_num, 5))
            if bbx_num == 0:
                continue
            for k in range(bbx_num):
                bbx[k, 0] = raw[k, 0]
                bbx[k, 1] = raw[k, 1]
                bbx[k, 2] = raw[k, 2]
                bbx[k, 3] = raw[k, 3]
                bbx[k, 4] = raw[k, 4]
            if sort:
                s_index = np.argsort(-bbx[:, 4], kind="stable")  # sort(..., 'descend')
                bbx_list[j] = bbx[s_index, :]
            else:
                bbx_list[j] = bbx
        pred_list.append(bbx_list)
    return pred_list


def norm_score(org_pred_list: list, defined_edge_cases: bool = True) -> list:
    """``norm_score.m``: global min-max normalisation of column 5."""
    norm_pred_list = [None] * len(org_pred_list)
    max_score = REALMIN_SINGLE
    min_score = REALMAX_SINGLE
    for i in range(len(org_pred_list)):
        pred_list = org_pred_list[i]
        for j in range(len(pred_list)):
            if pred_list[j] is None:
                continue
            score_list = pred_list[j][:, 4]
            max_score = max(max_score, float(np.max(score_list)))
            min_score = min(min_score, float(np.min(score_list)))
    for i in range(len(org_pred_list)):
        pred_list = [None if p is None else p.copy() for p in org_pred_list[i]]
        for j in range(len(pred_list)):
            if pred_list[j] is None:
                continue
            score_list = pred_list[j][:, 4]
            if defined_edge_cases and max_score == min_score:
                norm_score_list = np.ones_like(score_list)  # documented deviation
            else:
                with np.errstate(all="ignore"):
                    norm_score_list = (score_list - min_score) / (max_score - min_score)
            pred_list[j][:, 4] = norm_score_list
        norm_pred_list[i] = pred_list
    return norm_pred_list


def boxoverlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``boxoverlap.m``: IoU of boxes ``a`` (k, 4) x1 y1 x2 y2 with one box ``b``."""
    x1 = np.maximum(a[:, 0], b[0])
    y1 = np.maximum(a[:, 1], b[1])
    x2 = np.minimum(a[:, 2], b[2])
    y2 = np.minimum(a[:, 3], b[3])
    w = x2 - x1 + 1
    h = y2 - y1 + 1
    inter = w * h
    aarea = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    barea = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    with np.errstate(all="ignore"):
        o = inter / (aarea + barea - inter)
    o[w <= 0] = 0
    o[h <= 0] = 0
    return o


def image_evaluation(pred_info: np.ndarray, gt_bbx: np.ndarray, ignore: np.ndarray,
                     iou_thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """``image_evaluation``: greedy matching in prediction order."""
    pred_info = pred_info.copy()
    gt_bbx = gt_bbx.copy()
    pred_recall = np.zeros(pred_info.shape[0])
    recall_list = np.zeros(gt_bbx.shape[0])
    proposal_list = np.zeros(pred_info.shape[0])
    proposal_list = proposal_list + 1
    pred_info[:, 2] = pred_info[:, 0] + pred_info[:, 2]
    pred_info[:, 3] = pred_info[:, 1] + pred_info[:, 3]
    gt_bbx[:, 2] = gt_bbx[:, 0] + gt_bbx[:, 2]
    gt_bbx[:, 3] = gt_bbx[:, 1] + gt_bbx[:, 3]
    for h in range(pred_info.shape[0]):
        overlap_list = boxoverlap(gt_bbx, pred_info[h, 0:4])
        idx = int(np.argmax(overlap_list))  # [max_overlap, idx] = max(...): first max
        max_overlap = overlap_list[idx]
        if max_overlap >= iou_thresh:
            if ignore[idx] == 0:
                recall_list[idx] = -1
                proposal_list[h] = -1
            elif recall_list[idx] == 0:
                recall_list[idx] = 1
        r_keep_index = np.flatnonzero(recall_list == 1)
        pred_recall[h] = len(r_keep_index)
    return pred_recall, proposal_list


def image_pr_info(thresh_num: int, pred_info: np.ndarray, proposal_list: np.ndarray,
                  pred_recall: np.ndarray) -> np.ndarray:
    """``image_pr_info``: per threshold, proposals and recalled boxes of one image.

    Plain Python loops over lists (``find(..., 1, 'last')`` as a scan from the end, the
    proposal count as a scan of the prefix): the same comparisons as the numpy form,
    several times faster on images of a few dozen predictions.
    """
    img_pr_info = np.zeros((thresh_num, 2))
    scores = pred_info[:, 4].tolist()
    proposals = proposal_list.tolist()
    recalled = pred_recall.tolist()
    for t in range(1, thresh_num + 1):
        thresh = 1 - t / thresh_num
        r_index = -1
        for k in range(len(scores) - 1, -1, -1):  # find(pred_info(:,5) >= thresh, 1, 'last')
            if scores[k] >= thresh:
                r_index = k
                break
        if r_index < 0:
            img_pr_info[t - 1, 1] = 0
            img_pr_info[t - 1, 0] = 0
        else:
            p_count = 0
            for k in range(r_index + 1):  # length(find(proposal_list(1:r_index) == 1))
                if proposals[k] == 1:
                    p_count += 1
            img_pr_info[t - 1, 0] = p_count
            img_pr_info[t - 1, 1] = recalled[r_index]
    return img_pr_info


def dataset_pr_info(thresh_num: int, org_pr_curve: np.ndarray, count_face: int,
                    defined_edge_cases: bool = True) -> np.ndarray:
    """``dataset_pr_info``: precision and recall per threshold."""
    pr_curve = np.zeros((thresh_num, 2))
    with np.errstate(all="ignore"):
        for i in range(thresh_num):
            pr_curve[i, 0] = org_pr_curve[i, 1] / org_pr_curve[i, 0]
            if defined_edge_cases and count_face == 0:
                pr_curve[i, 1] = 0.0  # documented deviation (official: 0 / 0)
            else:
                pr_curve[i, 1] = org_pr_curve[i, 1] / np.float64(count_face)
    return pr_curve


def voc_ap(rec: np.ndarray, prec: np.ndarray) -> np.float64:
    """``VOCap`` with the Python port's numpy arithmetic."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def evaluation(norm_pred_list: list, gt: GroundTruth, setting: str, iou_thresh: float = 0.5,
               thresh_num: int = 1000,
               defined_edge_cases: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """``evaluation``: the PR curve of one setting over all events of ``gt``."""
    org_pr_curve = np.zeros((thresh_num, 2))
    count_face = 0
    for i, event in enumerate(gt.events):
        img_list = [img for img in gt.images if img.event == event]
        pred_list = norm_pred_list[i]
        img_pr_info_list = [None] * len(img_list)
        for j in range(len(img_list)):
            gt_bbx = np.asarray(img_list[j].boxes, dtype=np.float64)
            pred_info = pred_list[j]
            keep_index = img_list[j].counted[setting]
            count_face = count_face + len(keep_index)
            if gt_bbx.shape[0] == 0 or pred_info is None:
                continue
            ignore = np.zeros(gt_bbx.shape[0])
            if len(keep_index) != 0:
                ignore[keep_index] = 1
            pred_recall, proposal_list = image_evaluation(pred_info, gt_bbx, ignore, iou_thresh)
            img_pr_info_list[j] = image_pr_info(thresh_num, pred_info, proposal_list,
                                                pred_recall)
        for j in range(len(img_list)):
            img_pr_info = img_pr_info_list[j]
            if img_pr_info is not None:
                org_pr_curve[:, 0] = org_pr_curve[:, 0] + img_pr_info[:, 0]
                org_pr_curve[:, 1] = org_pr_curve[:, 1] + img_pr_info[:, 1]
    pr_curve = dataset_pr_info(thresh_num, org_pr_curve, count_face, defined_edge_cases)
    return pr_curve, org_pr_curve, count_face


def wider_eval(gt: GroundTruth, predictions: Mapping, *, sort: bool = True,
               defined_edge_cases: bool = True, iou_thresh: float = 0.5,
               thresh_num: int = 1000) -> dict:
    """``wider_eval.m``: read, normalise, evaluate the three settings.

    Returns:
        ``{setting: {"ap", "precision", "recall", "proposals", "recalled", "faces"}}``.
    """
    pred_list = read_pred(gt, predictions, sort=sort)
    norm_pred_list = norm_score(pred_list, defined_edge_cases)
    out = {}
    for setting in SETTINGS:
        pr_curve, org, count_face = evaluation(norm_pred_list, gt, setting, iou_thresh,
                                               thresh_num, defined_edge_cases)
        prec = pr_curve[:, 0]
        rec = pr_curve[:, 1]
        out[setting] = {"ap": voc_ap(rec, prec), "precision": prec, "recall": rec,
                        "proposals": org[:, 0], "recalled": org[:, 1], "faces": count_face}
    return out
