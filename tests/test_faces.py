"""The procedural cartoon-faces generator: determinism, agreement of image/map/sketch, splits."""

import itertools
import random
import re

import numpy as np
import pytest

from unite_demo.worlds.faces.data import (ATTRIBUTES, BACKGROUND_RGB, BALD_WORDS, HAIR_RGB, NUM_CLASSES, PALETTE,
                                          SKIN_RGB, SPLITS, SYNONYMS, UNKNOWN_DETAILS, caption_for, make_face,
                                          sample_attributes)


def test_same_seed_same_face_other_seed_other_face():
    a, b, c = make_face(123), make_face(123), make_face(124)
    for field in ("image", "seg", "sketch"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert a.caption == b.caption and a.attributes == b.attributes
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_and_value_ranges(size):
    f = make_face(5, size)
    assert f.image.shape == (size, size, 3) and f.image.dtype == np.uint8
    assert f.seg.shape == (size, size) and f.seg.max() < NUM_CLASSES
    assert f.sketch.shape == (size, size) and set(np.unique(f.sketch)) <= {0, 255}


def test_palette_is_one_consistent_definition():
    ids = [i for i, _, _ in PALETTE]
    assert ids == list(range(NUM_CLASSES))
    names = {n for _, n, _ in PALETTE}
    assert {"background", "skin", "hair", "eyes", "brows", "mouth", "glasses", "beard"} <= names
    assert len({rgb for _, _, rgb in PALETTE}) == NUM_CLASSES


def _interior(mask):
    """Pixels whose 4 neighbours share the mask (away from anti-aliased edges)."""
    m = mask.copy()
    m[1:] &= mask[:-1]
    m[:-1] &= mask[1:]
    m[:, 1:] &= mask[:, :-1]
    m[:, :-1] &= mask[:, 1:]
    return m


@pytest.mark.parametrize("seed", range(20))
def test_image_map_and_sketch_agree(seed):
    f = make_face(seed, 32)
    img = f.image.astype(int)
    for cls, colour in ((0, BACKGROUND_RGB[f.attributes["background"]]), (1, SKIN_RGB[f.attributes["skin_tone"]]),
                        (2, HAIR_RGB[f.attributes["hair_colour"]])):
        inside = _interior(f.seg == cls)
        if inside.sum() >= 4:
            assert np.abs(img[inside] - np.array(colour)).max(axis=1).mean() < 12, PALETTE[cls][1]
    assert (f.seg == 1).sum() > 25  # a face is there (small faces and faces cut by the frame included)
    assert ((f.seg == 6).any()) == (f.attributes["glasses"] == "yes")
    assert ((f.seg == 7).any()) == (f.attributes["beard"] == "yes")
    assert ((f.seg == 2).sum() > 10) == (f.attributes["hair_style"] != "bald")
    # Sketch strokes lie on class boundaries of the map (within one pixel)...
    edge = np.zeros_like(f.seg, dtype=bool)
    edge[:, 1:] |= f.seg[:, 1:] != f.seg[:, :-1]
    edge[1:, :] |= f.seg[1:, :] != f.seg[:-1, :]
    near = edge.copy()
    near[:, :-1] |= edge[:, 1:]
    near[:-1, :] |= edge[1:, :]
    near[1:, 1:] |= edge[:-1, :-1]
    strokes = f.sketch > 0
    assert (strokes & near).sum() / strokes.sum() > 0.9
    # ...and most boundaries carry a stroke.
    assert (near & strokes).sum() / edge.sum() > 0.5


def test_captions_name_the_attributes_they_mention():
    for seed in range(200):
        f = make_face(seed)
        text = f.caption
        for attr in f.mentioned:
            value = f.attributes[attr]
            if attr in SYNONYMS and value in SYNONYMS[attr]:
                assert any(word in text for word in SYNONYMS[attr][value]), (attr, value, text)
            elif attr == "hair_style":  # bald
                assert any(word in text for word in BALD_WORDS), text
        if "expression" not in f.mentioned:  # an expression is named only when the caption mentions one
            said = {w for words in SYNONYMS["expression"].values() for w in words}
            assert not any(re.search(rf"\b{w}\b", text) for w in said), text


def test_captions_use_other_words_and_shapes_for_the_same_values():
    attrs = sample_attributes(random.Random(3))
    attrs.update(hair_style="long", hair_colour="blonde", background="sky blue")
    texts = [caption_for(attrs, random.Random(s), mention_p=1.0)[0] for s in range(300)]
    for value, words in (("blonde", SYNONYMS["hair_colour"]["blonde"]), ("sky blue", SYNONYMS["background"]["sky blue"])):
        used = {w for w in words if any(w in t for t in texts)}
        assert len(used) >= 3, (value, used)  # several words for one value
    assert any(t.startswith("this ") for t in texts) and any(" who has " in t for t in texts)
    assert any(any(d in t for d in UNKNOWN_DETAILS) for t in texts)  # things the world does not draw


def test_layouts_vary_in_place_and_size_are_cut_by_the_frame_and_leave_parts_out():
    faces = [make_face(s) for s in range(300)]
    centres, sizes = [], []
    for f in faces:
        ys, xs = np.nonzero(f.seg == 1)
        centres.append((xs.mean(), ys.mean()))
        sizes.append(len(xs))
    centres = np.array(centres)
    assert centres[:, 0].min() < 10 and centres[:, 0].max() > 22  # off-centre both ways, not +-1.5 px
    assert centres[:, 1].min() < 10 and centres[:, 1].max() > 22
    assert max(sizes) > 3 * min(sizes)  # small and large faces
    assert sum((f.seg[0].any() or f.seg[-1].any() or f.seg[:, 0].any() or f.seg[:, -1].any()) and
               (f.seg[[0, -1]] == 1).any() | (f.seg[:, [0, -1]] == 1).any() for f in faces) > 20  # cut by the frame
    no_brows = sum(not (f.seg == 4).any() and f.attributes["glasses"] == "no" for f in faces)
    assert 10 < no_brows < 120
    assert any("expression" not in f.mentioned and not (f.seg == 5).any() for f in faces)  # no mouth, not said


def test_captions_are_varied():
    captions = {make_face(s).caption for s in range(100)}
    assert len(captions) > 95
    rng = random.Random(0)
    attrs = sample_attributes(rng)
    wordings = {caption_for(attrs, random.Random(s), mention_p=1.0)[0] for s in range(50)}
    assert len(wordings) > 10


def test_every_attribute_value_occurs():
    seen = {a: set() for a in ATTRIBUTES}
    for s in range(400):
        for a, v in make_face(s).attributes.items():
            seen[a].add(v)
    assert all(seen[a] == set(values) for a, values in ATTRIBUTES.items())


def test_splits_are_disjoint():
    for (a, ra), (b, rb) in itertools.combinations(SPLITS.items(), 2):
        assert ra.stop <= rb.start or rb.stop <= ra.start, (a, b)
