"""The studio's logic without a browser: canvas values -> conditions, photo -> sketch, notes for
modalities that are off, streamed and cached runs, newest-wins tickets, examples."""

import os
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from helpers import WORLDS, editor, request, rgba, run, run_inputs
from unite_demo import limits
from unite_demo.studio import pages, results, runs, strips, threads
from unite_demo.studio.studio import Studio
from unite_demo.worlds import registry as worlds
from unite_demo.worlds.canvas import is_photo, photo_to_sketch, seg_from_editor, sketch_from_editor
from unite_demo.worlds.conditions import ConditionError, describe_reading, sketch_from_image
from unite_demo.worlds.faces.data import FACES_PALETTE, PALETTE, PALETTE_RGB, make_face
from unite_demo.worlds.faces.examples import load_examples

SKIN, HAIR, GLASSES = PALETTE_RGB[1], PALETTE_RGB[2], PALETTE_RGB[6]


@pytest.fixture(scope="module")
def world():
    return WORLDS.get()


def test_palette_and_legend_come_from_the_one_palette():
    assert pages.palette_hex() == ["#%02x%02x%02x" % tuple(rgb) for _, _, rgb in PALETTE]
    legend = pages.legend_html()
    for (_, name, _), colour in zip(PALETTE, pages.palette_hex()):
        assert f">{name}<" in legend and colour in legend


def test_painted_map_maps_to_nearest_palette_class_never_blended(world):
    canvas = np.zeros((256, 256, 4), np.uint8)  # transparent = background
    canvas[:, 128:] = rgba(np.broadcast_to(SKIN, (256, 128, 3)))
    canvas[:, 124:132, :3] = (SKIN.astype(int) + HAIR.astype(int)) // 2  # a blended, anti-aliased seam
    canvas[:, 124:132, 3] = 255
    canvas[100:140, 160:200, :3] = np.clip(GLASSES + np.array([-20, -30, 25]), 0, 255)  # a slightly off-palette stroke
    ids = seg_from_editor(editor(canvas), world.image_size, palette=FACES_PALETTE)
    assert ids.shape == (32, 32)
    assert set(np.unique(ids)) <= set(range(len(PALETTE)))
    assert (ids[:, :15] == 0).all()  # unpainted (transparent) is background
    assert (ids[:, 17:] != 0).all()
    assert (ids[14:16, 21:24] == 6).all()  # the off-palette green is read as glasses


def test_blank_or_missing_map_switches_segmentation_off(world):
    assert seg_from_editor(None, 32, palette=FACES_PALETTE) is None
    assert seg_from_editor(editor(np.zeros((64, 64, 4), np.uint8)), 32, palette=FACES_PALETTE) is None  # cleared canvas
    assert seg_from_editor(editor(rgba(pages.blank_map())), 32, palette=FACES_PALETTE) is None  # nothing painted on blank
    req = request(world, seg=editor(rgba(pages.blank_map())), text="a face", steps=2)
    assert req.values.get("seg") is None
    assert any("segmentation map is blank" in n for n in req.notes)


def draw_strokes(paper: str, ink: str, size=256) -> Image.Image:
    img = Image.new("RGBA", (size, size), paper)
    d = ImageDraw.Draw(img)
    d.line([(40, 40), (216, 216)], fill=ink, width=10)
    d.ellipse([60, 140, 120, 200], outline=ink, width=8)
    return img


def test_strokes_reach_the_expert_white_on_black_whatever_the_canvas_shows(world):
    dark_on_white = np.asarray(draw_strokes("white", "black"))
    white_on_black = np.asarray(draw_strokes("black", "white"))
    on_transparent = np.asarray(draw_strokes((0, 0, 0, 0), "black"))  # a fresh canvas: strokes over nothing
    sketches = []
    for canvas in (dark_on_white, white_on_black, on_transparent):
        req = request(world, sketch=editor(canvas), steps=2)
        assert req.values.get("sketch") is not None and req.values.get("sketch").dtype == np.uint8
        assert set(np.unique(req.values.get("sketch"))) == {0, 255}
        sketches.append(req.values.get("sketch"))
    assert (sketches[0] == sketches[1]).all() and (sketches[0] == sketches[2]).all()
    assert sketches[0][16, 16] == 255 and sketches[0][2, 30] == 0  # stroke on the diagonal, paper elsewhere
    assert 0.02 < (sketches[0] > 0).mean() < 0.3


