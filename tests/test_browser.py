"""The studio in headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, as a person uses
it: draw, paint, type, move a slider, Run, watch the previews, Stop, live mode, examples, uploads."""

import re

import numpy as np
import pytest
from PIL import Image

from unite_demo.limits import RESULT_SIZE
from unite_demo.studio.strips import GAP
from unite_demo.worlds import canvas
from unite_demo.worlds.conditions import seg_from_image, sketch_from_image
from unite_demo.worlds.faces.data import FACES_PALETTE, PALETTE_RGB, make_face
from unite_demo.worlds.faces.examples import load_examples

from scripts.media import FREEHAND, VIEWPORT, StudioPage, freehand_miou, shown_image

pytestmark = pytest.mark.slow
GLASSES = tuple(int(c) for c in PALETTE_RGB[6])


@pytest.fixture
def studio_page(browser, url):
    page = browser.new_page(viewport=VIEWPORT)
    try:
        yield StudioPage(page, url).open()
    finally:
        page.close()


def step_of(text: str) -> int:
    m = re.search(r"step (\d+) / (\d+)", text)
    return int(m.group(1)) if m else 0


def test_draw_paint_type_slide_run_watch_previews_then_stop(studio_page, tmp_path):
    sp = studio_page
    sp.stroke("#sketch-canvas", [(0.1, 0.9), (0.5, 0.7), (0.9, 0.9)])  # a new stroke across the chin
    sp.pick_colour(GLASSES)
    for y in (0.42, 0.47, 0.52):
        sp.stroke("#seg-painter", [(0.25, y), (0.75, y)])  # glasses across the eyes
    caption = "a smiling person with glasses and short red hair"
    sp.page.locator("#caption textarea").fill(caption)
    assert sp.nudge_slider("text-reliability", -10) == "1.5"  # from the default 2, ten steps of 0.05 down

    uploads = []
    sp.page.on("request", lambda r: uploads.append(r.url) if r.url.split("?")[0].endswith("/upload") else None)
    sp.run()
    sp.wait_done()
    print("uploads during the run:", len(uploads))
    assert len(uploads) <= 6  # each canvas sends its layers once per Run, never again per preview (16 here)
    rec = sp.record()
    frames, lines = rec["frames"], rec["lines"]
    assert len({f["src"] for f in frames[:-1]}) >= 3, frames  # at least 3 different previews before the final one
    assert sum(f["shown"] is not None for f in frames[:-1]) >= 1  # and the browser had them on screen
    assert [step_of(line["text"]) for line in lines[1:]] == sorted(step_of(line["text"]) for line in lines[1:])
    assert "done" in sp.progress()

    received = sp.page.locator("#cond-text textarea").input_value()
    assert received.startswith(caption) and "text x1.5" in received
    seg = shown_image(sp.page, "cond-seg")
    assert (seg == GLASSES).all(-1).mean() > 0.03  # the painted region reached the expert as glasses
    sketch = shown_image(sp.page, "cond-sketch")
    assert set(np.unique(sketch)) <= {0, 255}
    default = sketch_from_image(load_examples()[0].sketch, 32)
    got = sketch[2::4, 2::4, 0]  # 128 px view of the 32x32 sketch
    assert (got[22:29] > 0).sum() > (default[22:29] > 0).sum()  # the new stroke is in the sketch the expert saw
    sp.page.screenshot(path=str(tmp_path / "studio.png"), full_page=True)
    assert (tmp_path / "studio.png").stat().st_size > 10_000

    # A second, long run: Stop cancels it within a step or two and leaves the page usable.
    sp.set_number("steps", 50)
    sp.set_number("seed", 4242)
    sp.run()
    sp.page.wait_for_function("() => /step [2-9] \\/ 50/.test(document.querySelector('#progress').innerText)",
                              timeout=60_000)
    sp.page.locator("#stop").click(timeout=120_000)
    stopped_at = sp.page.evaluate("() => performance.now() - window.__rec.t0")
    at_stop = max(step_of(line["text"]) for line in sp.record()["lines"])
    sp.page.wait_for_timeout(3000)
    later = [line["text"] for line in sp.record()["lines"] if line["t"] > stopped_at]
    assert not any("done" in text for text in later), later
    assert max(map(step_of, later), default=0) <= at_stop + 2, (at_stop, later)  # cancelled within a step or two
    assert "stopped" in sp.progress() or step_of(sp.progress()) <= at_stop + 2
    sp.set_number("steps", 5)
    timing = sp.run_and_time()
    assert "step 5 / 5" in timing["status"] and "done" in timing["status"]
    sp.page.screenshot(path=str(tmp_path / "after_stop.png"))
    assert sp.elsewhere == []  # the page asked nothing of the outside world


