"""The studio seen from outside: start the page (`python app.py`) on a free port, drive it in headless
Chromium with Playwright, and make the README's media from it.

    python scripts/media.py   # overwrites docs/denoising.gif, freehand.png, screenshot.png and phone.png
    python scripts/media.py --only phone   # the phone screenshot alone

It rewrites these four files, which are tracked in git (the README and docs/evaluation.md show them):
docs/denoising.gif (one run's steps), docs/freehand.png (six faces painted in the page, with their
results), docs/screenshot.png (the page after a run) and docs/phone.png (the page on a 390x844 phone
screen as it opens and just after Run). --animation, --freehand, --screenshot and --phone write them elsewhere instead;
--only makes some of them. It prints each file as it writes it, the mIoU of each painted face's
result against its painted map (and their mean), and the screenshot run's timings.

The helpers here (serve, chromium, StudioPage) are shared by scripts/measure_ui.py and the tests.
Chromium is Debian's /usr/bin/chromium (scripts/test.sh installs it); never `playwright install`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 1250}
CANVAS_SIDE = 256  # the editors' canvas_size in app.py (unite_demo.limits.CANVAS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedURL(str):
    """What serve() yields: the page's URL (a plain str to every caller) that also knows the server
    process (`pid`, for its memory in /proc/PID/status) and reads what it has logged so far (`log()`)."""

    pid: int
    _log_fd: int

    def log(self) -> str:
        """The server's stdout and stderr so far (read without moving the offset it writes at)."""
        size = os.fstat(self._log_fd).st_size
        return os.pread(self._log_fd, size, 0).decode(errors="replace")


@contextlib.contextmanager
def serve(timeout: float = 300.0, env: dict | None = None) -> Iterator[ServedURL]:
    """`python app.py` on a free localhost port; yields its URL once the page answers, stops it after.
    env: extra environment variables for the server (GRADIO_SERVER_NAME: the address it is reached at);
    a None value removes that variable."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", **(env or {})}
    env = {key: value for key, value in env.items() if value is not None}
    host = env.get("GRADIO_SERVER_NAME") or "127.0.0.1"  # app.py's default
    url = ServedURL(f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/")
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        url.pid, url._log_fd = proc.pid, log.fileno()
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"app.py exited with {proc.returncode}:\n{url.log()[-3000:]}")
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"app.py did not answer within {timeout:.0f} s:\n{url.log()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def chromium():
    """A headless Debian Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# Records every image the result component (and the strip of the explain view) is given (src set in the
# page) and when the browser has it on screen (its load event, with its natural width), and every progress
# line; times in ms since the last press of Run.
RECORDER_JS = """() => {
  if (window.__rec) return;
  const rec = window.__rec = {frames: [], strips: [], conflicts: [], lines: [], t0: performance.now(), src0: {}};
  const text = () => (document.querySelector('#progress [data-testid=markdown]') || {}).innerText || '';
  const now = () => performance.now() - rec.t0;
  const watch = (id, key) => {  // the element may come later (the strip shows in the explain views only)
    const seen = () => {
      const img = document.querySelector(id + ' img'); const list = rec[key]; const last = list[list.length - 1];
      if (img && img.src && (last ? last.src !== img.src : img.src !== rec.src0[key])) {  // not the old image
        list.push({src: img.src, t: now(), text: text(), shown: null, width: null});
        if (img.complete && img.naturalWidth) Object.assign(list[list.length - 1], {shown: now(), width: img.naturalWidth});
      }
    };
    new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                      attributeFilter: ['src']});
    document.addEventListener('load', e => {
      if (e.target.tagName !== 'IMG' || !e.target.closest(id)) return;
      seen();
      for (const f of rec[key]) if (f.src === e.target.src && f.shown === null) Object.assign(f, {shown: now(), width: e.target.naturalWidth});
    }, true);
  };
  watch('#result', 'frames');
  watch('#strip', 'strips');
  watch('#conflict', 'conflicts');
  document.addEventListener('click', e => {
    if (!e.target.closest('#run')) return;
    rec.t0 = performance.now(); rec.frames = []; rec.strips = []; rec.conflicts = [];
    rec.lines = [{text: text(), t: 0}];
    for (const [id, key] of [['#result', 'frames'], ['#strip', 'strips'], ['#conflict', 'conflicts']]) {
      const img = document.querySelector(id + ' img'); rec.src0[key] = img ? img.src : null;
    }
  }, true);
  new MutationObserver(() => {
    const line = text(); const last = rec.lines[rec.lines.length - 1];
    if (!last || last.text !== line) rec.lines.push({text: line, t: now()});
  }).observe(document.querySelector('#progress'), {subtree: true, childList: true, characterData: true});
}"""