def test_empty_canvas_is_off_and_the_notes_say_so(world):
    req = request(world, sketch=editor(np.zeros((256, 256, 4), np.uint8)), text="  ", steps=2)
    assert req.present() == ()
    notes = " ".join(req.notes)
    assert "sketch canvas is empty" in notes
    assert "caption is empty" in notes
    assert "no modality given" in notes


def test_switches_turn_modalities_off_and_say_so(world):
    ex = pages.example_inputs(0)
    req = request(world, seg=editor(rgba(ex.seg)), sketch=editor(rgba(ex.sketch)), text=ex.text,
                               seg_on=False, sketch_on=True, text_on=False, steps=2)
    assert req.present() == ("sketch",)
    assert "segmentation is switched off" in req.notes and "text is switched off" in req.notes


def test_bad_input_raises_condition_error_naming_it(world):
    with pytest.raises(ConditionError, match="text: expected a string, got int"):
        request(world, text=5)
    with pytest.raises(ConditionError, match="reliability of seg: expected a number from 0 to 3, got nan"):
        request(world, text="a face", r_seg=float("nan"))
    with pytest.raises(ConditionError, match="steps: expected a whole number from 1 to 50, got 2.5"):
        request(world, text="a face", steps=2.5)
    with pytest.raises(ConditionError, match="unknown world"):
        next(run("no-such-world", text="a face"))


def test_numbers_out_of_range_and_a_long_caption_are_set_within_the_limits_and_said_once(world):
    caption = "a smiling face with red hair " + "x" * 4971
    req = request(world, text=caption, r_seg=999, r_sketch="3.5", r_text=-2, steps=500, guidance=11, seed=-3)
    assert req.reliability == {"seg": 3.0, "sketch": 3.0, "text": 0.0}
    assert (req.steps, req.guidance, req.seed) == (50, 10.0, 0)
    assert req.values["text"] == caption[:limits.MAX_TEXT_CHARS]
    said = [n for n in req.notes if " is used" in n or "characters" in n]
    assert said == ["reliability of seg: 999 is over the maximum 3; 3 is used",
                    "reliability of sketch: 3.5 is over the maximum 3; 3 is used",
                    "reliability of text: -2 is under the minimum 0; 0 is used",
                    "guidance: 11 is over the maximum 10; 10 is used",
                    "steps: 500 is over the maximum 50; 50 is used",
                    "seed: -3 is under the minimum 0; 0 is used",
                    "text: 5,000 characters; the first 1,000 are read"]


def test_a_runs_updates_carry_each_note_of_a_number_set_within_its_range_once(world):
    updates = list(run(cache=results.ResultCache(), text="a face", seg_on=False, sketch_on=False, r_text=999,
                       steps=0, view="sweep", sweep="text", sweep_values="0, 9, 9, 12"))
    assert updates[-1].done and len(updates) == 1 + 1  # one step (0 is under the minimum), then the final image
    for update in updates:
        said = [n for n in update.notes if " is used" in n]
        assert said == ["reliability of text: 999 is over the maximum 3; 3 is used",
                        "steps: 0 is under the minimum 1; 1 is used",
                        "sweep value: 9 is over the maximum 3; 3 is used",
                        "sweep value: 12 is over the maximum 3; 3 is used"]
    assert updates[-1].strip_caption == "text 0 · [text 3 (as set)]"


def test_photo_becomes_its_canny_edges_and_drawings_stay_drawings():
    photo = np.asarray(Image.fromarray(make_face(9_000_001, 32).image).resize((200, 200), Image.Resampling.BICUBIC))
    drawing = np.asarray(draw_strokes("white", "black").convert("RGB"))
    assert is_photo(photo) and not is_photo(drawing)
    assert not is_photo(255 - drawing)
    edges = photo_to_sketch(photo)
    assert edges.shape == (limits.PHOTO_EDGE_SIZE,) * 2 and set(np.unique(edges)) == {0, 255}
    assert 0.01 < (edges > 0).mean() < 0.3
    s = sketch_from_editor(editor(rgba(photo)))
    assert s.derived and "Canny" in s.note
    derived, note = Studio(WORLDS).derive_sketch(editor(rgba(photo)))
    assert derived.shape == (limits.CONDITION_SIZE, limits.CONDITION_SIZE, 3) and np.median(derived) == 0
    assert set(np.unique(derived)) == {0, 255} and "Canny" in note  # white strokes on black, as the expert gets it
    assert Studio(WORLDS).derive_sketch(editor(np.asarray(draw_strokes("white", "black")))) == (None, None)


