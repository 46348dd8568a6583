"""The studio's adaptations to gradio, the only module beside app.py that imports gradio (the core,
unite_demo, never does). Each names the gradio behaviour it works around and the version it was seen
in; tests/test_gradio_adapters.py holds a canary per adaptation that fails once gradio stops behaving
that way, so an upgrade says which adaptation to delete."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import io
import json
import os
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
import pydantic
from gradio import processing_utils
from gradio.components.image_editor import EditorData
from gradio.data_classes import ImageData
from gradio_client import utils as client_utils
from PIL import Image

from unite_demo.worlds.conditions import ConditionError, check_image_file, without_paths


def cache_image(value, cache_dir: str, format: str):
    """An image (array or PIL) -> its file in gradio's cache, written once under a temporary name and
    renamed into place (a file already there is only touched: gradio's cache cleaning ages files by
    their time); anything else as it is."""
    if not isinstance(value, (np.ndarray, Image.Image)):
        return value
    buf = io.BytesIO()
    (value if isinstance(value, Image.Image) else Image.fromarray(value)).save(buf, format=format)
    data = buf.getvalue()
    folder = Path(cache_dir) / hashlib.sha256(data).hexdigest()
    folder.mkdir(exist_ok=True, parents=True)
    path = (folder / f"image.{format}").resolve()
    if path.is_file() and path.stat().st_size == len(data):
        os.utime(path)
        return str(path)
    fd, staging = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return str(path)


# gradio 6.31.0 rewrites a cached image in place on every use (processing_utils.save_pil_to_cache), and the
# cache is keyed by content: the same image in two messages was truncated under a client still fetching it.
class ResultImage(gr.Image):
    """gr.Image whose images reach the cache whole (cache_image)."""

    def postprocess(self, value):
        return super().postprocess(cache_image(value, self.GRADIO_CACHE, self.format))

    def get_block_name(self) -> str:
        return "image"


# gradio 6.31.0 coerces or refuses what a caller sends in its own words, without naming the input (Slider and
# Number: "Value 5 is greater than maximum value 3."; Textbox: str(5); Dropdown: its choices).
class AsSent:
    """An input whose value reaches the event's function as the caller sent it, for unite_demo.worlds.conditions
    to judge and name (None: the world's default). Mixed into a gradio component, last among the bases."""

    def preprocess(self, payload):
        return payload

    def get_block_name(self) -> str:  # the gradio component's own frontend
        return type(self).__bases__[-1].__name__.lower()


class SentSlider(AsSent, gr.Slider):
    pass


class SentNumber(AsSent, gr.Number):
    pass


class SentTextbox(AsSent, gr.Textbox):
    pass


class SentDropdown(AsSent, gr.Dropdown):
    pass


class SentRadio(AsSent, gr.Radio):
    pass


# gradio 6.31.0's ImageEditor decodes every file it is sent without a size limit, and answers a value of the
# wrong shape with a server error (pydantic's ValidationError) that names no input.
class CanvasTwin(gr.ImageEditor):
    """The hidden twin of a page canvas, which the server's events read and write (see TWINS below),
    labelled with the input's name in messages (its gradio arguments, unchanged, give it no other
    value): a value of the wrong shape is refused, and every file checked from its header (conditions.check_image_file:
    readable, not oversized) before gradio decodes it, with a message naming the input; its images reach
    the cache whole (cache_image)."""

    @property
    def input_name(self) -> str:  # its label: never shown, named in messages
        return getattr(self, "label", None) or "image"  # (gradio reads data_model before it sets the label)

    @property
    def data_model(self) -> type[EditorData]:
        return named_editor_data(self.input_name)

    def get_block_name(self) -> str:
        return "imageeditor"

    def preprocess(self, payload):
        try:
            for image in self.files(payload):
                check_image_file(image, self.input_name)
            return super().preprocess(payload)
        except ConditionError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except gr.Error as e:
            raise gr.Error(f"{self.input_name}: {e.message}", print_exception=False) from None
        except (OSError, ValueError, TypeError, ArithmeticError, SyntaxError, Image.DecompressionBombError) as e:
            raise gr.Error(f"{self.input_name}: cannot read the image ({without_paths(str(e))}); accepted: PNG, JPEG, "
                           "WebP, BMP", print_exception=False) from None

    def files(self, payload) -> list:
        """The files of a value (uploaded paths, or the page's canvas blobs as bytes), unread."""
        if payload is None:
            return []
        parts = [payload.background, payload.composite, *payload.layers]
        if payload.id is not None and self.blob_storage.get(payload.id) is not None:
            blobs = self.blob_storage[payload.id]
            parts += [blobs.background, blobs.composite, *blobs.layers]
        return [io.BytesIO(p) if isinstance(p, (bytes, bytearray)) else p.path for p in parts if p is not None]

    def postprocess(self, value):
        if isinstance(value, dict):
            value = {**value, "background": cache_image(value.get("background"), self.GRADIO_CACHE, self.format),
                     "composite": cache_image(value.get("composite"), self.GRADIO_CACHE, self.format),
                     "layers": [cache_image(v, self.GRADIO_CACHE, self.format) for v in value.get("layers") or []]}
        return super().postprocess(cache_image(value, self.GRADIO_CACHE, self.format))


class MapTwin(CanvasTwin):
    """The hidden twin of a reliability map painter (a CanvasTwin): the API may also send it a plain image
    file (gradio_client's handle_file), read as the painted layer, so its API describes an image."""

    @property
    def data_model(self) -> type[EditorData]:
        return named_editor_data(self.input_name, image_as_layer=True)

    def api_info(self) -> dict:
        return {**ImageData.model_json_schema(), "description": "an image: black = not heard there, white = heard "
                "at its reliability (any size, resized to the canvas)"}


# gradio 6.31.0 makes an API parameter optional only where its component has a value or the function's own
# parameter of that name defaults to None (Blocks.get_api_info); a map twin has no value (no map: heard
# everywhere), and /generate takes its parameters as **params.
def optional_parameters(fn, names):
    """fn, its signature saying that each of `names` defaults to None (keyword-only, ahead of **params); fn
    itself still receives them in **params."""
    sig = inspect.signature(fn)
    kept = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    rest = [p for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD]
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in names
             if n not in sig.parameters]
    fn.__signature__ = sig.replace(parameters=[*kept, *extra, *rest])
    return fn


