"""Where and when each expert is heard, in headless Chromium: a reliability region painted for one modality
changes the result in and near that region only, the conflict view streams beside the result, the step
window and "uniform again" reach the server."""

import numpy as np
import pytest

from scripts.media import VIEWPORT, StudioPage, shown_image

pytestmark = pytest.mark.slow
REGION = (0.5, 1.0)  # the painted square: the lower right quarter of the image, as fractions of its side


@pytest.fixture
def sp(browser, url):
    page = StudioPage(browser.new_page(viewport=VIEWPORT), url).open()
    try:
        yield page
    finally:
        page.page.close()


def run_and_get(sp: StudioPage) -> tuple[np.ndarray, dict]:
    sp.run()
    sp.wait_done()
    return shown_image(sp.page, "result").astype(np.int16), sp.record()


def test_a_painted_region_changes_the_result_only_in_and_near_it_and_the_conflict_view_streams(sp):
    uniform, rec = run_and_get(sp)
    conflicts = {f["src"] for f in rec["conflicts"]}
    assert len(conflicts) >= 3, f"the conflict view showed {len(conflicts)} distinct maps"
    conflict = shown_image(sp.page, "conflict")
    assert conflict.std() > 5, "the conflict view is flat"

    sp.open_where("sketch")
    sp.paint_out("sketch", *REGION)
    painted, _ = run_and_get(sp)
    diff = np.abs(painted - uniform).mean(2)  # (256, 256)
    side = diff.shape[0]
    lo, hi = (int(f * side) for f in REGION)
    near = np.zeros_like(diff, bool)
    margin = side // 8
    near[max(0, lo - margin):hi, max(0, lo - margin):hi] = True
    inside, outside = diff[lo:hi, lo:hi].mean(), diff[~near].mean()
    assert inside > 2.0, f"the painted region hardly changed ({inside:.2f} levels)"
    assert inside > 2 * outside, f"changed {inside:.2f} levels inside, {outside:.2f} away from it"

    # "uniform again": the uniform run comes back (from the cache: the same request)
    sp.page.locator("#sketch-uniform").click()
    sp.page.wait_for_timeout(1500)
    again, rec = run_and_get(sp)
    assert np.array_equal(again, uniform) and "cached" in rec["lines"][-1]["text"]


def test_a_step_window_reaches_the_server_and_changes_the_run(sp):
    uniform, _ = run_and_get(sp)
    sp.open_where("sketch")
    handle = sp.page.locator("#sketch-window input.range-hi")
    handle.focus()
    for _ in range(8):  # heard in the first 60% of the steps
        handle.press("ArrowLeft")
    sp.page.wait_for_timeout(500)
    assert "0% to 60% of the steps" in sp.page.locator("#sketch-window").inner_text()
    windowed, rec = run_and_get(sp)
    assert np.abs(windowed - uniform).mean() > 0.5 and "cached" not in rec["lines"][-1]["text"]


WATCH_PROGRESS_JS = """() => {  // every progress line from now on
  window.__lines = [];
  new MutationObserver(() => window.__lines.push(document.querySelector('#progress').innerText))
    .observe(document.querySelector('#progress'), {subtree: true, childList: true, characterData: true});
}"""
RAN_AGAIN_JS = "() => window.__lines.some((t) => /done in/.test(t))"  # a new run, computed to its end


def test_in_live_mode_painting_a_map_or_moving_the_window_runs_again(sp):
    sp.page.locator("#live input").check()  # turning live mode on starts a run
    sp.page.wait_for_function("() => /done/.test(document.querySelector('#progress').innerText)", timeout=60_000)
    sp.open_where("seg")
    before = shown_image(sp.page, "result").astype(np.int16)
    sp.page.evaluate(WATCH_PROGRESS_JS)
    sp.paint_out("seg", 0.0, 0.5)
    sp.page.wait_for_function(RAN_AGAIN_JS, timeout=60_000)
    sp.page.wait_for_timeout(500)
    assert np.abs(shown_image(sp.page, "result").astype(np.int16) - before).mean() > 0.5
    sp.page.evaluate(WATCH_PROGRESS_JS)
    handle = sp.page.locator("#seg-window input.range-lo")
    handle.focus()
    handle.press("ArrowRight")  # heard from 5% of the steps on
    sp.page.wait_for_function(RAN_AGAIN_JS, timeout=60_000)
    sp.page.locator("#live input").uncheck()