def test_strokes_drawn_over_a_photo_join_its_edges():
    photo = np.asarray(Image.fromarray(make_face(9_000_002, 32).image).resize((256, 256), Image.Resampling.BICUBIC))
    layer = np.zeros((256, 256, 4), np.uint8)
    layer[240:248, 16:240] = (0, 0, 0, 255)  # a dark stroke along the bottom, drawn on the canvas's layer
    composite = rgba(photo)
    composite[240:248, 16:240, :3] = 0
    plain = sketch_from_editor({"background": rgba(photo), "layers": [], "composite": rgba(photo)})
    drawn = sketch_from_editor({"background": rgba(photo), "layers": [layer], "composite": composite})
    assert plain.derived and drawn.derived
    bottom = slice(120, 124)  # rows of the 128 px edge map under the stroke
    assert (drawn.image[bottom, 10:118] == 255).any(0).all() and not (plain.image[bottom, 10:118] == 255).any(0).all()
    assert (drawn.image[:100] == plain.image[:100]).all()


def test_examples_fill_every_input_and_reach_the_experts_unchanged(world):
    names = pages.example_names()
    assert len(names) == len(load_examples()) >= 1
    for k, e in enumerate(load_examples()[:2]):
        ex = pages.example_inputs(k)
        assert ex.text == e.text and ex.seed == e.seed and ex.reliability == e.reliability
        assert ex.seg.shape == ex.sketch.shape == (limits.CANVAS, limits.CANVAS, 3)
        assert np.median(ex.sketch) == 255  # the canvas shows dark strokes on white paper
        req = request(world, seg=editor(rgba(ex.seg)), sketch=editor(rgba(ex.sketch)), text=ex.text)
        assert (req.values.get("sketch") == sketch_from_image(e.sketch, 32)).all()
        assert (PALETTE_RGB[req.values.get("seg")] == np.asarray(Image.open(e.seg).convert("RGB"))[4::8, 4::8]).all()
    assert pages.example_inputs(0) is pages.example_inputs(0)  # read once, then kept


def collect(**kw):
    return list(run(**kw))


def test_run_streams_a_preview_per_step_then_the_final_and_caches_it(world):
    cache = results.ResultCache()
    ex = pages.example_inputs(1)
    kw = dict(seg=editor(rgba(ex.seg)), sketch=editor(rgba(ex.sketch)), text=ex.text, seed=3, steps=4, cache=cache)
    first = collect(**kw)
    assert [u.step for u in first] == [1, 2, 3, 4, 4] and [u.done for u in first] == [False] * 4 + [True]
    assert all(u.total == 4 and not u.cached for u in first)
    assert [u.status.splitlines()[0][:12] for u in first[:4]] == [f"step {k} / 4" for k in range(1, 5)]
    assert "done in" in first[-1].status
    assert all(u.image.size == (limits.PREVIEW_SIZE,) * 2 for u in first[:-1])  # light previews on the way
    assert first[-1].image.size == (limits.RESULT_SIZE,) * 2
    previews = {np.asarray(u.image).tobytes() for u in first[:-1]}
    assert len(previews) >= 3
    seg_view, sketch_view = np.asarray(first[0].views["seg"]), np.asarray(first[0].views["sketch"])
    assert {tuple(c) for c in seg_view.reshape(-1, 3)} <= {tuple(c) for c in PALETTE_RGB}
    assert set(np.unique(sketch_view)) <= {0, 255}
    assert first[0].caption.startswith(" ".join(ex.text.split()))
    assert "the text expert reads: " in first[0].caption
    again = collect(**kw)  # the final image at once, with the conditions as the experts received them
    assert len(again) == 1 and again[0].cached and again[0].done and "cached" in again[0].status
    assert np.asarray(again[0].image).tobytes() == np.asarray(first[-1].image).tobytes()
    assert (np.asarray(again[0].views["seg"]) == seg_view).all() and again[0].caption == first[0].caption
    other = collect(**{**kw, "seed": 4})
    assert np.asarray(other[-1].image).tobytes() != np.asarray(first[-1].image).tobytes()
    assert len(cache) == 2