class StudioPage:
    """The studio in a browser tab, with the moves a person makes."""

    def __init__(self, page, url: str):
        self.page = page
        self.url = url
        self.elsewhere: list[str] = []  # requests to anything but the studio's server (it must work offline)

    def open(self, timeout: float = 120.0) -> StudioPage:
        origin = self.url.rstrip("/")
        self.page.on("request", lambda r: None if r.url.startswith((origin, "data:", "blob:")) else
                     self.elsewhere.append(r.url))
        self.page.goto(self.url, timeout=timeout * 1000)
        for editor in ("#sketch-canvas", "#seg-painter"):
            self.page.wait_for_selector(f"{editor} .zoom-number", timeout=timeout * 1000)  # background loaded
        self.page.wait_for_selector("#run", timeout=timeout * 1000)
        self.page.evaluate(RECORDER_JS)
        return self

    def progress(self) -> str:
        return self.page.locator("#progress [data-testid=markdown]").inner_text()

    def canvas_box(self, editor: str) -> dict:
        """Where the editor shows its image: centred in its canvas at the zoom the toolbar reports."""
        box = self.page.locator(f"{editor} canvas").first.bounding_box()
        zoom = float(self.page.locator(f"{editor} .zoom-number").inner_text().strip().rstrip("%")) / 100
        side = CANVAS_SIDE * zoom
        return {"x": box["x"] + (box["width"] - side) / 2, "y": box["y"] + (box["height"] - side) / 2,
                "width": side, "height": side}

    def stroke(self, editor: str, points: list[tuple[float, float]], tool: str = "Brush", tries: int = 3,
               substeps: int = 8) -> None:
        """Press, drag through `points` (fractions of the image on the canvas; `substeps` pointer moves from one
        to the next) and release, with `tool`; drawn again if the canvas does not change (a busy page may not be
        listening yet)."""
        canvas = self.page.locator(f"{editor} canvas").first
        for _ in range(tries):
            self.page.locator(f"{editor} button[aria-label='{tool}']").click()
            box = self.canvas_box(editor)
            xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
            self.page.mouse.move(*xy[0])
            self.page.wait_for_timeout(300)  # let the tool settle before pressing
            before = canvas.screenshot()
            self.page.mouse.down()
            for (x0, y0), (x1, y1) in zip(xy, xy[1:]):
                for k in range(1, substeps + 1):
                    self.page.mouse.move(x0 + (x1 - x0) * k / substeps, y0 + (y1 - y0) * k / substeps)
            self.page.mouse.up()
            self.page.mouse.move(*xy[0])  # where it started, so only the stroke differs
            for _ in range(20):
                self.page.wait_for_timeout(250)
                if canvas.screenshot() != before:
                    return
        raise AssertionError(f"{editor}: the stroke did not show on the canvas")

    def pick_colour(self, rgb: tuple[int, int, int], editor: str = "#seg-painter") -> None:
        """Choose a brush colour from the painter's fixed palette."""
        self.page.locator(f"{editor} button[aria-label='Brush']").click()
        self.page.locator(f"{editor} button[aria-label='Color']").click()
        r, g, b = rgb
        self.page.locator(f"{editor} button.color[style*='rgb({r}, {g}, {b})']").click()

    def fill_ellipse(self, editor: str, cx: float, cy: float, rx: float, ry: float, top_only: bool = False,
                     brush: float = 0.06) -> None:
        """Paint a filled ellipse (fractions of the canvas) as a person does: one zig-zag stroke of the
        brush (`brush`: its radius) over the inside; top_only paints the upper half (a hair cap)."""
        rx, ry = rx - brush, ry - brush
        bottom = cy if top_only else cy + ry
        rows = max(2, int(np.ceil((bottom - (cy - ry)) / (1.5 * brush))) + 1)
        points = []
        for i, y in enumerate(np.linspace(cy - ry, bottom, rows)):
            half = rx * np.sqrt(max(0.0, 1 - ((y - cy) / ry) ** 2))
            ends = [(cx - half, y), (cx + half, y)]
            points += ends if i % 2 == 0 else ends[::-1]
        self.stroke(editor, points, substeps=PAINT_SUBSTEPS)

    def paint_face(self, face: dict) -> None:
        """From a blank map and an empty sketch: paint the face's map with the palette brush (hair cap,
        skin ellipse, two eyes, a mouth) and sketch its outline, eyes and mouth. `face`: cx, cy, r
        (half-width) as fractions of the canvas, and hair (bool)."""
        from unite_demo.worlds.faces.data import PALETTE_RGB

        colour = {k: tuple(int(c) for c in PALETTE_RGB[k]) for k in range(len(PALETTE_RGB))}
        cx, cy, r = face["cx"], face["cy"], face["r"]
        self.page.get_by_role("button", name="Start from a blank map").click()
        self.page.wait_for_timeout(500)
        if face.get("hair", True):
            self.pick_colour(colour[2])
            self.fill_ellipse("#seg-painter", cx, cy - 0.25 * r, 1.15 * r, 1.1 * r, top_only=True)
        self.pick_colour(colour[1])
        self.fill_ellipse("#seg-painter", cx, cy + 0.05 * r, r, 1.2 * r)
        self.pick_colour(colour[3])
        for sx in (-1, 1):
            self.stroke("#seg-painter", [(cx + sx * 0.42 * r, cy - 0.05 * r), (cx + sx * 0.42 * r + 0.01, cy - 0.05 * r)],
                        substeps=PAINT_SUBSTEPS)
        self.pick_colour(colour[5])
        self.stroke("#seg-painter", [(cx - 0.3 * r, cy + 0.6 * r), (cx, cy + 0.68 * r), (cx + 0.3 * r, cy + 0.6 * r)],
                    substeps=PAINT_SUBSTEPS)
        self.page.locator("#sketch-canvas button[aria-label='Clear canvas']").click()
        self.page.wait_for_timeout(500)
        t = np.linspace(0, 2 * np.pi, 25)
        self.stroke("#sketch-canvas", list(zip(cx + r * np.cos(t), cy + 0.05 * r + 1.2 * r * np.sin(t))),
                    substeps=PAINT_SUBSTEPS)
        for sx in (-1, 1):
            e = np.linspace(0, 2 * np.pi, 10)
            self.stroke("#sketch-canvas", list(zip(cx + sx * 0.42 * r + 0.12 * r * np.cos(e),
                                                   cy - 0.05 * r + 0.1 * r * np.sin(e))), substeps=PAINT_SUBSTEPS)
        self.stroke("#sketch-canvas", [(cx - 0.3 * r, cy + 0.6 * r), (cx, cy + 0.68 * r), (cx + 0.3 * r, cy + 0.6 * r)],
                    substeps=PAINT_SUBSTEPS)

    def open_where(self, modality: str) -> None:
        """Open a modality's "where & when it is heard" panel; its map painter shows the faded drawing."""
        self.page.locator(f"#{modality}-where").get_by_text("where & when it is heard").click()
        self.page.wait_for_selector(f"#{modality}-map .zoom-number")
        self.page.wait_for_timeout(1500)  # the faded view of the drawing arrives

    def paint_out(self, modality: str, lo: float, hi: float) -> None:
        """Paint the square [lo, hi]^2 of a modality's reliability map black (not heard there), in zig-zag
        rows about one brush apart; the map reaches the server when the pointer is released."""
        rows = np.linspace(lo + 0.06, hi - 0.06, max(2, int((hi - lo) / 0.1)))
        points = []
        for i, y in enumerate(rows):
            ends = [(lo + 0.04, y), (hi - 0.04, y)]
            points += ends if i % 2 == 0 else ends[::-1]
        self.stroke(f"#{modality}-map", points)
        self.page.wait_for_timeout(1000)

    def nudge_slider(self, elem_id: str, presses: int) -> str:
        """Move a slider with the keyboard (arrow keys); returns the value it shows."""
        handle = self.page.locator(f"#{elem_id} input[type=range]")
        handle.focus()
        for _ in range(abs(presses)):
            handle.press("ArrowRight" if presses > 0 else "ArrowLeft")
        return self.page.locator(f"#{elem_id} input[type=number]").input_value()

    def set_number(self, elem_id: str, value) -> None:
        box = self.page.locator(f"#{elem_id} input[type=number]")
        box.fill(str(value))
        box.press("Enter")

    def run(self) -> None:
        self.page.locator("#run").click()

    def wait_done(self, timeout: float = 120.0, strip_width: int | None = None) -> None:
        """Until the progress line of this run says done and its final image has been shown (and, with
        strip_width, the final strip: the image of that natural width)."""
        self.page.wait_for_function(
            "() => window.__rec.lines.slice(1).some(x => /done/.test(x.text)) && window.__rec.frames.length > 0",
            timeout=timeout * 1000)
        self.page.wait_for_function(  # the final image (the last frame) is on screen
            "() => { const f = window.__rec.frames; return f.length && f[f.length - 1].shown !== null; }",
            timeout=timeout * 1000)
        if strip_width is not None:
            self.page.wait_for_function(
                "(w) => window.__rec.strips.some(f => f.shown !== null && f.width === w)", arg=strip_width,
                timeout=timeout * 1000)

    def record(self) -> dict:
        """Since the last press of Run: frames of the result, of the strip and of the conflict view ({src,
        t: set in the page, shown: loaded on screen, width: its natural width, text: the progress line then},
        ms) and progress lines ({text, t})."""
        return self.page.evaluate("() => ({frames: window.__rec.frames, strips: window.__rec.strips, "
                                  "conflicts: window.__rec.conflicts, lines: window.__rec.lines})")

    def show(self, view: str) -> None:
        """Pick what a run shows: 'the product', 'each expert alone' or 'a reliability strip'."""
        self.page.locator("#view").get_by_text(view, exact=True).click()
        self.page.wait_for_timeout(300)

    def run_and_time(self, timeout: float = 120.0, strip_width: int | None = None) -> dict:
        """Press Run, wait for the final image (and the final strip of that width); seconds from the press
        until the first preview and the final image (strip) are on screen."""
        self.run()
        self.wait_done(timeout, strip_width)
        rec = self.record()
        frames = rec["frames"]
        shown = [f["shown"] for f in frames if f["shown"] is not None]
        timing = {"first_preview_s": min(shown) / 1000, "final_s": frames[-1]["shown"] / 1000,
                  "frames": len(frames), "frames_shown": len(shown),
                  "status": rec["lines"][-1]["text"] if rec["lines"] else ""}
        if strip_width is not None:
            strips = [f for f in rec["strips"] if f["shown"] is not None]
            timing.update(first_strip_s=min(f["shown"] for f in strips) / 1000, strips=len(rec["strips"]),
                          final_strip_s=min(f["shown"] for f in strips if f["width"] == strip_width) / 1000)
        return timing