def canvas_twin(value, name: str) -> CanvasTwin:
    """The twin of a canvas holding `value`, named `name` in messages."""
    return CanvasTwin(value=value, label=name, type="numpy", image_mode="RGBA", format="png", visible=False)


@functools.lru_cache(maxsize=None)
def named_editor_data(name: str, image_as_layer: bool = False) -> type[EditorData]:
    """gradio's EditorData, with a message naming the input for a value of the wrong shape; image_as_layer:
    a plain image file is read as the editor's one layer."""

    class Named(EditorData):
        @classmethod
        def model_validate(cls, obj, *args, **kwargs):
            if image_as_layer and isinstance(obj, dict) and "path" in obj and "layers" not in obj:
                obj = {"background": None, "layers": [obj], "composite": None, "id": None}
            try:
                return super().model_validate(obj, *args, **kwargs)
            except pydantic.ValidationError:
                shown = repr(obj) if len(repr(obj)) <= 80 else repr(obj)[:77] + "..."
                raise gr.Error(f"{name}: expected an image editor value {{'background': image, 'layers': [images], "
                               f"'composite': image, 'id': None}} or None, got {shown}",
                               print_exception=False) from None

    return Named


# gradio 6.31.0 has no slider with two handles; this one is a gr.HTML (its template, css and script), whose
# value is the pair as text, 'start,end' (what the API and the command line accept for a window).
RANGE_TEMPLATE = """
<div class="range" data-step="${step}">
  <div class="range-head"><span class="range-label">${label}</span>
    <span class="range-text">${(() => { const [a, b] = String(value || '0,1').split(',').map(Number);
      return `${Math.round(a * 100)}% to ${Math.round(b * 100)}% of the steps`; })()}</span></div>
  <div class="range-track">
    <input type="range" class="range-lo" min="0" max="1" step="${step}" aria-label="${label}: from"
           value="${String(value || '0,1').split(',')[0]}">
    <input type="range" class="range-hi" min="0" max="1" step="${step}" aria-label="${label}: until"
           value="${String(value || '0,1').split(',')[1]}">
  </div>
</div>"""
RANGE_CSS = """
.range-head { display: flex; justify-content: space-between; font-size: 0.9em; }
.range-track { position: relative; height: 1.6em; }
.range-track input { position: absolute; left: 0; width: 100%; top: 0.3em; margin: 0; pointer-events: none;
                     background: none; appearance: none; -webkit-appearance: none; }
.range-track input::-webkit-slider-thumb { pointer-events: all; }
.range-track input::-moz-range-thumb { pointer-events: all; }
.range-track input.range-lo::-webkit-slider-runnable-track { background: var(--neutral-300, #ccc); height: 4px; }
"""
RANGE_JS = """
  const pair = () => [element.querySelector('.range-lo'), element.querySelector('.range-hi')];
  const say = () => {
    const [lo, hi] = pair();
    element.querySelector('.range-text').textContent =
      `${Math.round(lo.value * 100)}% to ${Math.round(hi.value * 100)}% of the steps`;
  };
  element.addEventListener('input', (e) => {  // the handles never cross: the one moved stops a step short
    const [lo, hi] = pair(), step = Number(element.querySelector('.range').dataset.step);
    if (Number(lo.value) >= Number(hi.value)) {
      if (e.target === lo) lo.value = Math.max(0, Number(hi.value) - step);
      else hi.value = Math.min(1, Number(lo.value) + step);
    }
    say();
  });
  element.addEventListener('change', (e) => {
    if (!(e.target instanceof HTMLInputElement)) return;
    const [lo, hi] = pair();
    props.value = `${Number(lo.value)},${Number(hi.value)}`;
    trigger('change');
  });"""


