"""Input validation and encoding: one place, clear messages."""

import io
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from unite_demo.limits import MAX_TEXT_CHARS
from unite_demo.studio.results import request_key
from unite_demo.worlds.conditions import (MAX_SIDE, ConditionError, check_text, check_view, check_window, make_request,
                                          parse_pairs, parse_reliability, reliability_map, seg_from_image,
                                          sketch_from_image)
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


# --- reliability maps and windows -----------------------------------------------------------

def _face_inputs():
    f = make_face(6, 32)
    return {"seg": seg_to_rgb(f.seg), "sketch": f.sketch, "text": "a face"}


def test_a_reliability_map_is_read_from_any_image_at_any_size_as_grey(tmp_path):
    left = np.full((64, 96), 255, np.uint8)
    left[:, :48] = 0  # black on the left half
    want = np.ones((32, 32), np.float32)
    want[:, :16] = 0
    path = tmp_path / "map.png"
    Image.fromarray(left).save(path)
    for source in (str(path), path, Image.fromarray(left), left, np.dstack([left] * 3), _png(left),
                   {"background": None, "layers": [], "composite": np.dstack([left] * 3 + [np.full_like(left, 255)])},
                   left.astype(np.float32) / 255):
        got = reliability_map(source, 32, "reliability map of seg")
        assert got.dtype == np.float32 and np.array_equal(got, want), type(source)
    # RGB is read as its grey (luma); a float array is the map itself, resampled by area
    assert reliability_map(np.full((8, 8, 3), (255, 0, 0), np.uint8), 4, "m")[0, 0] == pytest.approx(76 / 255)
    assert reliability_map(np.full((2, 2), 0.25), 4, "m").tolist() == [[0.25] * 4] * 4
    # transparent counts as white (heard): black painted on a clear layer mutes where it is painted
    layer = np.zeros((32, 32, 4), np.uint8)
    layer[:, :16, 3] = 255
    assert np.array_equal(reliability_map(layer, 32, "m"), want)


def test_a_white_map_and_the_window_0_1_are_todays_request_exactly():
    inputs = _face_inputs()
    today = faces_request(inputs)
    same = faces_request(inputs, reliability_maps={"seg": np.full((50, 70), 255, np.uint8)},
                         windows={"sketch": "0,1", "text": (0.0, 1.0)})
    assert same.reliability_maps == {} and same.windows == {}
    assert replace(same, values={}) == replace(today, values={})
    assert all(np.array_equal(same.values[m], today.values[m]) for m in MODS)
    assert request_key("w", same) == request_key("w", today)


def test_maps_and_windows_are_kept_and_make_their_own_cache_key():
    inputs = _face_inputs()
    left = np.ones((32, 32), np.float32)
    left[:, :16] = 0
    req = faces_request(inputs, reliability_maps={"seg": left}, windows="sketch=0,0.6,text=0.2,1")
    assert set(req.reliability_maps) == {"seg"} and np.array_equal(req.reliability_maps["seg"], left)
    assert req.windows == {"sketch": (0.0, 0.6), "text": (0.2, 1.0)} and req.notes == ()
    keys = {request_key("w", r) for r in (faces_request(inputs), req,
                                          faces_request(inputs, reliability_maps={"seg": left}),
                                          faces_request(inputs, reliability_maps={"seg": 1 - left}),
                                          faces_request(inputs, windows={"sketch": (0, 0.6)}),
                                          faces_request(inputs, windows={"sketch": (0, 0.5)}))}
    assert len(keys) == 6
    # the strips' runs with one modality alone drop the others' maps and windows
    alone = req.without("seg", "text")
    assert alone.reliability_maps == {} and alone.windows == {"sketch": (0.0, 0.6)}
    # a list (a repeated command-line flag) and pairs in one string read the same
    assert parse_pairs(["sketch=0,0.6", "seg=a.png"], "window", "x") == {"sketch": "0,0.6", "seg": "a.png"}
    assert check_window(" (0.25, 0.75) ", "w") == (0.25, 0.75) and check_window([0, 1], "w") == (0.0, 1.0)


def test_a_black_map_and_a_window_with_no_step_are_said():
    req = faces_request(_face_inputs(), reliability_maps={"sketch": np.zeros((10, 10), np.uint8)},
                        windows={"text": (0.9, 1)}, steps=4)
    assert req.notes == ("reliability map of sketch is black everywhere: the sketch expert is off",
                         "window of text (0.9 to 1) holds none of the 4 steps: the text expert is not heard")