def test_request_key_covers_every_input(world):
    base = dict(text="a face with glasses", seed=1, steps=3)
    key = results.request_key("w", request(world, **base))
    assert key == results.request_key("w", request(world, **{**base, "text": " a face  with glasses "}))
    for change in ({"seed": 2}, {"steps": 4}, {"guidance": 3.0}, {"sampler": "ddim"}, {"r_text": 2.5},
                   {"text": "a face"}, {"sketch": editor(np.asarray(draw_strokes("white", "black")))}):
        assert results.request_key("w", request(world, **{**base, **change})) != key, change
    assert results.request_key("v", request(world, **base)) != key


def test_result_cache_evicts_least_recently_used():
    cache = results.ResultCache(max_items=2)
    cache.put("a", [np.zeros(1)])
    cache.put("b", [np.zeros(1)])
    assert cache.get("a") is not None
    cache.put("c", [np.zeros(1)])
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None


def test_a_newer_ticket_stops_a_live_run_within_one_step_but_not_an_api_run(world):
    tickets, cache = threads.Tickets(), results.ResultCache()
    live = run(text="a face", seed=11, steps=8, live=True, session="s1", tickets=tickets, cache=cache)
    assert next(live).step == 1
    assert next(live).step == 2
    tickets.bump("s1")  # a newer change, Run or Stop in the same page
    last = next(live)
    assert last.superseded and "stopped at step 3 / 8" in last.status
    assert list(live) == []
    assert len(cache) == 0  # an unfinished run is never cached
    plain = run(text="a face", seed=11, steps=4, session="s2", tickets=tickets, cache=cache)
    next(plain)
    tickets.bump("s2")
    rest = list(plain)
    assert rest[-1].done and not any(u.superseded for u in rest)
    other = run(text="a face", seed=12, steps=3, live=True, session="s3", tickets=tickets, cache=cache)
    next(other)
    tickets.bump("s4")  # another page's ticket changes nothing here
    assert list(other)[-1].done


def test_tickets_are_per_session_and_bounded():
    t = threads.Tickets(max_sessions=3)
    assert t.current("a") == 0
    assert t.bump("a") == 1 and t.bump("a") == 2 and t.bump("b") == 1
    for s in "cde":
        t.bump(s)
    assert t.current("a") == 0  # forgotten, oldest first
    assert t.current("e") == 1


def test_save_frames_writes_an_animation(tmp_path):
    frames = [Image.new("RGB", (32, 32), (k * 40, 0, 0)) for k in range(4)]
    for name in ("a.gif", "a.webp"):
        path = runs.save_frames(frames, tmp_path / name)
        with Image.open(path) as img:
            assert img.is_animated and img.n_frames == 4


def test_seed_worlds_and_defaults_for_the_page():
    assert 0 <= pages.random_seed() <= limits.SEED.high
    assert worlds.available()[0] == "cartoon-faces"
    blank = pages.blank_map(64)
    assert blank.shape == (64, 64, 3) and (blank == PALETTE_RGB[0]).all()


def test_what_the_text_expert_reads_is_described_in_words():
    reading = {"hair_colour": ("red", 0.97), "glasses": ("yes", 0.55)}
    assert describe_reading(reading) == "hair colour: red, glasses: yes (unsure)"
    assert describe_reading({}).startswith("nothing it knows")