class RangeSlider(gr.HTML):
    """A slider with two handles over [0, 1] (the fraction of a run's steps): value 'start,end'."""

    def __init__(self, value: str = "0,1", *, label: str, step: float = 0.05, **kwargs):
        super().__init__(value=value, label=label, html_template=RANGE_TEMPLATE, css_template=RANGE_CSS,
                         js_on_load=RANGE_JS, step=step, padding=True, **kwargs)

    def api_info(self) -> dict:
        return {"type": "string", "description": "start,end: the fraction of the steps it is heard in, e.g. 0,0.6"}


# gradio 6.31.0 checks and moves a caller's files before any component code runs, with no public hook: a file
# the caller did not upload is a server error naming no input, and an image URL is downloaded.
GRADIO_MOVE_FILES = processing_utils.async_move_files_to_cache


async def move_files_to_cache(data, block, *args, **kwargs):
    """gradio's processing_utils.async_move_files_to_cache; for a canvas twin's value sent by a caller, a
    URL is refused (the studio works offline) and a file not uploaded to this server is refused, each with a
    message naming the input."""
    if not isinstance(block, CanvasTwin) or not kwargs.get("check_in_upload_folder"):
        return await GRADIO_MOVE_FILES(data, block, *args, **kwargs)
    paths = []
    client_utils.traverse(data, lambda d: paths.append(d["path"]), client_utils.is_file_obj_with_meta)
    for path in paths:
        if client_utils.is_http_url_like(path):
            raise gr.Error(f"{block.input_name}: a URL ({path[:80]}) is not fetched; upload the image file instead "
                           "(gradio_client's handle_file does, given a local path)", print_exception=False)
    try:
        return await GRADIO_MOVE_FILES(data, block, *args, **kwargs)
    except (OSError, ValueError) as e:  # gradio's InvalidPathError is a ValueError
        raise gr.Error(f"{block.input_name}: {e}", print_exception=False) from None