PAINT_SUBSTEPS = 2  # pointer moves per segment when painting a face: the editor joins them with straight lines

# Faces a visitor paints from a blank map (StudioPage.paint_face): centre and half-width as fractions
# of the canvas, off-centre, small and large, with and without hair, and the caption typed beside them.
FREEHAND = (
    {"cx": 0.62, "cy": 0.40, "r": 0.20, "caption": "a smiling person with short red hair and green eyes on a blue background"},
    {"cx": 0.36, "cy": 0.56, "r": 0.15, "caption": "a woman with long blonde hair on a pink background"},
    {"cx": 0.50, "cy": 0.52, "r": 0.30, "hair": False, "caption": "a bald man with dark skin, yellow background"},
    {"cx": 0.30, "cy": 0.34, "r": 0.13, "caption": "blue hair, purple eyes, orange backdrop"},
    {"cx": 0.64, "cy": 0.60, "r": 0.24, "caption": "grey hair and glasses, white background"},
    {"cx": 0.45, "cy": 0.45, "r": 0.22, "caption": "black curly hair, brown skin, surprised, green background"},
)


def shown_image(page, elem_id: str):
    """The image an output component shows, as the browser fetched it: (H,W,3) uint8."""
    import io

    from PIL import Image

    src = page.locator(f"#{elem_id} img").get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def freehand_miou(received_view: np.ndarray, result: np.ndarray) -> float:
    """mIoU between the segmenter's map of the final image (256 px, box-reduced to 32) and the map the
    seg expert received (its 128 px view)."""
    from PIL import Image

    from unite_demo.worlds.faces.evaluation import metric_nets
    from unite_demo.worlds.conditions import seg_from_image
    from unite_demo.worlds.faces.data import FACES_PALETTE
    from unite_demo.worlds.faces.evaluation.metrics import miou

    received = seg_from_image(received_view, 32, palette=FACES_PALETTE)
    small = np.asarray(Image.fromarray(result).resize((32, 32), Image.Resampling.BOX))
    return miou(metric_nets.segment(metric_nets.load_net("segmenter"), small[None])[0], received)