def test_read_ahead_yields_every_item_in_order_and_raises_the_producers_error():
    assert list(threads.read_ahead(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("boom at 2")

    got = []
    with pytest.raises(ValueError, match="boom at 2"):
        for item in threads.read_ahead(failing()):
            got.append(item)
    assert got == [1]


def slow_counter(produced: list, closed: threading.Event, n: int = 100, delay: float = 0.02):
    try:
        for k in range(n):
            time.sleep(delay)  # a denoising step
            produced.append(k)
            yield k
    finally:
        closed.set()


def test_read_ahead_stops_producing_when_the_consumer_closes_or_stop_says_so():
    produced, closed = [], threading.Event()
    items = threads.read_ahead(slow_counter(produced, closed), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()  # Stop pressed, or the client went away
    assert closed.wait(2.0)  # the source generator itself was closed
    assert len(produced) <= 3 + 2 + 1  # at most the queue's depth and the step in flight beyond what was taken

    produced, closed, stop = [], threading.Event(), threading.Event()
    got = []
    for item in threads.read_ahead(slow_counter(produced, closed), stop=stop.is_set, depth=2):
        got.append(item)
        if item == 4:
            stop.set()  # a newer live run
    assert closed.wait(2.0) and got[:5] == [0, 1, 2, 3, 4] and len(produced) <= 5 + 2 + 1


def test_serve_setup_takes_the_thread_count_from_the_environment(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("UNITE_TORCH_THREADS", "1")
        Studio().serve()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("UNITE_TORCH_THREADS", "not a number")  # ignored: half the cores
        Studio().serve()
        assert torch.get_num_threads() == max(1, (os.cpu_count() or 2) // 2)
    finally:
        torch.set_num_threads(before)


def test_a_runs_messages_show_the_conditions_at_the_first_step_and_the_end_only(world):
    updates = list(run(text="a face", seed=13, steps=4))
    shown = [u.outputs() for u in updates]
    assert all(tuple(o) == runs.outputs() for o in shown) and "seg_view" in runs.outputs()
    assert all(o["result"] is not runs.UNCHANGED and o["progress"] == u.status for o, u in zip(shown, updates))
    conditions = ("seg_view", "sketch_view", "conditions", "strip", "strip_caption")
    views = [all(o[k] is not runs.UNCHANGED for k in conditions) for o in shown]
    assert views[0] and views[-1] and not any(views[1:-1]) and len(views) > 3 and updates[-1].done
    assert shown[0]["conditions"] == updates[0].caption and shown[-1]["seg_view"] is updates[-1].views["seg"]
    tickets = threads.Tickets()
    live = run(text="a face", seed=14, steps=8, live=True, session="s9", tickets=tickets)
    next(live)
    tickets.bump("s9")
    last = next(live)
    assert last.superseded and last.outputs() == {k: last.status if k == "progress" else runs.UNCHANGED
                                                  for k in runs.outputs()}


def test_stop_says_whether_a_run_of_that_session_was_going(world):
    studio = Studio(WORLDS, results.ResultCache())
    assert studio.stop("idle") is False  # an idle page keeps its "done"
    going = studio.run(run_inputs(text="a face", steps=3, seed=21), session="busy")
    next(going)
    assert studio.stop("idle") is False and studio.stop("busy") is True
    going.close()
    assert studio.stop("busy") is False
    for t in threading.enumerate():  # the sampler's thread ends within a step (not at the interpreter's exit)
        if t.name == "read-ahead":
            t.join(10)


def test_a_map_file_given_to_the_painter_is_read_in_palette_colours_and_a_photo_is_refused(world, tmp_path):
    face = make_face(3, 64)
    painted = np.asarray(PALETTE_RGB, np.uint8)[face.seg]
    painted[:2, :2] = (10, 10, 10)  # a few pixels off the palette: read as the nearest colour
    Image.fromarray(painted).resize((300, 300), Image.Resampling.NEAREST).save(tmp_path / "map.png")
    shown = pages.painter_upload(tmp_path / "map.png", world)
    assert shown.shape == (limits.CANVAS, limits.CANVAS, 3)
    assert {tuple(c) for c in shown.reshape(-1, 3)} <= {tuple(int(v) for v in c) for c in PALETTE_RGB}
    again = seg_from_editor(shown, 64, palette=FACES_PALETTE)  # the canvas reads back as the map
    assert (again == face.seg).mean() > 0.95
    photo = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)
    with pytest.raises(ConditionError, match=r"segmentation map: \d+% of the pixels are not palette colours"):
        pages.painter_upload(photo, world)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ConditionError, match="segmentation map: cannot read the image"):
        pages.painter_upload(tmp_path / "notes.txt", world)


def test_an_image_given_to_the_sketch_canvas_is_fitted_whole_on_white_paper(tmp_path):
    wide = np.full((100, 400), 255, np.uint8)
    wide[40:60, :] = 0  # a black band across the whole width
    shown = pages.sketch_upload(wide)
    assert shown.shape == (limits.CANVAS, limits.CANVAS, 3)
    assert (shown[:96] == 255).all() and (shown[-96:] == 255).all()  # paper above and below the 4:1 image
    assert (shown[limits.CANVAS // 2, 8:-8] < 64).all()  # the band, end to end
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ConditionError, match="sketch: cannot read the image"):
        pages.sketch_upload(tmp_path / "notes.txt")


def test_the_conflict_view_streams_a_map_per_step_and_comes_back_with_a_cached_run(world):
    cache = results.ResultCache()
    updates = list(run(text="a face with red hair", seed=21, steps=5, cache=cache))
    heat = [u.conflict for u in updates]
    assert all(h is not None and h.size == (limits.PREVIEW_SIZE,) * 2 for h in heat[:-1])  # every step's
    assert len({h.tobytes() for h in heat[:-1]}) == len(heat) - 1  # each step its own
    assert heat[-1] is None and updates[-1].outputs()["conflict"] is runs.UNCHANGED  # the last step's stays
    assert all(u.outputs()["conflict"] is h for u, h in zip(updates[:-1], heat))
    again = list(run(text="a face with red hair", seed=21, steps=5, cache=cache))
    assert again[-1].cached and np.array_equal(np.asarray(again[-1].conflict), np.asarray(heat[-2]))


def test_conflict_image_colours_agreement_dark_and_opposite_pushes_bright():
    frame = np.full((32, 32, 3), 128, np.uint8)
    conflict = np.zeros((32, 32), np.float32)
    conflict[:, 16:] = 1.0
    img = np.asarray(runs.conflict_image(conflict, frame, 64)).astype(int)
    assert img.shape == (64, 64, 3)
    assert img[:, :28].sum(2).mean() < 200 < 600 < img[:, 36:].sum(2).mean()


def test_a_cards_map_and_window_go_with_its_input_only(world):
    left = np.ones((32, 32), np.float32)
    left[:, :16] = 0
    sketch = make_face(3, 32).sketch
    req = request(world, sketch=sketch, map_sketch=left, window_sketch="0,0.5", text="a face")
    assert np.array_equal(req.reliability_maps["sketch"], left) and req.windows == {"sketch": (0.0, 0.5)}
    off = request(world, sketch=sketch, sketch_on=False, map_sketch=left, window_sketch="0,0.5", text="a face")
    assert off.reliability_maps == {} and off.windows == {} and "sketch is switched off" in " ".join(off.notes)
    uniform = request(world, sketch=sketch, map_sketch=pages.blank_reliability_map(sketch), window_sketch="0,1")
    assert uniform.reliability_maps == {} and uniform.windows == {}  # nothing painted, every step: today's run


def test_the_explain_view_shows_each_expert_alone_with_its_own_map_and_window(world):
    from unite_demo.studio.inputs import build_strip

    left = np.ones((32, 32), np.float32)
    left[:, :16] = 0
    face = make_face(5, 32)
    ask = dict(seg=editor(rgba(np.asarray(PALETTE_RGB)[face.seg])), sketch=face.sketch, text="a face with red hair",
               seed=2, steps=3, view="experts")
    strip = build_strip(world, run_inputs(**ask, map_sketch=left, window_text="0,0.5"))
    by_label = dict(zip(strip.labels, strip.requests))
    assert np.array_equal(by_label["sketch alone"].reliability_maps["sketch"], left)
    assert by_label["text alone"].windows == {"text": (0.0, 0.5)} and by_label["segmentation alone"].windows == {}
    assert by_label["product"].reliability_maps.keys() == {"sketch"}
    plain = np.asarray(list(run(**ask))[-1].strip).astype(int)
    painted = np.asarray(list(run(**ask, map_sketch=left, window_text="0,0.5"))[-1].strip).astype(int)
    gap = strips.GAP
    tile = (plain.shape[1] - 3 * gap) // 4  # seg, sketch, text alone, the product
    changed = [np.abs(painted - plain)[:, k * (tile + gap):k * (tile + gap) + tile].mean() for k in range(4)]
    assert changed[0] < 0.01 and min(changed[1:]) > 0.5, changed  # the segmentation alone is as it was