def guard_file_moves() -> None:
    """Put move_files_to_cache where gradio's event processing calls it (process-wide)."""
    processing_utils.async_move_files_to_cache = move_files_to_cache


# gradio 6.31.0 asks matplotlib for its backend around every event (utils.MatplotlibBackendMananger): without
# this, the first event would pay matplotlib's import.
def import_matplotlib_now() -> None:
    try:
        import matplotlib

        matplotlib.get_backend()
    except ImportError:
        pass


# TWINS. gradio 6.31.0's page asks every component that took part in a finished server event for its value again
# on every streamed message (to refresh its loading status), and an image editor answers by exporting its canvas
# and uploading it: four requests per preview, a sampler starved of CPU. So the page's canvases only ever meet
# browser-side events, which copy their content to and from hidden twins (CanvasTwin: never rendered, so never
# asked); the server's events read and write the twins.
SEND_JS = "(...values) => values"  # canvases -> twins, just before a server event reads them
SHOW_JS = "(...values) => { window.__uniteLiveKick?.(); return values; }"  # twins -> canvases
BRUSH_JS = "(brush) => brush ? ({__type__: 'update', brush}) : ({__type__: 'update'})"  # a world's painter palette
# (from a gr.JSON twin; none: as it is) -> the painter
RUN_JS = "(...values) => { window.__uniteRun?.(); return values; }"  # Run: SEND_JS, the page's own notes cleared


# gradio 6.31.0's image editor keeps its colour pop-up open over the canvas after a colour is picked; it
# closes on a mousedown outside it (its click_outside action). The page's script sends one after a pick.
COLOUR_PICKED_JS = """
  document.addEventListener('click', (e) => {
    if (e.target instanceof Element && e.target.closest('#seg-painter button.color, #sketch-canvas button.color'))
      setTimeout(() => document.body.dispatchEvent(new MouseEvent('mousedown', {bubbles: true})), 0);
  }, true);"""


# gradio 6.31.0's image editor takes a file given to it (its upload button, a drop) into its canvas in the
# browser, whatever it is: a file that is not an image clears the canvas, and a very large photo keeps the
# page busy for many seconds on every export. The page's script hands such files to a hidden upload
# component instead (scaled in the browser to UPLOAD_SIDE at most), whose server event reads them through
# the core's validation and shows the result on the canvas only when it is accepted.
UPLOAD_SIDE = 1024
PHONE_WIDTH = 700  # px: below this the page is laid out for a phone (app.CSS), and Run shows the result

UPLOAD_JS = """
  const routeUpload = async (file, target) => {
    const input = document.querySelector(target + ' input[type=file]');
    if (!file || !input) return;
    window.__uniteSay?.('reading ' + file.name + ' ...');
    let sent = file;
    try {
      const bitmap = await createImageBitmap(file);
      const scale = Math.min(1, UPLOAD_SIDE / Math.max(bitmap.width, bitmap.height));
      if (scale < 1) {
        const c = new OffscreenCanvas(Math.round(bitmap.width * scale), Math.round(bitmap.height * scale));
        c.getContext('2d').drawImage(bitmap, 0, 0, c.width, c.height);
        const blob = await c.convertToBlob({type: 'image/png'});
        sent = new File([blob], file.name.replace(/\\.[^.]*$/, '') + '.png', {type: 'image/png'});
      }
      bitmap.close();
    } catch (e) {}  // not an image the browser reads: sent as it is, for the server to say what is accepted
    const files = new DataTransfer();
    files.items.add(sent);
    input.files = files.files;
    input.dispatchEvent(new Event('change', {bubbles: true}));
  };
  const uploadTarget = (el) => {
    for (const [canvas, target] of Object.entries(UPLOADS)) if (el.closest(canvas)) return target;
    return null;
  };
  document.addEventListener('change', (e) => {
    const t = e.target;
    if (!(t instanceof HTMLInputElement) || t.type !== 'file') return;
    const target = uploadTarget(t);
    if (!target) return;
    e.stopImmediatePropagation();
    const file = t.files[0];
    t.value = '';
    routeUpload(file, target);
  }, true);
  document.addEventListener('drop', (e) => {
    const target = e.target instanceof Element ? uploadTarget(e.target) : null;
    if (!target || !e.dataTransfer?.files?.length) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    routeUpload(e.dataTransfer.files[0], target);
  }, true);"""

