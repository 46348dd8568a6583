"""End to end through the API: `python app.py` serving on a free localhost port, driven by gradio_client
exactly as the README shows (streamed previews, determinism, empty and bad requests, uploads)."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageDraw

from helpers import editor_value, run
from unite_demo import generate, limits
from unite_demo.limits import DEFAULTS
from unite_demo.studio import pages, results, runs
from unite_demo.worlds.faces.data import PALETTE_RGB, make_face
from unite_demo.worlds.faces.examples import load_examples

from scripts.media import serve

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    with serve() as url:
        yield Client(url, verbose=False)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def stream(client, **inputs) -> list[tuple]:
    job = client.submit(**inputs, api_name="/generate")
    updates = list(job)
    assert job.status().success, job.exception()
    return updates


def test_only_generate_is_public_and_every_input_has_the_pages_default(client):
    info = client.view_api(return_format="dict", print_info=False)
    assert list(info["named_endpoints"]) == ["/generate"]
    params = info["named_endpoints"]["/generate"]["parameters"]
    assert [p["parameter_name"] for p in params] == [
        "seg", "sketch", "text", "seg_on", "sketch_on", "text_on", "r_seg", "r_sketch", "r_text", "seed", "steps",
        "guidance", "sampler", "world", "live", "class_name", "r_class", "superres",
        "view", "sweep", "sweep_values", "map_seg", "window_seg", "map_sketch", "window_sketch", "map_text",
        "window_text", "map_class", "window_class"]  # new inputs go last: positional
    # callers work
    assert all(p["parameter_has_default"] for p in params)
    defaults = {p["parameter_name"]: p["parameter_default"] for p in params}
    example = load_examples()[0]
    assert defaults["text"] == example.text and defaults["seed"] == example.seed
    assert defaults["world"] == "cartoon-faces" and defaults["live"] is False
    assert defaults["class_name"] == "" and defaults["r_class"] == 1.0  # no class: the class expert is off
    assert defaults["superres"] is True  # the final image sharpened
    assert defaults["view"] == "product" and defaults["sweep"] == "text"  # one image, as before the explain view


def test_no_arguments_streams_previews_before_the_final_image(client):
    updates = stream(client)
    lines = [u[1].splitlines()[0] for u in updates]
    assert lines[0] == f"step 1 / {DEFAULTS['steps']}" and "done" in lines[-1]
    steps = [int(line.split()[1]) for line in lines]
    assert steps == sorted(steps)
    previews = [u[0] for u in updates[:-1]]
    distinct = {pixels(p).tobytes() for p in previews}
    assert len(distinct) >= 3
    final = updates[-1]
    assert pixels(final[0]).shape == (limits.RESULT_SIZE, limits.RESULT_SIZE, 3)
    seg_view, sketch_view = pixels(final[2]), pixels(final[3])  # the conditions as the experts got them
    assert {tuple(c) for c in seg_view.reshape(-1, 3)} <= {tuple(c) for c in PALETTE_RGB}
    assert set(np.unique(sketch_view)) <= {0, 255}
    assert final[4].startswith(load_examples()[0].text[:40])


def test_same_seed_same_image_other_seed_another(client):
    text = "a surprised person with curly red hair"
    first = stream(client, text=text, seed=123, steps=6)
    assert "done in" in first[-1][1]  # computed, not cached
    again = stream(client, text=text, seed=123, steps=6)
    other = stream(client, text=text, seed=124, steps=6)
    a, b, c = (pixels(u[-1][0]) for u in (first, again, other))
    assert (a == b).all()
    assert np.abs(a - c).mean() > 1.0
    assert "cached" in again[-1][1] and len(again) == 1 < len(first)  # a repeat: its final image at once
    # The server's sampler is the in-process one: same seed, same image, up to float summation order (the
    # server's networks run on one thread, this process's on two), which the final-image stage's mean shift
    # can turn into a few flipped pixels.
    ex = pages.example_inputs(0)  # the page's default canvases
    local = list(run(seg={"composite": ex.seg}, sketch={"composite": ex.sketch}, text=text, seed=123, steps=6,
                     cache=results.ResultCache()))
    diff = np.abs(a - np.asarray(local[-1].image).astype(np.int16))
    assert diff.mean() < 0.5 and (diff > 2).mean() < 0.01


def test_empty_request_is_an_unconditional_face_and_says_so(client):
    updates = stream(client, seg=None, sketch=None, text="", steps=4)
    image, status, seg_view, sketch_view, caption, *_, notes, conflict = updates[-1]
    assert pixels(image).shape[2] == 3 and "done" in status and "note" not in status  # the notes have their own output
    assert "no modality given" in notes and "caption is empty" in notes
    assert "segmentation map is blank" in notes and "sketch canvas is empty" in notes
    assert seg_view is None and sketch_view is None
    assert "unconditional" in caption


def test_switched_off_modality_is_left_out_and_named(client):
    updates = stream(client, seg_on=False, text_on=False, steps=3)
    image, status, seg_view, sketch_view, caption, *_, notes, conflict = updates[-1]
    assert "segmentation is switched off" in notes and "text is switched off" in notes
    assert seg_view is None and sketch_view is not None
    assert "sketch x1" in caption and "segmentation" not in caption


@pytest.mark.parametrize("inputs, message", [
    ({"text": 5}, "text: expected a string, got int"),
    ({"r_text": "lots"}, "reliability of text: expected a number from 0 to 3, got 'lots'"),
    ({"seed": 1.5}, "seed: expected a whole number from 0 to 4294967295, got 1.5"),
    ({"sampler": "euler"}, "euler"),
    ({"world": "mars"}, "mars"),
])
def test_bad_input_gives_a_clear_message_and_the_server_lives_on(client, inputs, message):
    with pytest.raises(AppError, match=message):
        client.predict(**inputs, steps=2, api_name="/generate")
    assert "done" in client.predict(steps=2, seed=7, api_name="/generate")[1]


def test_broken_upload_is_refused_with_the_conditions_message(client, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(AppError, match="cannot read the image|damaged") as e:
        client.predict(sketch=editor_value(broken), steps=2, api_name="/generate")
    assert "/" not in str(e.value), e.value  # no path of the server's upload cache in the visitor's message


def test_uploaded_photo_becomes_a_sketch_and_a_painted_map_its_classes(client, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(make_face(9_000_010, 32).image).resize((240, 240), Image.Resampling.BICUBIC).save(photo)
    painted = Image.new("RGB", (200, 200), (0, 0, 0))
    d = ImageDraw.Draw(painted)
    d.ellipse([40, 30, 160, 180], fill=(250, 200, 150))  # near skin, not exactly the palette colour
    d.rectangle([70, 140, 130, 150], fill=(240, 10, 10))  # near mouth
    painted_path = tmp_path / "painted.png"
    painted.save(painted_path)
    updates = stream(client, seg=editor_value(painted_path), sketch=editor_value(photo), text="", steps=3)
    _, status, seg_view, sketch_view, *_, notes, conflict = updates[-1]
    assert "OpenCV Canny" in notes
    edges = pixels(sketch_view)
    assert set(np.unique(edges)) <= {0, 255} and 0.02 < (edges > 0).mean() < 0.5
    colours = {tuple(c) for c in pixels(seg_view).reshape(-1, 3)}
    assert colours == {tuple(PALETTE_RGB[k]) for k in (0, 1, 5)}


def test_spaces_gpu_wraps_the_generation_only_when_available(monkeypatch):
    import app

    wrapped = []

    def gpu(fn):
        def inner(*args, **kwargs):
            yield from fn(*args, **kwargs)
        inner.__wrapped__ = fn
        wrapped.append(fn.__name__)
        return inner

    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    plain = app.start()
    assert wrapped == []
    q = plain._queue
    assert q.max_size and q.max_size > 1 and q.default_concurrency_limit >= 1
    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    app.start()
    assert wrapped == ["generate"]


@pytest.mark.parametrize("widget, value, flag, note", [
    ("guidance", 15, ["--guidance", "15"], "guidance: 15 is over the maximum 10; 10 is used"),
    ("steps", 51, ["--steps", "51"], "steps: 51 is over the maximum 50; 50 is used"),
    ("r_text", 5, ["--reliability", "text=5"], "reliability of text: 5 is over the maximum 3; 3 is used"),
    ("seed", -1, ["--seed", "-1"], "seed: -1 is under the minimum 0; 0 is used"),
])
def test_an_out_of_range_value_gets_the_same_note_from_the_page_the_api_and_the_cli(
        client, monkeypatch, capsys, tmp_path, widget, value, flag, note):
    import app as page

    widgets = dict(seg=None, sketch=None, text="a face", seg_on=True, sketch_on=True, text_on=True, r_seg=None,
                   r_sketch=None, r_text=None, seed=0, steps=2, guidance=2.0, sampler="dpmpp", world="cartoon-faces",
                   live=False)
    at = runs.outputs().index("notes")
    on_page = [str(out[at]) for out in page.generate(**{**widgets, widget: value})]
    through_api = client.predict(**{"steps": 2, "text": "a face", widget: value}, api_name="/generate")[at]
    assert generate.main([*flag, "--text", "a face", *([] if widget == "steps" else ["--steps", "2"]),
                          "--out", str(tmp_path / "x.png")]) == 0
    on_cli = [line.removeprefix("note: ") for line in capsys.readouterr().err.splitlines()]
    for said in (on_page[-1], through_api):  # the final message's notes, a line each
        assert said.splitlines().count(f"note: {note}") == 1, said
    assert on_cli.count(note) == 1


def test_a_reliability_map_as_an_image_file_and_a_window_as_text_reach_the_run(client, tmp_path):
    mask = np.full((100, 100), 255, np.uint8)
    mask[50:, 50:] = 0  # the sketch not heard in the lower right quarter
    Image.fromarray(mask).save(tmp_path / "mask.png")
    ask = {"steps": 4, "seed": 3}
    uniform = pixels(client.predict(**ask, api_name="/generate")[0])
    painted = pixels(client.predict(**ask, map_sketch=handle_file(str(tmp_path / "mask.png")),
                                    api_name="/generate")[0])
    diff = np.abs(painted - uniform).mean(2)
    half = diff.shape[0] // 2
    assert diff[half:, half:].mean() > 2 * diff[:half // 2, :half // 2].mean() and diff[half:, half:].mean() > 1
    windowed = pixels(client.predict(**ask, window_sketch="0,0.5", api_name="/generate")[0])
    assert np.abs(windowed - uniform).mean() > 0.5
    outputs = client.predict(**ask, api_name="/generate")
    assert Image.open(outputs[runs.outputs().index("conflict")]).size == (limits.PREVIEW_SIZE,) * 2


@pytest.mark.parametrize("ask, message", [
    ({"window_sketch": "0.6,0.2"}, r"window of sketch: expected start,end with 0 <= start < end <= 1"),
    ({"window_seg": "half"}, r"window of seg: expected start,end"),
    ({"map_seg": {"background": None, "layers": [], "composite": None, "id": None}},
     "reliability map of seg: the image editor holds no image"),
])
def test_a_bad_map_or_window_is_refused_naming_it(client, ask, message):
    with pytest.raises(AppError, match=message):
        client.predict(steps=2, **ask, api_name="/generate")
