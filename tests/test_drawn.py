"""The drawn held-out set: reproducible, made through the page's readers, varied, and unlike the
generator's faces (another procedure, other captions)."""

import numpy as np

from unite_demo.worlds.conditions import seg_from_image, sketch_from_image
from unite_demo.worlds.faces.data import ATTRIBUTES, FACES_PALETTE, SPLITS, SYNONYMS, make_face
from unite_demo.worlds.faces.evaluation.drawn import DRAWN_N, drawn_case, drawn_set


def test_cases_are_reproducible_and_distinct():
    a, b, c = drawn_case(3), drawn_case(3), drawn_case(4)
    for field in ("seg", "sketch", "edges", "seg_canvas", "sketch_canvas"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert a.caption == b.caption and not np.array_equal(a.seg, c.seg)
    assert DRAWN_N >= 200


def test_conditions_are_what_the_page_readers_make_of_the_canvases():
    case = drawn_case(0)
    assert case.seg_canvas.shape == case.sketch_canvas.shape == (256, 256, 3)
    assert np.array_equal(seg_from_image(case.seg_canvas, 32, palette=FACES_PALETTE), case.seg)
    assert np.array_equal(sketch_from_image(case.sketch_canvas, 32), case.sketch)
    assert case.edges.shape == (32, 32) and (case.edges > 0).sum() < (case.sketch > 0).sum()  # centre lines


def test_the_set_varies_and_is_consistent_with_its_attributes():
    cases = drawn_set(60)
    centres = np.array([np.argwhere(c.seg == 1).mean(0) for c in cases])
    assert np.ptp(centres[:, 0]) > 10 and np.ptp(centres[:, 1]) > 10  # painted anywhere
    sizes = [(c.seg > 0).sum() for c in cases]
    assert max(sizes) > 3 * min(sizes)
    for c in cases:
        assert set(c.attributes) == set(ATTRIBUTES) and set(c.mentioned) <= set(ATTRIBUTES) and len(c.mentioned) >= 2
        assert ((c.seg == 6).any()) == (c.attributes["glasses"] == "yes")
        assert ((c.seg == 7).any()) == (c.attributes["beard"] == "yes")
        assert ((c.seg == 2).sum() > 5) == (c.attributes["hair_style"] != "bald")


def test_captions_are_not_the_generators():
    cases = drawn_set(100)
    generator = {make_face(SPLITS["heldout"].start + k).caption for k in range(300)}
    assert not generator & {c.caption for c in cases}
    # Words for values that no generator caption uses (near words the experts never read in training).
    generator_words = {w for values in SYNONYMS.values() for words in values.values() for w in words}
    unseen = [c for c in cases if any(w in c.caption for w in ("crimson", "platinum", "sapphire", "azure", "mustard",
                                                                 "cobalt", "plum", "espresso", "bronzed"))]
    assert len(unseen) >= 10 and not {"crimson", "platinum", "sapphire", "azure"} & generator_words
    shapes = {c.caption.split()[0] for c in cases}
    assert {"make", "Portrait", "i"} <= shapes
