"""Input validation and encoding: one place, clear messages."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from unite_demo.limits import MAX_TEXT_CHARS
from unite_demo.worlds.conditions import (MAX_SIDE, ConditionError, check_text, check_view, make_request,
                                          parse_reliability, seg_from_image, sketch_from_image)
from unite_demo.worlds.faces.conditions import seg_tensor, sketch_tensor
from unite_demo.worlds.faces.data import FACES_PALETTE, NUM_CLASSES, make_face, seg_to_rgb
from unite_demo.worlds.faces.text import caption_doubt, encode_captions
from unite_demo.worlds.modalities import MODALITIES

MODS = ("seg", "sketch", "text")
# What the modalities read of a world, for the cartoon faces at 32 px (no networks needed)
FACES = SimpleNamespace(image_size=32, palette=FACES_PALETTE, class_names=(), encode_text=encode_captions,
                        caption_doubt=caption_doubt)


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
    notes = []
    assert check_text("red hair " * 600, notes) == ("red hair " * 600)[:MAX_TEXT_CHARS].rstrip()  # cut, not refused
    assert notes == ["text: 5,399 characters; the first 1,000 are read"]  # counted after the spaces are tidied
    notes = []
    assert check_text("x" * MAX_TEXT_CHARS, notes) == "x" * MAX_TEXT_CHARS and notes == []
    assert parse_reliability("seg=1, text=0.5", MODS, notes) == {"seg": 1.0, "text": 0.5} and notes == []
    assert parse_reliability("seg=999, text=-1", MODS, notes) == {"seg": 3.0, "text": 0.0}
    assert notes == ["reliability of seg: 999 is over the maximum 3; 3 is used",
                     "reliability of text: -1 is under the minimum 0; 0 is used"]
    for spec, msg in (("colour=1", "unknown modality 'colour'"), ("seg=inf", "reliability of seg"),
                      ("seg=nan", "reliability of seg"), ("seg", "name=value"), ("seg=abc", "reliability of seg")):
        with pytest.raises(ConditionError, match=msg):
            parse_reliability(spec, MODS, [])


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
    for kwargs, msg in (({"steps": 2.5}, "steps: expected a whole number from 1 to 50, got 2.5"),
                        ({"seed": 1.5}, "seed"), ({"steps": "8"}, "steps"), ({"steps": True}, "steps"),
                        ({"guidance": float("inf")}, "guidance"), ({"guidance": float("nan")}, "guidance"),
                        ({"guidance": True}, "guidance"), ({"guidance": "lots"}, "guidance"),
                        ({"reliability": {"seg": float("-inf")}}, "reliability of seg"),
                        ({"sampler": "euler"}, "unknown sampler 'euler'"),
                        ({"reliability": {"colour": 1}}, "unknown modality")):
        with pytest.raises(ConditionError, match=msg):
            faces_request(**kwargs)


@pytest.mark.parametrize("settings, used, note", [
    ({"steps": 500}, ("steps", 50), "steps: 500 is over the maximum 50; 50 is used"),
    ({"steps": 0}, ("steps", 1), "steps: 0 is under the minimum 1; 1 is used"),
    ({"steps": 500.0}, ("steps", 50), "steps: 500 is over the maximum 50; 50 is used"),  # a whole float is whole
    ({"steps": 1e308}, ("steps", 50), "steps: 1e+308 is over the maximum 50; 50 is used"),
    ({"seed": -1}, ("seed", 0), "seed: -1 is under the minimum 0; 0 is used"),
    ({"seed": 2**70}, ("seed", 2**32 - 1), "seed: 1.18059e+21 is over the maximum 4294967295; 4294967295 is used"),
    ({"guidance": 15}, ("guidance", 10.0), "guidance: 15 is over the maximum 10; 10 is used"),
    ({"guidance": "-0.5"}, ("guidance", 0.0), "guidance: -0.5 is under the minimum 0; 0 is used"),
    ({"guidance": 10**400}, ("guidance", 10.0), "guidance: 1e+400 is over the maximum 10; 10 is used"),
    ({"reliability": {"seg": 999}}, ("seg", 3.0), "reliability of seg: 999 is over the maximum 3; 3 is used"),
    ({"reliability": "sketch=3.5"}, ("sketch", 3.0), "reliability of sketch: 3.5 is over the maximum 3; 3 is used"),
    ({"reliability": {"text": -1e-9}}, ("text", 0.0), "reliability of text: -1e-09 is under the minimum 0; 0 is used"),
])
def test_a_finite_number_out_of_range_is_set_to_the_nearest_end_with_one_note(settings, used, note):
    f = make_face(6, 32)
    req = faces_request({"seg": seg_to_rgb(f.seg), "text": "a face"}, **settings)
    name, value = used
    got = req.reliability[name] if name in MODS else getattr(req, name)
    assert got == value and type(got) is type(value)
    assert [n for n in req.notes if " is used" in n] == [note]


def test_a_reliability_for_a_modality_the_world_lacks_is_checked_but_not_said():
    req = make_request(32, MODS, {"text": "a face"}, read=lambda m, given: MODALITIES[m].read(given, FACES),
                       reliability={"class": 999}, known=(*MODS, "class"))
    assert "class" not in req.reliability and not [n for n in req.notes if "class" in n]
    with pytest.raises(ConditionError, match="reliability of class"):
        make_request(32, MODS, {"text": "a face"}, read=lambda m, given: MODALITIES[m].read(given, FACES),
                     reliability={"class": "lots"}, known=(*MODS, "class"))


def test_a_long_caption_is_cut_with_one_note_and_read():
    req = faces_request({"text": "a smiling face with red hair " + "x" * 4971})
    assert len(req.values["text"]) == MAX_TEXT_CHARS and req.values["text"].startswith("a smiling face with red hair")
    assert req.notes == ("text: 5,000 characters; the first 1,000 are read",)


def test_sweep_values_out_of_range_are_set_within_it_and_said_once():
    notes = []
    assert check_view("sweep", "text", "0, 9, 9, -2", ("text",), notes) == ("sweep", "text", (0.0, 3.0))
    assert notes == ["sweep value: 9 is over the maximum 3; 3 is used",
                     "sweep value: -2 is under the minimum 0; 0 is used"]
    with pytest.raises(ConditionError, match="sweep value: expected a number from 0 to 3, got 'nan'"):
        check_view("sweep", "text", "0, nan", ("text",), [])


def test_condition_tensors():
    f = make_face(7, 32)
    s = seg_tensor(f.seg)
    assert s.shape == (NUM_CLASSES, 32, 32) and torch.equal(s.sum(0), torch.ones(32, 32))
    k = sketch_tensor(f.sketch)
    assert torch.equal(k[1], torch.ones(32, 32)) and k[0].sum() == (f.sketch > 0).sum()
