"""Conditions as people make them (unite_demo.worlds.faces.training.augment): seeded, close to the map they come from, and
as rough as painted maps and drawn sketches are."""

import numpy as np
import torch

from unite_demo.worlds.faces.data import NUM_CLASSES, make_face, sketch_from_labels
from unite_demo.worlds.faces.evaluation.metrics import edge_f1, miou
from unite_demo.worlds.faces.training import augment


def _faces(n=40):
    return [make_face(7000 + k) for k in range(n)]


def test_same_generator_state_same_condition():
    f = make_face(11)
    for fn in (augment.rough_seg, augment.drawn_sketch):
        a, b = fn(f.seg, np.random.default_rng(5)), fn(f.seg, np.random.default_rng(5))
        assert np.array_equal(a, b)


def test_rough_maps_stay_close_to_the_map_but_are_not_it():
    rng = np.random.default_rng(0)
    scores, changed = [], 0
    for f in _faces():
        rough = augment.rough_seg(f.seg, rng)
        assert rough.shape == f.seg.shape and rough.dtype == np.uint8 and rough.max() < NUM_CLASSES
        scores.append(miou(rough, f.seg))
        changed += not np.array_equal(rough, f.seg)
    assert 0.55 < np.mean(scores) < 0.97  # the same face, painted by hand
    assert changed >= 0.6 * len(scores)  # most rows rough, some exact (P_EXACT_SEG)
    assert changed < len(scores)


def test_drawn_sketches_are_thicker_broken_outlines_of_the_same_face():
    rng = np.random.default_rng(1)
    widths, f1s = [], []
    for f in _faces():
        s = augment.drawn_sketch(f.seg, rng)
        assert s.shape == f.seg.shape and set(np.unique(s)) <= {0, 255}
        exact = sketch_from_labels(f.seg)
        if np.array_equal(s, exact):
            continue
        widths.append((s > 0).sum() / max((exact > 0).sum(), 1))
        f1s.append(edge_f1(s > 0, exact > 0, tolerance=2.0))
    assert len(widths) >= 25
    assert np.median(widths) > 1.1  # strokes of more than one pixel on average
    assert 0.3 < np.median(f1s) < 0.95  # near the map's outlines, never a copy of them


def test_stroke_width_follows_the_face_size():
    faces = sorted(_faces(), key=lambda f: (f.seg > 0).sum())
    def ratio(f):  # stroke pixels against the one-pixel outline, over several draws
        exact = (sketch_from_labels(f.seg) > 0).sum()
        return np.mean([(augment.drawn_sketch(f.seg, np.random.default_rng(s)) > 0).sum() / exact for s in range(8)])
    small, large = np.mean([ratio(f) for f in faces[:4]]), np.mean([ratio(f) for f in faces[-4:]])
    assert small < 1.4  # thin strokes on a small face, not a filled blob
    assert large > small + 0.2  # thicker strokes where the face leaves room


def test_training_batches_augment_only_the_experts_own_condition():
    from unite_demo.worlds.faces.training import train

    x_a, c_a = train.batch_for_step("seg", 0, 3, 8, 32, p_drop=0.0)
    x_b, c_b = train.batch_for_step("seg", 0, 3, 8, 32, p_drop=0.0)
    x_e, c_e = train.batch_for_step("seg", 0, 3, 8, 32, p_drop=0.0, augment=False)
    assert torch.equal(c_a["seg"], c_b["seg"]) and torch.equal(x_a, x_b)  # seeded by (seed, step)
    assert torch.equal(x_a, x_e)  # the images are the generator's, untouched
    assert not torch.equal(c_a["seg"], c_e["seg"])  # the map is painted by hand
    assert c_a["sketch"].abs().sum() == 0 and c_a["text"].abs().sum() == 0  # other modalities stay null
    _, s_a = train.batch_for_step("sketch", 0, 3, 8, 32, p_drop=0.0)
    _, s_e = train.batch_for_step("sketch", 0, 3, 8, 32, p_drop=0.0, augment=False)
    assert not torch.equal(s_a["sketch"], s_e["sketch"])
