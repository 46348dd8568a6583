"""Metrics of the evaluation: condition consistency (seg mIoU, sketch edge F1, caption attribute
accuracy), realism (Fréchet distance of classifier features) and diversity across seeds."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from unite_demo.worlds.faces.data import NUM_CLASSES

EDGE_TOLERANCE = 2.0  # pixels (Euclidean) within which two edge pixels may be matched
# Canny on the RGB image (gradient of the strongest channel), thresholds chosen so that rendered faces,
# clean or with mild noise or blur, score high against their own sketches and clearly above another
# face's image or an all-edge map (tests/test_metrics.py holds them to that).
CANNY_LOW, CANNY_HIGH = 100, 200


def miou(pred: np.ndarray, target: np.ndarray, num_classes: int = NUM_CLASSES) -> float:
    """Mean intersection over union of two (H,W) class maps, over the classes present in either."""
    ious = []
    for k in range(num_classes):
        p, t = pred == k, target == k
        union = np.logical_or(p, t).sum()
        if union:
            ious.append(np.logical_and(p, t).sum() / union)
    return float(np.mean(ious)) if ious else 1.0


def image_edges(image: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 image -> (H,W) bool edge map (Canny, one pixel wide)."""
    return cv2.Canny(np.ascontiguousarray(image), CANNY_LOW, CANNY_HIGH, L2gradient=True) > 0


def edge_f1(pred: np.ndarray, target: np.ndarray, tolerance: float = EDGE_TOLERANCE) -> float:
    """F1 of two (H,W) bool edge maps with one-to-one matching, as in the BSDS boundary benchmark:
    a maximum matching pairs pred and target pixels at most `tolerance` apart; precision and
    recall are the matched shares of each. Both empty: 1; exactly one empty: 0."""
    pred, target = pred.astype(bool), target.astype(bool)
    if not pred.any() and not target.any():
        return 1.0
    if not pred.any() or not target.any():
        return 0.0
    p, t = np.argwhere(pred), np.argwhere(target)  # (P, 2), (T, 2) pixel coordinates
    near = np.linalg.norm(p[:, None, :] - t[None, :, :], axis=-1) <= tolerance  # (P, T)
    matched = int((maximum_bipartite_matching(csr_matrix(near), perm_type="column") >= 0).sum())
    if matched == 0:
        return 0.0
    precision, recall = matched / len(p), matched / len(t)
    return 2 * precision * recall / (precision + recall)


def sketch_f1(image: np.ndarray, sketch: np.ndarray) -> float:
    """Sketch consistency: edge F1 between an image's edges and a sketch (255 = stroke)."""
    return edge_f1(image_edges(image), sketch > 127)


def attribute_hits(pred: dict[str, str], attributes: dict[str, str], mentioned: Sequence[str]) -> tuple[int, int]:
    """(correct, total) over the attributes the caption mentions."""
    return sum(pred[a] == attributes[a] for a in mentioned), len(mentioned)


def attribute_accuracy(preds: Sequence[dict[str, str]], faces) -> float:
    """Text consistency: share of (face, mentioned attribute) pairs predicted right, pooled."""
    hits = [attribute_hits(p, f.attributes, f.mentioned) for p, f in zip(preds, faces)]
    total = sum(t for _, t in hits)
    return sum(c for c, _ in hits) / total if total else 1.0


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D,D) of (N,D) features."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues set to 0)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N,D) feature sets:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)."""
    mu_a, s_a = feature_stats(a)
    mu_b, s_b = feature_stats(b)
    root_a = _sqrt_psd(s_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0, None)).sum()
    return float(max(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * cross, 0.0))


def diversity(features: np.ndarray) -> float:
    """Mean pairwise Euclidean feature distance across seeds for the same conditions:
    features (faces, seeds, D), averaged over the seed pairs of each face, then over faces."""
    features = np.asarray(features, dtype=np.float64)
    n_seeds = features.shape[1]
    if n_seeds < 2:
        raise ValueError(f"diversity needs at least 2 seeds per condition, got {n_seeds}")
    d = np.linalg.norm(features[:, :, None] - features[:, None, :], axis=-1)  # (faces, seeds, seeds)
    i, j = np.triu_indices(n_seeds, k=1)
    return float(d[:, i, j].mean())