def test_live_mode_runs_on_change_and_a_newer_change_supersedes(studio_page):
    sp = studio_page
    sp.set_number("steps", 40)
    sp.page.locator("#live input").check()  # turning live mode on starts a run
    sp.page.wait_for_function("() => /step \\d+ \\/ 40/.test(document.querySelector('#progress').innerText)",
                              timeout=60_000)
    sp.page.locator("#caption textarea").fill("a face with a beard and blue hair")
    sp.page.wait_for_function("() => /stopped at step/.test(document.querySelector('#progress').innerText)",
                              timeout=60_000)
    sp.page.wait_for_function("() => /done/.test(document.querySelector('#progress').innerText)", timeout=120_000)
    assert sp.page.locator("#cond-text textarea").input_value().startswith("a face with a beard and blue hair")
    sp.page.locator("#live input").uncheck()


def test_examples_fill_every_input_and_a_photo_upload_shows_its_sketch(studio_page, tmp_path):
    sp = studio_page
    k = 2
    example = load_examples()[k]
    sp.page.locator("#examples tbody tr").nth(k).click()
    sp.page.wait_for_function(f"() => document.querySelector('#caption textarea').value === {example.text!r}",
                              timeout=30_000)
    assert sp.page.locator("#seed input").input_value() == str(example.seed)
    for m in ("seg", "sketch", "text"):
        assert float(sp.page.locator(f"#{m}-reliability input[type=number]").input_value()) == example.reliability[m]
    sp.set_number("steps", 3)
    sp.run_and_time()
    expected = PALETTE_RGB[canvas.seg_from_editor(np.asarray(Image.open(example.seg).convert("RGB")), 32, palette=FACES_PALETTE)]
    assert (shown_image(sp.page, "cond-seg")[2::4, 2::4] == expected).all()  # the example's map reached the expert

    photo = tmp_path / "photo.png"
    Image.fromarray(make_face(9_000_020, 32).image).resize((256, 256), Image.Resampling.BICUBIC).save(photo)
    sp.page.locator("#sketch-canvas input[type=file]").set_input_files(str(photo))
    sp.page.wait_for_selector("#sketch-derived img", timeout=60_000)  # the page shows the sketch it derived
    assert sp.page.get_by_text("OpenCV Canny").count() >= 1
    derived = shown_image(sp.page, "sketch-derived")
    assert set(np.unique(derived)) <= {0, 255} and 0.02 < (derived[..., 0] > 0).mean() < 0.5
    sp.run_and_time()
    assert (shown_image(sp.page, "cond-sketch") == derived).all()  # and that is the sketch the expert received
    assert "OpenCV Canny" in sp.page.locator("#notes").inner_text()


# mIoU between the segmenter's map of the final image and the map the seg expert received, for
# FREEHAND[0] painted from a blank map: 0.43 measured with the shipped experts (the drawn set's
# product gets about 0.6, its unconditional samples 0.11, a face at the wrong place or size well
# under 0.3). 0.3 leaves room for the page's own small variations and fails a face that ignores the map.
FREEHAND_MIOU = 0.3


def test_a_face_painted_off_centre_from_a_blank_map_comes_out_where_it_was_painted(studio_page, tmp_path):
    sp = studio_page
    face = FREEHAND[0]  # right of centre, upper half
    sp.paint_face(face)
    sp.page.locator("#caption textarea").fill(face["caption"])
    timing = sp.run_and_time()
    assert "done" in timing["status"]
    received = seg_from_image(shown_image(sp.page, "cond-seg"), 32, palette=FACES_PALETTE)  # the 32x32 map the seg expert was given
    assert (received == 0).mean() > 0.5  # from a blank map: mostly background
    ys, xs = np.nonzero(received == 1)
    assert xs.mean() > 17 and ys.mean() < 16  # the skin ellipse sits where it was painted
    assert {1, 2, 3, 5} <= set(np.unique(received))  # skin, hair cap, eyes, mouth
    strokes_x = np.nonzero(shown_image(sp.page, "cond-sketch")[2::4, 2::4, 0] > 0)[1]
    assert strokes_x.mean() > 17  # the outline drawn right of centre
    score = freehand_miou(shown_image(sp.page, "cond-seg"), shown_image(sp.page, "result"))
    print(f"freehand face: mIoU {score:.3f} between the result's map and the painted map")
    sp.page.screenshot(path=str(tmp_path / "freehand.png"), full_page=True)
    assert score >= FREEHAND_MIOU, score


def strip_width(images: int) -> int:
    return images * RESULT_SIZE + (images - 1) * GAP