# gradio 6.31.0's image editor shows its fixed brush colours as bare swatches; the page's script names each
# one (title and aria-label) after the legend's class of that colour.
SWATCH_NAMES_JS = """
  const nameSwatches = () => {
    const names = {};
    for (const item of document.querySelectorAll('.legend-item[data-class]')) {
      const swatch = item.querySelector('span');
      if (swatch) names[getComputedStyle(swatch).backgroundColor] = item.dataset.class;
    }
    for (const b of document.querySelectorAll('button.color')) {
      const name = names[b.style.backgroundColor];
      if (name && b.title !== name) { b.title = name; b.setAttribute('aria-label', name); }
    }
  };
  new MutationObserver(nameSwatches).observe(document.body, {childList: true, subtree: true});"""

# gradio 6.31.0's slider puts a number typed outside its range back within it when the box loses focus,
# without a word; the page's script says it, in the words the server uses for the API and the command line.
CLAMP_NOTES_JS = """
  document.addEventListener('blur', (e) => {
    const box = e.target;
    if (!(box instanceof HTMLInputElement) || box.type !== 'number' || box.value === '') return;
    const v = Number(box.value), lo = Number(box.min), hi = Number(box.max);
    if (!Number.isFinite(v) || box.min === '' || box.max === '' || (v >= lo && v <= hi)) return;
    const block = box.closest('.block');
    const label = block?.querySelector('[data-testid=block-info]')?.innerText?.trim() || 'value';
    const card = box.closest('[id$=-reliability]')?.id?.replace(/-reliability$/, '');
    const name = label === 'reliability' && card ? 'reliability of ' + card : label;
    window.__uniteSay?.(v > hi ? `${name}: ${v} is over the maximum ${hi}; ${hi} is used`
                               : `${name}: ${v} is under the minimum ${lo}; ${lo} is used`);
  }, true);"""


def page_js(debounce_s: float, uploads: dict[str, str] | None = None) -> str:
    """The page's script. Live mode: a change waits debounce_s for the next one, then presses the hidden
    live button (LIVE_JS kicks it); the canvases meet no server event (TWINS), so they say they changed
    by a pointer released over them. The painter's colour pop-up closes once a colour is picked
    (COLOUR_PICKED_JS) and names its swatches (SWATCH_NAMES_JS); files given to a canvas go to its hidden
    upload component (uploads: canvas selector -> upload selector; UPLOAD_JS); a number put back in its
    range is said (CLAMP_NOTES_JS). window.__uniteSay(text) writes the page's own note (#page-notes), which
    a Run clears."""
    return f"""() => {{
  window.__uniteLiveKick = () => {{
    const live = document.querySelector('#live input');
    if (!live || !live.checked) return;
    clearTimeout(window.__uniteLive);
    window.__uniteLive = setTimeout(() => document.querySelector('#live-go')?.click(), {int(debounce_s * 1000)});
  }};
  window.__uniteRun = () => {{  // Run pressed: the page's notes go; on a phone the result comes into view
    window.__uniteSay('');
    const result = document.querySelector('#result');
    if (result && window.innerWidth < {PHONE_WIDTH}) result.scrollIntoView({{block: 'start', behavior: 'smooth'}});
  }};
  window.__uniteSay = (text) => {{
    const box = document.querySelector('#page-notes');
    if (box) box.textContent = text;
  }};
  document.addEventListener('pointerup', (e) => {{
    if (!(e.target instanceof Element)) return;
    if (e.target.closest('#seg-painter, #sketch-canvas')) window.__uniteLiveKick();
    const map = e.target.closest('.reliability-map');  // a map painted: copied to its twin, which kicks live mode
    if (map) setTimeout(() => document.querySelector('#' + map.id + '-send')?.click(), 50);
  }}, true);
  const UPLOADS = {json.dumps(uploads or {})}, UPLOAD_SIDE = {UPLOAD_SIDE};{UPLOAD_JS}{COLOUR_PICKED_JS}{SWATCH_NAMES_JS}{CLAMP_NOTES_JS}
}}"""