def make_freehand(url: str, out: Path) -> tuple[Path, list[float]]:
    """Each FREEHAND face painted in the page from a blank map, run with the page's defaults: a row of
    (map and sketch as the experts received them, the result) per face, the caption under it. Also
    returns each face's freehand_miou."""
    from PIL import Image, ImageDraw

    tiles, scores = [], []
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        sp = StudioPage(page, url).open()
        for face in FREEHAND:
            sp.paint_face(face)
            page.locator("#caption textarea").fill(face["caption"])
            sp.run_and_time()
            views = [shown_image(page, e) for e in ("cond-seg", "cond-sketch", "result")]
            scores.append(freehand_miou(views[0], views[2]))
            tiles.append([Image.fromarray(v).resize((160, 160), Image.Resampling.NEAREST) for v in views])
    cols, w, h = 2, 3 * 162 + 20, 160 + 40
    sheet = Image.new("RGB", (cols * w, (len(tiles) + cols - 1) // cols * h + 10), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (row, face) in enumerate(zip(tiles, FREEHAND)):
        x0, y0 = 10 + (k % cols) * w, 10 + (k // cols) * h
        for j, tile in enumerate(row):
            sheet.paste(tile, (x0 + j * 162, y0))
        caption = face["caption"] if len(face["caption"]) <= 75 else face["caption"][:72] + "..."
        draw.text((x0, y0 + 166), caption, fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out, scores


def make_screenshot(url: str, out: Path) -> dict:
    """The page after one run with its default inputs (example 0)."""
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        studio_page = StudioPage(page, url).open()
        timing = studio_page.run_and_time()
        page.mouse.move(0, 0)  # no hover highlight on the Run button
        page.wait_for_timeout(300)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=False)
        return timing


PHONE_VIEWPORT = {"width": 390, "height": 844}


def make_phone_screenshot(url: str, out: Path) -> dict:
    """The page on a phone-sized screen (390x844), side by side: as it opens (the canvases first) and
    just after Run (the result in view, Run below it)."""
    from PIL import Image

    with chromium() as browser:
        page = browser.new_page(viewport=PHONE_VIEWPORT, device_scale_factor=2, is_mobile=True, has_touch=True)
        studio_page = StudioPage(page, url).open()
        opened = Image.open(io.BytesIO(page.screenshot(full_page=False)))
        timing = studio_page.run_and_time()
        page.wait_for_timeout(800)  # the page's scroll to the result ends
        after = Image.open(io.BytesIO(page.screenshot(full_page=False)))
    gap = 24
    sheet = Image.new("RGB", (opened.width + gap + after.width, max(opened.height, after.height)), "white")
    sheet.paste(opened, (0, 0))
    sheet.paste(after, (opened.width + gap, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.resize((sheet.width // 2, sheet.height // 2), Image.Resampling.LANCZOS).save(out, optimize=True)
    return timing


def make_animation(out: Path) -> Path:
    """One run's previews, beside the conditions as the experts received them, as an animated GIF."""
    from PIL import Image, ImageDraw

    from unite_demo.studio.inputs import RunInputs
    from unite_demo.limits import RESULT_SIZE
    from unite_demo.studio.pages import example_inputs
    from unite_demo.studio.runs import save_frames
    from unite_demo.studio.studio import Studio

    ex = example_inputs(0)
    frames = []
    size = RESULT_SIZE
    params = {**ex.values, **{f"r_{m}": r for m, r in ex.reliability.items()}, "seed": ex.seed}
    for u in Studio().run(RunInputs.from_params(params)):
        panel = Image.new("RGB", (3 * size + 40, size + 36), "white")
        for k, img in enumerate((u.views["seg"], u.views["sketch"], u.image)):
            if img is not None:
                panel.paste(img.convert("RGB").resize((size, size), Image.Resampling.NEAREST if k < 2 else
                                                      Image.Resampling.BICUBIC), (10 + k * (size + 10), 10))
        draw = ImageDraw.Draw(panel)
        labels = ("segmentation map", "sketch", "final image" if u.done else f"step {u.step} / {u.total}")
        for k, label in enumerate(labels):
            width = draw.textlength(label)
            draw.text((10 + k * (size + 10) + (size - width) / 2, size + 16), label, fill="black")
        frames.append(panel)
    return save_frames(frames, out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--screenshot", type=Path, default=ROOT / "docs" / "screenshot.png",
                    help="where the page after a run goes (default: overwrites the tracked docs/screenshot.png)")
    ap.add_argument("--animation", type=Path, default=ROOT / "docs" / "denoising.gif",
                    help="where one run's steps go (default: overwrites the tracked docs/denoising.gif)")
    ap.add_argument("--freehand", type=Path, default=ROOT / "docs" / "freehand.png",
                    help="where the painted faces go (default: overwrites the tracked docs/freehand.png)")
    ap.add_argument("--phone", type=Path, default=ROOT / "docs" / "phone.png",
                    help="where the page on a phone goes (default: overwrites the tracked docs/phone.png)")
    ap.add_argument("--only", nargs="+", choices=("animation", "freehand", "screenshot", "phone"),
                    default=("animation", "freehand", "screenshot", "phone"), help="make these only (default: all)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if "animation" in args.only:
        print(f"wrote {make_animation(args.animation)}")
    with serve() as url:
        if "freehand" in args.only:
            path, scores = make_freehand(url, args.freehand)
            print(f"wrote {path}; mIoU of each result's map against the painted map: "
                  + ", ".join(f"{v:.3f}" for v in scores) + f" (mean {np.mean(scores):.3f})")
        for name, make in (("screenshot", make_screenshot), ("phone", make_phone_screenshot)):
            if name in args.only:
                timing = make(url, getattr(args, name))
                print(f"wrote {getattr(args, name)} (run: first preview {timing['first_preview_s']:.2f} s, "
                      f"final {timing['final_s']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