def test_the_explain_view_streams_strips_then_each_expert_alone_beside_the_product(browser, url, tmp_path):
    page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
    sp = StudioPage(page, url).open()
    try:
        assert not page.locator("#strip").is_visible()
        sp.show("each expert alone")
        assert page.locator("#strip").is_visible() and not page.locator("#sweep").is_visible()
        sp.set_number("seed", 77)
        timing = sp.run_and_time(strip_width=strip_width(4))
        strips = sp.record()["strips"]
        previews = {f["src"] for f in strips if f["width"] != strip_width(4)}
        assert len(previews) >= 3, strips  # at least 3 different strips streamed before the final one
        caption = page.locator("#strip-caption").inner_text()
        assert caption == "segmentation alone · sketch alone · text alone · [product]"
        final = shown_image(page, "strip")
        assert final.shape[1] == strip_width(4)
        tiles = [final[:RESULT_SIZE, k * (RESULT_SIZE + GAP):][:, :RESULT_SIZE] for k in range(4)]
        assert min(np.abs(a.astype(int) - b).mean() for i, a in enumerate(tiles) for b in tiles[i + 1:]) > 3
        result = shown_image(page, "result")
        assert np.abs(tiles[3][8:-8, 8:-8].astype(int) - result[8:-8, 8:-8]).max() <= 2  # the product is the result
        with page.expect_download() as png:
            page.locator("#save-png").click()
        with page.expect_download() as gif:
            page.locator("#save-gif").click()
        assert png.value.suggested_filename == "strip.png" and gif.value.suggested_filename == "strip-steps.gif"
        with Image.open(gif.value.path()) as anim:
            assert anim.n_frames == 9
        print(f"explain run: first strip {timing['first_strip_s']:.2f} s, final strip {timing['final_strip_s']:.2f} s")

        sp.show("a reliability strip")
        assert page.locator("#sweep").is_visible()
        sp.run_and_time(strip_width=strip_width(5))
        assert page.locator("#strip-caption").inner_text() == "text 0 · text 0.5 · text 1 · [text 2 (as set)] · text 3"

        # A long explain run: Stop ends it within a step or two and the page goes on.
        sp.show("each expert alone")
        sp.set_number("steps", 50)
        sp.run()
        page.wait_for_function("() => /step [2-9] \\/ 50/.test(document.querySelector('#progress').innerText)",
                               timeout=60_000)
        page.locator("#stop").click()
        stopped_at = page.evaluate("() => performance.now() - window.__rec.t0")
        at_stop = max(step_of(line["text"]) for line in sp.record()["lines"])
        page.wait_for_timeout(3000)
        later = [line["text"] for line in sp.record()["lines"] if line["t"] > stopped_at]
        assert not any("done" in text for text in later) and max(map(step_of, later), default=0) <= at_stop + 2
        sp.show("the product")
        assert not page.locator("#strip").is_visible()
        sp.set_number("steps", 4)
        assert "done" in sp.run_and_time()["status"]
        page.screenshot(path=str(tmp_path / "explain.png"), full_page=True)
    finally:
        page.close()


def test_notes_sit_on_lines_of_their_own_and_stop_on_an_idle_page_keeps_done(studio_page):
    sp = studio_page
    sp.page.locator("#sketch-on input").uncheck()
    sp.set_number("steps", 3)
    sp.run_and_time()
    lines = sp.progress().splitlines()
    assert len(lines) == 1 and "done" in lines[0] and "note" not in lines[0], lines  # the notes have their own box
    notes = sp.page.locator("#notes").inner_text().splitlines()
    assert any(line.startswith("note: sketch is switched off") for line in notes), notes
    sp.page.locator("#stop").click()  # nothing is running: the page keeps saying what it did
    sp.page.wait_for_timeout(1000)
    assert "done" in sp.progress() and "stopped" not in sp.progress()


def test_the_page_holds_still_bands_are_their_size_the_colour_pop_up_closes_and_the_cards_align(studio_page):
    sp = studio_page
    boxes = [sp.page.locator(sel).bounding_box() for sel in ("#sketch-canvas", "#seg-painter")]
    assert abs(boxes[0]["y"] - boxes[1]["y"]) <= 2, boxes  # the cards' headers do not wrap
    sp.page.get_by_role("button", name="Start from a blank map").click()
    sp.page.wait_for_timeout(500)
    sp.pick_colour(GLASSES)
    sp.page.wait_for_timeout(300)
    assert not sp.page.locator("#seg-painter button.color").first.is_visible()  # the pop-up closed, over nothing
    sp.stroke("#seg-painter", [(0.2, 0.5), (0.8, 0.5)])
    sp.set_number("steps", 30)
    sp.run()
    sp.page.wait_for_function("() => /step [3-9] \\/ 30/.test(document.querySelector('#progress').innerText)",
                              timeout=60_000)
    preview_box = sp.page.locator("#result img").bounding_box()
    sp.wait_done()
    final_box = sp.page.locator("#result img").bounding_box()
    assert preview_box == final_box  # previews show as large as the final image: nothing jumps at the end
    received = seg_from_image(shown_image(sp.page, "cond-seg"), 32, palette=FACES_PALETTE)
    rows = np.nonzero((received[:, 10:22] == 6).any(1))[0]  # the map rows the glasses band covers
    print("painted band: map rows", rows.tolist())
    assert 1 <= len(rows) <= 3, rows  # 16 canvas px = 2 of the map's 8-px rows (it was 4: a 32 px band)
