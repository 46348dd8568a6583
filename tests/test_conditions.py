"""Input validation and encoding: one place, clear messages."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from unite_demo.worlds.conditions import (MAX_SIDE, ConditionError, check_text, make_request, parse_reliability,
                                          seg_from_image, sketch_from_image)
from unite_demo.worlds.faces.conditions import seg_tensor, sketch_tensor
from unite_demo.worlds.faces.data import FACES_PALETTE, NUM_CLASSES, make_face, seg_to_rgb
from unite_demo.worlds.faces.text import encode_captions
from unite_demo.worlds.modalities import MODALITIES

MODS = ("seg", "sketch", "text")
# What the modalities read of a world, for the cartoon faces at 32 px (no networks needed)
FACES = SimpleNamespace(image_size=32, palette=FACES_PALETTE, class_names=(), encode_text=encode_captions)


def faces_request(inputs=None, **settings):
    return make_request(32, MODS, inputs, read=lambda m, given: MODALITIES[m].read(given, FACES), **settings)


def _png(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    buf.seek(0)
    return buf


def test_seg_map_round_trips_through_palette_colours_at_any_size():
    f = make_face(3, 32)
    rgb = seg_to_rgb(f.seg)
    assert np.array_equal(seg_from_image(_png(rgb), 32, palette=FACES_PALETTE), f.seg)
    big = np.asarray(Image.fromarray(rgb).resize((256, 256), Image.Resampling.NEAREST))
    assert np.array_equal(seg_from_image(big, 32, palette=FACES_PALETTE), f.seg)


def test_seg_map_tolerates_antialiasing_but_refuses_foreign_colours():
    f = make_face(3, 32)
    rgb = seg_to_rgb(f.seg).astype(int)
    noisy = np.clip(rgb + np.random.default_rng(0).integers(-20, 21, rgb.shape), 0, 255).astype(np.uint8)
    assert np.array_equal(seg_from_image(noisy, 32, palette=FACES_PALETTE), f.seg)
    photo = np.full((32, 32, 3), (90, 140, 30), np.uint8)
    with pytest.raises(ConditionError, match=r"not palette colours.*\(90, 140, 30\).*accepted colours: background"):
        seg_from_image(photo, 32, palette=FACES_PALETTE)
    # The painter maps any colour to its nearest class when asked to.
    assert seg_from_image(photo, 32, strict=False, palette=FACES_PALETTE).shape == (32, 32)


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "CMYK", "I;16"])
def test_images_in_any_mode_are_read(mode):
    f = make_face(4, 32)
    img = Image.fromarray(seg_to_rgb(f.seg))
    if mode == "I;16":
        img = Image.fromarray((np.asarray(img.convert("L")).astype(np.uint16) * 257), "I;16")
    else:
        img = img.convert(mode)
    sk = sketch_from_image(img, 32)
    assert sk.shape == (32, 32) and sk.dtype == np.uint8
    if mode in ("RGBA", "P", "CMYK"):
        assert (seg_from_image(img, 32, strict=False, palette=FACES_PALETTE) == f.seg).mean() > 0.9


def test_sketch_polarity_is_normalised_to_white_on_black():
    f = make_face(5, 32)
    white_on_black = sketch_from_image(f.sketch, 32)
    black_on_white = sketch_from_image(255 - f.sketch, 32)
    assert np.array_equal(white_on_black, f.sketch)
    assert np.array_equal(black_on_white, f.sketch)


def test_thin_strokes_on_a_big_canvas_survive_downsampling():
    canvas = np.zeros((512, 512), np.uint8)
    canvas[100:104, 50:450] = 255  # a 4-pixel line
    sk = sketch_from_image(canvas, 32)
    assert sk[6:8].any() and sk.sum() / 255 >= 20


def test_bad_images_get_clear_messages(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ConditionError, match="sketch: cannot read the image"):
        sketch_from_image(str(bad), 32)
    with pytest.raises(ConditionError, match="file not found"):
        seg_from_image(str(tmp_path / "missing.png"), 32, palette=FACES_PALETTE)
    huge = Image.new("L", (MAX_SIDE + 1, 8))
    with pytest.raises(ConditionError, match=f"at most {MAX_SIDE}x{MAX_SIDE}"):
        sketch_from_image(huge, 32)
    truncated = tmp_path / "cut.png"
    data = _png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).getvalue()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConditionError, match="damaged|cannot read"):
        seg_from_image(str(truncated), 32, palette=FACES_PALETTE)


def test_text_and_reliability_parsing():
    assert check_text("  a  smiling\nface ") == "a smiling face"
    assert check_text("   ") is None and check_text(None) is None
    with pytest.raises(ConditionError, match="at most 1000"):
        check_text("x" * 1001)
    assert parse_reliability("seg=1, text=0.5", MODS) == {"seg": 1.0, "text": 0.5}
    for spec, msg in (("colour=1", "unknown modality 'colour'"), ("seg=-1", "reliability of seg"),
                      ("seg=nan", "reliability of seg"), ("seg", "name=value"), ("seg=abc", "reliability of seg")):
        with pytest.raises(ConditionError, match=msg):
            parse_reliability(spec, MODS)


def test_make_request_validates_every_field():
    f = make_face(6, 32)
    req = faces_request({"seg": seg_to_rgb(f.seg), "sketch": f.sketch, "text": "a face"}, reliability="text=2",
                        default_reliability={"seg": 0.5})
    assert req.reliability == {"seg": 0.5, "sketch": 1.0, "text": 2.0}
    assert req.present() == MODS and np.array_equal(req.values["seg"], f.seg)
    cond = {m: MODALITIES[m].tensor(v, FACES) for m, v in req.values.items()}
    assert cond["seg"].shape == (1, NUM_CLASSES, 32, 32) and cond["sketch"].shape == (1, 2, 32, 32)
    assert cond["text"].shape == (1, 384) and torch.allclose(cond["text"].norm(), torch.tensor(1.0))
    empty = faces_request({"sketch": np.zeros((64, 64), np.uint8), "text": ""})
    assert empty.present() == () and any("sketch is empty" in n for n in empty.notes)
    for kwargs, msg in (({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"seed": -1}, "seed"),
                        ({"guidance": float("inf")}, "guidance"), ({"sampler": "euler"}, "unknown sampler 'euler'"),
                        ({"reliability": {"colour": 1}}, "unknown modality")):
        with pytest.raises(ConditionError, match=msg):
            faces_request(**kwargs)


def test_condition_tensors():
    f = make_face(7, 32)
    s = seg_tensor(f.seg)
    assert s.shape == (NUM_CLASSES, 32, 32) and torch.equal(s.sum(0), torch.ones(32, 32))
    k = sketch_tensor(f.sketch)
    assert torch.equal(k[1], torch.ones(32, 32)) and k[0].sum() == (f.sketch > 0).sum()