def test_a_map_or_window_of_a_modality_read_as_off_is_dropped():
    req = faces_request({**_face_inputs(), "sketch": np.zeros((32, 32), np.uint8)},
                        reliability_maps={"sketch": np.zeros((32, 32), np.float32)}, windows={"sketch": (0, 0.5)})
    assert "sketch" not in req.values and req.reliability_maps == {} and req.windows == {}


@pytest.mark.parametrize("settings, message", [
    ({"reliability_maps": {"colour": np.ones((4, 4))}},
     "reliability map: unknown modality 'colour'; accepted: seg, sketch, text"),
    ({"reliability_maps": "seg"}, "reliability map: expected name=value pairs like seg=mask.png, got 'seg'"),
    ({"reliability_maps": 5}, "reliability map: expected name=value pairs like seg=mask.png, got int"),
    ({"reliability_maps": {"seg": "missing.png"}}, "reliability map of seg: file not found: missing.png"),
    ({"reliability_maps": {"seg": 5}},
     r"reliability map of seg: expected an image \(a file, a PIL image, an array\) or an image editor's value, "
     "got int$"),
    ({"reliability_maps": {"seg": np.full((4, 4), 1.5)}},
     r"reliability map of seg: expected values from 0 \(not heard\) to 1 \(heard at its reliability\), got 1.5..1.5"),
    ({"reliability_maps": {"seg": np.full((4, 4), np.nan)}}, "reliability map of seg: expected values .* got nan"),
    ({"reliability_maps": {"seg": np.ones((MAX_SIDE + 1, 2), np.uint8)}},
     f"reliability map of seg: the image is 2x{MAX_SIDE + 1}; at most"),
    ({"reliability_maps": {"seg": {"composite": None, "background": None, "layers": []}}},
     "reliability map of seg: the image editor holds no image"),
    ({"reliability_maps": {"text": np.ones((4, 4))}},
     "reliability map of text: no text input is given; a reliability map applies to a modality given in this run"),
    ({"windows": "colour=0,1"}, "window: unknown modality 'colour'; accepted: seg, sketch, text"),
    ({"windows": {"class": (0, 1)}},
     "window of class: this world has no class expert; its modalities: seg, sketch, text"),
    ({"windows": "sketch"}, "window: expected name=value pairs like sketch=0,0.6, got 'sketch'"),
    ({"windows": {"text": (0, 1)}}, "window of text: no text input is given"),
    ({"windows": {"sketch": (0.6, 0.2)}},
     r"window of sketch: expected start,end with 0 <= start < end <= 1 \(the fraction of the steps it is heard in, "
     r"e.g. 0,0.6\), got \(0.6, 0.2\)"),
    ({"windows": "sketch=0.5,0.5"}, r"window of sketch: expected start,end .* got '0.5,0.5'"),
    ({"windows": "sketch=-0.1,0.5"}, r"window of sketch: expected start,end .* got '-0.1,0.5'"),
    ({"windows": "sketch=0,1.5"}, r"window of sketch: expected start,end .* got '0,1.5'"),
    ({"windows": "sketch=0,nan"}, r"window of sketch: expected start,end .* got '0,nan'"),
    ({"windows": "sketch=0.6"}, r"window of sketch: expected start,end .* got '0.6'"),
    ({"windows": {"sketch": (True, 1)}}, r"window of sketch: expected start,end .* got \(True, 1\)"),
])
def test_bad_maps_and_windows_name_the_input_and_what_is_accepted(settings, message):
    inputs = {k: v for k, v in _face_inputs().items() if k != "text"}
    with pytest.raises(ConditionError, match=f"^{message}"):
        make_request(32, MODS, inputs, read=lambda m, given: MODALITIES[m].read(given, FACES), known=(*MODS, "class"),
                     **settings)


def test_an_image_editors_map_is_what_is_painted_on_its_layers_over_white():
    guide = np.zeros((64, 64, 3), np.uint8)  # the faded drawing under the paint is never read
    layer = np.zeros((64, 64, 4), np.uint8)
    layer[:32, :, 3] = 255  # black over the top half
    layer[32:, :32] = (0, 0, 0, 128)  # black at half opacity: heard half
    got = reliability_map({"background": guide, "layers": [layer], "composite": guide}, 4, "m")
    assert got[:2].tolist() == [[0.0] * 4] * 2
    assert got[2:, :2] == pytest.approx(np.full((2, 2), 127 / 255), abs=1 / 255) and (got[2:, 2:] == 1).all()
    clear = {"background": guide, "layers": [np.zeros((64, 64, 4), np.uint8)], "composite": None}
    assert (reliability_map(clear, 4, "m") == 1).all()  # nothing painted: heard everywhere