# gradio 6.31.0's brush and eraser size is the radius of the disc they stamp along a stroke (the image
# editor's render_segment_to_graphics: circle(x, y, size)): a size of 16 paints a band 32 px wide.
def stroke_size(width: int) -> int:
    """The brush or eraser size that paints a band `width` canvas pixels wide."""
    return max(1, round(width / 2))


LIVE_JS = "() => { window.__uniteLiveKick?.(); return []; }"


# gradio 6.31.0 answers a gr.skip() output (a prop update without props) with a new instance of the
# component for the session (Blocks.postprocess_data), which the next value sent to that output stores in
# the session's config under the new instance's own id, with its config, for good: with the conditions
# skipped between a run's first and last message, server memory grows with every run. An output that has
# not changed is sent again instead (gradio streams it as an empty diff); only a message whose outputs
# belong to another run (a superseded live run) still skips them.
class StreamedOutputs:
    """One run's messages for the page: UNCHANGED (unite_demo.studio.runs) becomes the value this output had in
    the run's last message, or gr.skip() where it had none or `skip` is set."""

    def __init__(self, unchanged):
        self.unchanged = unchanged
        self.last: dict[int, object] = {}

    def __call__(self, outputs: tuple, skip: bool = False) -> tuple:
        sent = []
        for i, value in enumerate(outputs):
            if value is self.unchanged:
                value = gr.skip() if skip or i not in self.last else self.last[i]
            else:
                self.last[i] = value
            sent.append(value)
        return tuple(sent)


# gradio 6.31.0 remembers the 10000 most recent sessions by default (Blocks.launch's state_session_capacity),
# each with a copy of the page's config: memory held for visitors long gone.
MAX_SESSIONS = 1000

# gradio keeps every image it sends in its cache folder (GRADIO_TEMP_DIR) for good unless Blocks'
# delete_cache says otherwise: hourly, files over a day old go (a page left open for hours keeps its
# downloads).
DELETE_CACHE = (3600, 86400)


def launch_options(environ, **page) -> dict:
    """demo.launch's arguments: this machine only (127.0.0.1) unless GRADIO_SERVER_NAME says otherwise,
    never a share link, the MAX_SESSIONS most recent sessions remembered (a session's state is only the
    world its page shows and the maps painted in the worlds it left: an older one is simply started
    afresh), the studio offered to MCP clients as well (mcp_server: gradio serves /generate, with its
    docstring, as an MCP tool at /gradio_api/mcp/, the same function and validation as the API; it needs
    requirements.txt's gradio[mcp]: where the `mcp` package is missing, the page starts without it and
    says so), and the page's own (upload limit, theme, css, js)."""
    mcp = importlib.util.find_spec("mcp") is not None
    if not mcp:
        print("MCP server off: the `mcp` package is missing (pip install -r requirements.txt installs it)")
    return dict(server_name=environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                server_port=int(environ.get("GRADIO_SERVER_PORT") or "7860"), share=False,
                state_session_capacity=MAX_SESSIONS, mcp_server=mcp, **page)


def on_spaces_gpu(fn):
    """On Hugging Face Spaces (ZeroGPU), fn wrapped in spaces.GPU so that its GPU work gets a GPU; elsewhere
    (no `spaces` package) fn itself."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)
