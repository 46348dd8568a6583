"""The cartoon-faces experts' conditions in batches, for training and evaluation: every modality of a
batch of faces (the null condition, all zeros, where a modality is left out)."""

from __future__ import annotations

import numpy as np
import torch

from unite_demo.worlds.conditions import one_hot, stroke_planes
from unite_demo.worlds.faces.data import NUM_CLASSES
from unite_demo.worlds.faces.model import TEXT_DIM
from unite_demo.worlds.faces.text import encode_captions


def seg_tensor(seg: np.ndarray) -> torch.Tensor:
    """(H,W) class ids -> (K,H,W) one-hot float."""
    return one_hot(seg, NUM_CLASSES)


def sketch_tensor(sketch: np.ndarray) -> torch.Tensor:
    """(H,W) uint8, strokes > 127 -> (2,H,W): [stroke in {0,1}, present = 1]."""
    return stroke_planes(sketch)


def null_conditions(batch: int, size: int) -> dict[str, torch.Tensor]:
    """All-zero conditions: the null (unconditional) input of every modality."""
    return {
        "seg": torch.zeros(batch, NUM_CLASSES, size, size),
        "sketch": torch.zeros(batch, 2, size, size),
        "text": torch.zeros(batch, TEXT_DIM),
    }


def face_conditions(faces, modalities=("seg", "sketch", "text")) -> dict[str, torch.Tensor]:
    """Training batch: the listed modalities of these faces, the others null."""
    size = faces[0].seg.shape[0]
    cond = null_conditions(len(faces), size)
    if "seg" in modalities:
        cond["seg"] = torch.stack([seg_tensor(f.seg) for f in faces])
    if "sketch" in modalities:
        cond["sketch"] = torch.stack([sketch_tensor(f.sketch) for f in faces])
    if "text" in modalities:
        cond["text"] = encode_captions([f.caption for f in faces])
    return cond
