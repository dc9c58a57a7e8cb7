"""The image bootstrap's engine: AP for many reweightings of the images as one sum.

The official counts are sums over images. The protocol's matching is per image (greedy
within an image, independent of every other image), so each image contributes fixed counts
per score threshold: the proposals and the recalled faces per setting, and its counted
faces (:func:`image_counts`, from the very masks :func:`~scrfd_ref.widerface.evaluate.
evaluate` sums). Reweighting the images (an image drawn twice counts twice) is then a
weighted sum of those counts, and ``R`` weightings are one product of the ``R x N`` weight
matrix with the ``N x T`` per-image increments, kept sparse (an image has a few dozen
predictions, not ``T = 1000``), then a cumulative sum over the thresholds and the VOC
envelope, vectorised over the weightings (:func:`weighted_ap`).

Exactness: every count is a whole number held exactly in float64 (the sums stay far below
``2**53``), so each weighting's precision and recall equal, bit for bit, those of the
official evaluation of the image multiset; with every weight 1 they equal ``evaluate``'s.
The AP's final sum adds the same non-zero terms as ``evaluate``'s (with zeros where the
recall does not move) in another grouping, so the AP agrees to a few ``eps`` (about 1e-15),
not bit for bit.

**Score normalisation is taken from the full set, once.** The official protocol min-max
normalises the scores over the evaluated set, then counts predictions at 1000 fixed
thresholds of the normalised score; that mapping (raw score -> threshold index) is
computed once from all the images of the set and kept for every weighting. Why not
renormalise per resample:

* the quantity whose uncertainty the bootstrap estimates is the AP of this evaluation,
  whose thresholds are those of the full set; a resample imitates another draw of images
  from the same population, and the score scale is a property of the detector (a score
  floor such as 0.02 and scores near 1 are reached by any set of realistic size), not of
  which images were drawn;
* renormalising would move every threshold whenever a resample leaves out the one image
  holding the lowest or the highest score, which happens in about ``e**-1 = 37%`` of the
  resamples (repeating images can never widen the range, omitting them can only shrink
  it): variance that is an artefact of resampling, not of the images;
* on an image multiset that keeps the images holding the extreme scores, the official tool
  itself uses exactly this normalisation, so such a weighting equals the official
  evaluation of the images repeated (``tests/widerface/test_bootstrap.py`` checks it against an
  independently built duplicated ground truth);
* it keeps a resample a pure reweighting of fixed per-image counts, which is what makes
  1000 resamples cost a few evaluations.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from scrfd_ref.core.errors import InputError
from scrfd_ref.widerface.result import Matching

if TYPE_CHECKING:  # scipy.sparse is imported where it is used (it costs the CLI 0.4 s)
    import scipy.sparse as sp

CONFIDENCE = 0.95
RESAMPLES = 1000
SEED = 0
#: weightings per sparse product: the (2 S T + S) x BLOCK float64 result stays a few MB
BLOCK = 256


#: resamples a percentile interval must keep beyond each of its ends: fewer, and an end is
#: one or two resamples (at 95 % and 40 resamples the interval is the 1st and the 39th of
#: them; with one resample it is a zero-width point that may exclude the estimate itself)
MIN_TAIL_RESAMPLES = 5


def min_resamples(confidence: float) -> int:
    """The fewest resamples whose percentile interval at ``confidence`` keeps
    :data:`MIN_TAIL_RESAMPLES` beyond each end (200 at 95 %)."""
    return int(math.ceil(MIN_TAIL_RESAMPLES * 2 / (1.0 - confidence) - 1e-9))


def check_params(confidence: float, resamples: int, seed: int, *,
                 interval: bool = True) -> None:
    """Refuse bootstrap parameters outside ``0 < confidence < 1``, ``resamples >= 1`` (and,
    for an ``interval``, at least :func:`min_resamples` of the confidence), ``seed >= 0``
    (one line naming the parameter)."""
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise InputError(f"bootstrap confidence must be a number between 0 and 1 "
                         f"(e.g. 0.95), got {confidence!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) \
            or resamples < 1:
        raise InputError(f"bootstrap resamples must be an integer >= 1, got {resamples!r}")
    floor = min_resamples(float(confidence))
    if interval and resamples < floor:
        raise InputError(f"bootstrap resamples {resamples} are too few for a "
                         f"{100 * confidence:g}% interval: it needs at least {floor} (each end "
                         f"{MIN_TAIL_RESAMPLES} resamples from the edge)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"bootstrap seed must be an integer >= 0, got {seed!r}")


@dataclass(frozen=True, eq=False)
class ImageCounts:
    """Per-image counts of one prediction set, per setting and score threshold.

    Attributes:
        keys: ``(event, name)`` of the ``N`` images, in evaluation order.
        settings: the ``S`` settings, in report order.
        thresh_num: number of thresholds ``T``.
        increments: ``(2 S T + S, N)`` sparse (CSR) float64. Row ``2 S t + 2 s + k``
            holds, per image, the proposals (``k = 0``) or recalled faces (``k = 1``) of
            setting ``s`` that start counting at threshold index ``t`` (their cumulative
            sum over ``t`` is the image's count at threshold ``t``); row ``2 S T + s`` the
            image's counted faces in setting ``s``.
    """

    keys: tuple[tuple[str, str], ...]
    settings: tuple[str, ...]
    thresh_num: int
    increments: sp.csr_matrix

    @property
    def images(self) -> int:
        """Number of images ``N``."""
        return len(self.keys)

    def select(self, index: Sequence[int] | np.ndarray) -> "ImageCounts":
        """The counts of the images ``index`` (positions; repeats allowed, in that order)."""
        idx = np.asarray(index, dtype=np.int64)
        return ImageCounts(keys=tuple(self.keys[i] for i in idx), settings=self.settings,
                           thresh_num=self.thresh_num,
                           increments=self.increments[:, idx].tocsr())


def image_counts(m: Matching) -> ImageCounts:
    """The per-image counts of a :class:`~scrfd_ref.widerface.evaluate.Matching`.

    Built from the very masks :func:`~scrfd_ref.widerface.evaluate.evaluate` sums (its
    ``proposal``, ``recalls``, ``faces`` and ``t0``), so a sum over the images with weight
    1 gives its counts exactly.
    """
    import scipy.sparse as sp

    n, t_num, s_num = len(m.keys), m.thresh_num, len(m.settings)
    rows, cols, vals = [], [], []
    for si, s in enumerate(m.settings):
        for k, mask in enumerate((m.proposal[s], m.recalls[s])):
            keep = mask & (m.t0 < t_num)  # t0 == T (below every threshold) cannot happen
            rows.append(m.t0[keep] * (2 * s_num) + (2 * si + k))  # for scores in [0, 1]
            cols.append(m.image[keep])
            vals.append(np.ones(cols[-1].size))
        rows.append(np.full(n, 2 * s_num * t_num + si, dtype=np.int64))
        cols.append(np.arange(n, dtype=np.int64))
        vals.append(np.asarray(m.faces[s], dtype=np.float64))
    inc = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(2 * s_num * t_num + s_num, n))
    inc.sum_duplicates()
    inc.eliminate_zeros()
    return ImageCounts(keys=m.keys, settings=m.settings, thresh_num=t_num, increments=inc)


def iter_resample_weights(n_images: int, resamples: int = RESAMPLES, seed: int = SEED
                          ) -> Iterator[np.ndarray]:
    """:func:`resample_weights` in blocks of rows (about 4M draws each), so that any number
    of resamples fits in memory; the concatenated blocks are :func:`resample_weights`."""
    check_params(CONFIDENCE, resamples, seed, interval=False)
    if n_images <= 0:
        yield np.zeros((resamples, 0), dtype=np.int32)
        return
    rng = np.random.default_rng(seed)
    step = max(1, (1 << 22) // n_images)
    for a in range(0, resamples, step):
        rows = min(resamples, a + step) - a
        draws = rng.integers(0, n_images, size=(rows, n_images), dtype=np.int64)
        draws += (np.arange(rows, dtype=np.int64) * n_images)[:, None]
        yield np.bincount(draws.ravel(), minlength=rows * n_images
                          ).reshape(rows, n_images).astype(np.int32)


def resample_weights(n_images: int, resamples: int = RESAMPLES, seed: int = SEED
                     ) -> np.ndarray:
    """``(resamples, n_images)`` int32: how often each image is drawn in each resample.

    Each row is ``n_images`` uniform draws with replacement (a multinomial count vector
    summing to ``n_images``), from ``numpy.random.default_rng(seed)``: the same arguments
    give the same weights.
    """
    return np.concatenate(list(iter_resample_weights(n_images, resamples, seed)))


def _ap_columns(prop: np.ndarray, rec: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """VOC all-point AP per column, with the arithmetic of ``evaluate.voc_ap``.

    Args:
        prop: ``(T, M)`` proposals per threshold (cumulative, whole numbers as float64).
        rec: ``(T, M)`` recalled faces per threshold (``rec <= prop``).
        faces: ``(M,)`` counted faces.

    Returns:
        ``(M,)`` AP.
    """
    t_num = prop.shape[0]
    mrec = np.zeros((t_num + 2,) + prop.shape[1:])
    mpre = np.zeros_like(mrec)
    # rec <= prop and rec <= faces, so a zero denominator (replaced by 1) has rec = 0 and
    # gives 0.0: evaluate's precision where no proposal counts and recall without faces
    np.divide(rec, np.maximum(prop, 1.0), out=mpre[1:-1])
    np.divide(rec, np.maximum(faces, 1.0), out=mrec[1:-1])
    mrec[-1] = 1.0
    for t in range(t_num, -1, -1):  # the envelope; rows are contiguous, a loop is fastest
        np.maximum(mpre[t], mpre[t + 1], out=mpre[t])
    # terms where the recall does not move are exactly 0, as the points voc_ap skips
    np.subtract(mrec[1:], mrec[:-1], out=mrec[:-1])
    np.multiply(mrec[:-1], mpre[1:], out=mrec[:-1])
    # summed along a contiguous axis: numpy's pairwise summation (error ~ log2(T) eps)
    terms = np.ascontiguousarray(mrec[:-1].reshape(t_num + 1, -1).T)
    return np.sum(terms, axis=1).reshape(prop.shape[1:])


def _check_weights(counts: ImageCounts, weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights)
    n = counts.images
    if w.ndim != 2 or w.shape[1] != n:
        raise InputError(f"weights must be (R, {n}) for {n} images, got shape {w.shape}")
    if w.size and w.min() < 0:
        raise InputError("weights must be non-negative (how often each image counts)")
    return w


def _block_counts(counts: ImageCounts, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``x`` ``(N, r)`` float64 weights: ``(T, 2 S, r)`` cumulative proposals /
    recalled (interleaved per setting) and ``(S, r)`` faces, whole numbers in float64."""
    s_num, t_num = len(counts.settings), counts.thresh_num
    split = 2 * s_num * t_num
    y = np.asarray(counts.increments @ x)  # (2 S T + S, r), exact whole numbers
    cum = y[:split].reshape(t_num, 2 * s_num, x.shape[1])
    for t in range(1, t_num):  # cumulative over thresholds, contiguous rows
        np.add(cum[t], cum[t - 1], out=cum[t])
    return cum, y[split:]


def weighted_counts(counts: ImageCounts, weights: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The official counts of every row of image weights (exact integers).

    Args:
        counts: the per-image counts (:func:`image_counts`).
        weights: ``(R, N)`` non-negative integer weights (see :func:`weighted_ap`).

    Returns:
        ``(proposals, recalled, faces)``: ``(R, S, T)``, ``(R, S, T)`` and ``(R, S)`` int64,
        per row the ``proposals`` / ``recalled`` of ``evaluate``'s curves and its ``faces``.
    """
    w = _check_weights(counts, weights)
    cum, faces = _block_counts(counts, np.ascontiguousarray(w.T, dtype=np.float64))
    cum = np.rint(cum).astype(np.int64).transpose(2, 1, 0)  # (R, 2 S, T)
    return cum[:, 0::2], cum[:, 1::2], np.rint(faces).astype(np.int64).T


def weighted_ap(counts: ImageCounts, weights: np.ndarray) -> np.ndarray:
    """AP of every setting for every row of image weights.

    Args:
        counts: the per-image counts (:func:`image_counts`).
        weights: ``(R, N)`` non-negative integer weights (how often each image counts);
            a row of ones is the evaluated set itself, a row of integers the multiset with
            images repeated (score normalisation: the full set's, see the module docstring).

    Returns:
        ``(R, S)`` float64 AP per row and setting.

    Raises:
        InputError: ``weights`` is not ``(R, N)`` or has negative entries.
    """
    w = _check_weights(counts, weights)
    out = np.zeros((w.shape[0], len(counts.settings)))
    for a in range(0, w.shape[0], BLOCK):
        x = np.ascontiguousarray(w[a:a + BLOCK].T, dtype=np.float64)  # (N, r)
        cum, faces = _block_counts(counts, x)
        out[a:a + x.shape[1]] = _ap_columns(cum[:, 0::2], cum[:, 1::2], faces).T
    return out


__all__ = ["BLOCK", "CONFIDENCE", "RESAMPLES", "SEED", "ImageCounts", "check_params",
           "image_counts", "iter_resample_weights", "resample_weights", "weighted_ap",
           "weighted_counts"]
