"""Unite & Conquer studio: draw, paint and type, then watch experts trained on different data agree
on one image, step by step. Only the page lives here; the logic is in unite_demo.studio.

    python app.py          # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)
"""

import ctypes
import dataclasses
import io
import os
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pydantic  # noqa: E402
from gradio import processing_utils  # noqa: E402
from gradio.components.image_editor import EditorData  # noqa: E402
from gradio_client import utils as client_utils  # noqa: E402
from PIL import Image  # noqa: E402

from unite_demo import studio  # noqa: E402
from unite_demo.conditions import (  # noqa: E402
    MAX_RELIABILITY, MAX_SEED, MAX_TEXT_CHARS, ConditionError, check_image_file, check_number)
from unite_demo.sampler import SAMPLERS  # noqa: E402
from unite_demo.world import BUILTIN, DEFAULTS  # noqa: E402

try:  # Hugging Face Spaces (ZeroGPU): the GPU work runs inside spaces.GPU; elsewhere nothing changes.
    import spaces
except ImportError:
    spaces = None


def save_pil_to_cache(img, cache_dir, name="image", format="webp"):
    """gradio's processing_utils.save_pil_to_cache, but a file is written once, under a temporary name
    renamed into place. gradio 6.31 rewrites it in place on every use, and the cache is keyed by
    content: the same image in two messages (the conditions at step 1 and with the final image, two
    visitors with the same request) was truncated under a client still fetching it (a broken download,
    and h11 'Too little data for declared Content-Length' in the log)."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    path = (folder / f"{name}.{format}").resolve()
    if path.is_file() and path.stat().st_size == len(data):
        os.utime(path)  # gradio's cache cleaning ages files by their time
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


processing_utils.save_pil_to_cache = save_pil_to_cache  # also what save_img_array_to_cache calls

IMAGE_INPUTS: dict[int, str] = {}  # component id -> its name in messages (see guard_input)
_move_files_to_cache = processing_utils.async_move_files_to_cache


async def move_files_to_cache(data, block, *args, **kwargs):
    """gradio's processing_utils.async_move_files_to_cache; for the images of a run (before anything reads
    them), a file that was not uploaded to this server is refused with a message naming the input
    (gradio's own refusal was a server error), and a URL is never fetched: the studio works offline."""
    name = IMAGE_INPUTS.get(getattr(block, "_id", None))
    if name is None or not kwargs.get("check_in_upload_folder"):  # not reading an input sent by a caller
        return await _move_files_to_cache(data, block, *args, **kwargs)
    paths = []
    client_utils.traverse(data, lambda d: paths.append(d["path"]), client_utils.is_file_obj_with_meta)
    for path in paths:
        if client_utils.is_http_url_like(path):
            raise gr.Error(f"{name}: a URL ({path[:80]}) is not fetched; upload the image file instead "
                           "(gradio_client's handle_file does, given a local path)", print_exception=False)
    try:
        return await _move_files_to_cache(data, block, *args, **kwargs)
    except (OSError, ValueError) as e:  # gradio's InvalidPathError is a ValueError
        raise gr.Error(f"{name}: {e}", print_exception=False) from None


processing_utils.async_move_files_to_cache = move_files_to_cache  # what gradio calls before preprocessing

EXAMPLE = studio.example_inputs(0)  # the page's defaults form a complete example
studio.load_world(BUILTIN)  # experts loaded once and warmed up before the first visitor
try:  # gradio asks matplotlib for its backend around every event: import it now, not on the first Run (~1 s)
    import matplotlib

    matplotlib.get_backend()
except ImportError:
    pass

THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
CSS = """
#result img, #cond-seg img, #cond-sketch img { image-rendering: auto; }
#progress { min-height: 3em; font-family: ui-monospace, monospace; }
.palette-legend { font-size: 0.9em; max-height: 9em; overflow-y: auto; }
"""

# Live mode, in the browser: a change waits DEBOUNCE_S for the next one, then presses the hidden live
# button. The two canvases say they changed by a pointer released over them (see EDITORS below).
PAGE_JS = f"""() => {{
  window.__uniteLiveKick = () => {{
    const live = document.querySelector('#live input');
    if (!live || !live.checked) return;
    clearTimeout(window.__uniteLive);
    window.__uniteLive = setTimeout(() => document.querySelector('#live-go')?.click(), {int(studio.DEBOUNCE_S * 1000)});
  }};
  document.addEventListener('pointerup', (e) => {{
    if (e.target instanceof Element && e.target.closest('#seg-painter, #sketch-canvas')) window.__uniteLiveKick();
  }}, true);
}}"""
LIVE_JS = "() => { window.__uniteLiveKick?.(); return []; }"

# EDITORS. Gradio 6.31 asks every component that took part in a finished server event for its value
# again on every streamed message (to refresh its status), and an image editor answers by exporting
# its canvas and uploading it: four requests per preview, a sampler starved of CPU. So the sketch
# canvas and the painter only ever meet browser-side events, which copy their content to and from
# hidden twins (never rendered, so never asked); the server's events read and write the twins.
SEND_JS = "(...values) => values"  # canvases -> twins, just before a server event reads them
SHOW_JS = "(...values) => { window.__uniteLiveKick?.(); return values; }"  # twins -> canvases
BRUSH_JS = "(brush) => ({__type__: 'update', brush})"  # a world's painter palette -> the painter


def generate(seg, sketch, text, seg_on, sketch_on, text_on, r_seg, r_sketch, r_text, seed, steps, guidance, sampler,
             world, live, class_name="", r_class=1.0, request: gr.Request = None):
    """Generate an image from a segmentation map, a sketch and a caption (and, in worlds with a class
    expert, an ImageNet class name or id; '' = off), streaming a preview per step.

    Returns (streamed): result image, progress line, segmentation map / sketch as the experts
    received them, caption and expert weights."""
    session = request.session_hash if request is not None else None
    run = studio.run(world, seg=seg, sketch=sketch, text=text, seg_on=seg_on, sketch_on=sketch_on, text_on=text_on,
                     r_seg=r_seg, r_sketch=r_sketch, r_text=r_text, seed=seed, steps=steps, guidance=guidance,
                     sampler=sampler, live=bool(live), session=session, class_name=class_name, r_class=r_class)
    try:
        for update in run:
            if update.superseded:
                yield gr.skip(), update.status, gr.skip(), gr.skip(), gr.skip()
                return
            if update.step == 1 and not live:
                for note in update.notes:
                    gr.Info(note)
            if update.step == 1 or update.done:  # the conditions once at the start and with the final image
                yield update.image, update.status, update.seg, update.sketch, update.caption
            else:
                yield update.image, update.status, gr.skip(), gr.skip(), gr.skip()
    except (ConditionError, FloatingPointError) as e:
        raise gr.Error(str(e), print_exception=False) from None
    finally:  # finished, failed, Stop or a client gone: the sampler thread stops, the run's memory goes back
        run.close()
        release_memory()


def release_memory() -> None:
    """Give the memory a finished run freed back to the system. The runs allocate in the threads that
    serve them, and glibc keeps what each thread's arena freed while any small block in it lives on (the
    frames the result cache keeps): the server grew by 0.3 to 0.7 MB per request with canvases (+4 to +14 %
    over the 100 requests of scripts/load_test.py; with this, under 1 %). malloc_trim takes ~2 ms; without
    glibc this does nothing."""
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)


try:
    MALLOC_TRIM = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError):
    MALLOC_TRIM = None


if spaces is not None:
    generate = spaces.GPU(generate)


def stop(request: gr.Request):
    """Stop: the run is cancelled by the queue; a live run also sees its ticket superseded."""
    studio.TICKETS.bump(request.session_hash)
    return "stopped"


def new_ticket(request: gr.Request):
    """Live mode: the run of this page still going (if any) stops within one step."""
    studio.TICKETS.bump(request.session_hash)


def sketch_uploaded(sketch, world):
    """A photo dropped on the sketch canvas: show the sketch derived from it (the canvas keeps the photo)."""
    derived, note = studio.derive_sketch(sketch, world)
    if derived is None:
        return gr.update(value=None, visible=False)
    gr.Info(note)
    return gr.update(value=derived, visible=True)


def load_example(index):
    """The examples are cartoon faces: they bring that world back with them."""
    ex = studio.example_inputs(int(index))
    return (ex.seg, ex.sketch, ex.text, True, True, True, ex.reliability["seg"], ex.reliability["sketch"],
            ex.reliability["text"], ex.seed, BUILTIN)


def world_page(name):
    try:
        return studio.world_page(name)
    except (OSError, ValueError) as e:  # ConditionError is a ValueError, sd15.WeightsMissing an OSError
        raise gr.Error(str(e), print_exception=False) from None


def world_changed(name):
    """Another world: its painter palette (for BRUSH_JS) and legend, its cards, its class picker, its
    steps and guidance."""
    page = world_page(name)
    return (dataclasses.asdict(painter_brush(page.brush_colours, page.default_colour)), page.legend,
            gr.Column(visible="seg" in page.modalities), gr.Column(visible="sketch" in page.modalities),
            gr.Column(visible="text" in page.modalities), gr.Column(visible="class" in page.modalities),
            gr.Dropdown(choices=page.class_choices, value=""), page.steps, page.guidance)


def blank_map(name):
    """The world's blank map: when a world is picked (a map painted in another palette means nothing
    there) and on 'Start from a blank map'."""
    return world_page(name).blank


def painter_brush(colours, default):
    return gr.Brush(colors=colours, default_color=default, color_mode="fixed", default_size=16)


def guard_input(component, name, role="pass"):
    """What a caller sends for one input of a run (the page, or any JSON through the API) is judged by
    unite_demo.conditions, whose message names the input; nothing a caller sends is a server error.
    role "pass": the value goes to studio.run as sent (gradio's own reading would coerce it, or refuse
    it without naming it). "number": a number outside the widget's range is refused in gradio's words,
    anything else that is not a number in that range by conditions.check_number; then it goes on as sent
    (None: the world's default). "image": every file is checked from its header
    (conditions.check_image_file: readable, not oversized) before gradio decodes it."""
    preprocess = component.preprocess

    def checked(payload):
        try:
            if role == "number" and payload is not None:
                try:
                    preprocess(payload)  # the widget's range: "Value 5 is greater than maximum value 3."
                except gr.Error:
                    raise
                except Exception:  # noqa: BLE001 - not a number gradio reads (a string, a list): said below
                    pass
                check_number(name, payload, component.minimum, component.maximum)  # NaN, True, "abc", ...
            if role in ("pass", "number"):
                return payload
            for image in editor_files(component, payload):
                check_image_file(image, name)
            return preprocess(payload)
        except ConditionError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except gr.Error as e:
            raise gr.Error(f"{name}: {e.message}", print_exception=False) from None
        except (OSError, ValueError, TypeError, ArithmeticError, SyntaxError, Image.DecompressionBombError) as e:
            reading = "cannot read the image" if role == "image" else "cannot use the value"
            accepted = "; accepted: PNG, JPEG, WebP, BMP" if role == "image" else ""
            raise gr.Error(f"{name}: {reading} ({e}){accepted}", print_exception=False) from None

    component.preprocess = checked
    if role == "image":  # a value that is no editor value at all is refused before gradio reads it
        component.data_model = checked_editor_data(name)
        IMAGE_INPUTS[component._id] = name
    return component


def checked_editor_data(name):
    """gradio's EditorData, with a message naming the input for a value of the wrong shape (a string, a
    number, a list, junk layers) instead of a server error."""

    class Checked(EditorData):
        @classmethod
        def model_validate(cls, obj, *args, **kwargs):
            try:
                return super().model_validate(obj, *args, **kwargs)
            except pydantic.ValidationError:
                shown = repr(obj) if len(repr(obj)) <= 80 else repr(obj)[:77] + "..."
                raise gr.Error(f"{name}: expected an image editor value {{'background': image, 'layers': [images], "
                               f"'composite': image, 'id': None}} or None, got {shown}",
                               print_exception=False) from None

    return Checked


def editor_files(editor, payload):
    """The files of an image editor's value (uploaded paths, or the page's canvas blobs as bytes), unread."""
    if payload is None:
        return []
    parts = [payload.background, payload.composite, *payload.layers]
    if payload.id is not None and editor.blob_storage.get(payload.id) is not None:
        blobs = editor.blob_storage[payload.id]
        parts += [blobs.background, blobs.composite, *blobs.layers]
    return [io.BytesIO(p) if isinstance(p, (bytes, bytearray)) else p.path for p in parts if p is not None]


def card_header(name, value):
    with gr.Row(equal_height=True):
        on = gr.Checkbox(value=True, label=f"{name} on", scale=1, min_width=90, elem_id=f"{name}-on")
        rel = gr.Slider(0, MAX_RELIABILITY, value=value, step=0.05, label=f"{name} reliability", scale=3,
                        elem_id=f"{name}-reliability")
    return on, rel


with gr.Blocks(title="Unite & Conquer studio", fill_width=True) as demo:
    gr.Markdown("## Unite & Conquer studio\nThree experts, each trained alone on one modality of cartoon faces "
                "(a segmentation map, a sketch, a caption), combined at every denoising step as a product of "
                "experts (Nair et al., CVPR 2023). Reliability sets how much each one is heard; 0 or an empty "
                "input switches it off.")
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                with gr.Column(variant="panel", min_width=280) as sketch_card:
                    sketch_on, r_sketch = card_header("sketch", EXAMPLE.reliability["sketch"])
                    sketch = gr.Sketchpad(
                        value=EXAMPLE.sketch, label="Sketch", type="numpy", image_mode="RGBA", format="png",
                        sources=("upload", "clipboard"), brush=gr.Brush(colors=["#000000"], color_mode="fixed",
                                                                        default_size=8),
                        eraser=gr.Eraser(default_size=12), canvas_size=(studio.CANVAS, studio.CANVAS),
                        fixed_canvas=True, layers=False, transforms=(), interactive=True, elem_id="sketch-canvas")
                    derived = gr.Image(label="sketch derived from the photo (OpenCV Canny), as the expert gets it",
                                       format="png", interactive=False, visible=False, height=140,
                                       buttons=["download"], elem_id="sketch-derived")
                with gr.Column(variant="panel", min_width=280) as seg_card:
                    seg_on, r_seg = card_header("seg", EXAMPLE.reliability["seg"])
                    seg = gr.ImageEditor(
                        value=EXAMPLE.seg, label="Segmentation map", type="numpy", image_mode="RGBA", format="png",
                        sources=("upload", "clipboard"),
                        brush=painter_brush(studio.palette_hex(), studio.palette_hex()[1]),
                        eraser=gr.Eraser(default_size=16), canvas_size=(studio.CANVAS, studio.CANVAS),
                        fixed_canvas=True, layers=False, transforms=(), interactive=True, elem_id="seg-painter")
                    legend = gr.HTML(studio.legend_html(), elem_id="seg-legend")
                    blank = gr.Button("Start from a blank map", size="sm")
            with gr.Column(variant="panel") as text_card:
                text_on, r_text = card_header("text", EXAMPLE.reliability["text"])
                text = gr.Textbox(value=EXAMPLE.text, label="Caption", lines=2, max_length=MAX_TEXT_CHARS,
                                  elem_id="caption")
            with gr.Column(variant="panel", visible=False) as class_card:  # worlds with a class expert (sd15-dit)
                with gr.Row(equal_height=True):
                    class_name = gr.Dropdown([(studio.CLASS_OFF, "")], value="", label="ImageNet class",
                                             allow_custom_value=True, filterable=True, scale=2, elem_id="class-name")
                    r_class = gr.Slider(0, MAX_RELIABILITY, value=1.0, step=0.05, label="class reliability", scale=3,
                                        elem_id="class-reliability")
            with gr.Row(equal_height=True):
                seed = gr.Number(value=EXAMPLE.seed, label="Seed", precision=0, minimum=0, maximum=MAX_SEED,
                                 min_width=90, elem_id="seed")
                dice = gr.Button("random seed", size="sm", scale=0, min_width=70, elem_id="dice")
                steps = gr.Slider(1, 50, value=DEFAULTS["steps"], step=1, label="Steps", min_width=140,
                                  elem_id="steps")
                guidance = gr.Slider(0, 10, value=DEFAULTS["guidance"], step=0.1, label="Guidance scale",
                                     min_width=140, elem_id="guidance")
            with gr.Row(equal_height=True):
                sampler = gr.Dropdown(list(SAMPLERS), value=DEFAULTS["sampler"], label="Sampler", min_width=90)
                world = gr.Dropdown(studio.available_worlds(), value=BUILTIN, label="World", min_width=130)
                live = gr.Checkbox(value=False, label="Live mode (re-run on every change)", min_width=110,
                                   elem_id="live")
        with gr.Column(scale=2):
            result = gr.Image(label="Result", type="pil", format="png", height=320, interactive=False,
                              buttons=["download", "fullscreen"], elem_id="result")
            progress = gr.Markdown("press Run", elem_id="progress")
            with gr.Row():
                run_btn = gr.Button("Run", variant="primary", elem_id="run")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
            gr.Markdown("**What the experts received**")
            with gr.Row():
                seg_view = gr.Image(label="label map", format="png", interactive=False, height=150,
                                    buttons=["download"], elem_id="cond-seg")
                sketch_view = gr.Image(label="binarised sketch", format="png", interactive=False, height=150,
                                       buttons=["download"], elem_id="cond-sketch")
            caption_view = gr.Textbox(label="caption and weights", lines=3, interactive=False, elem_id="cond-text")
    examples = gr.Dataset(label="Examples (click to fill every input)", components=["image", "textbox"],
                          samples=[[str(e.seg), e.text] for e in studio.load_examples()], type="index",
                          elem_id="examples")

    # The canvases' hidden twins (see EDITORS), read by the server as the canvases themselves would be.
    seg_sent = gr.ImageEditor(value=EXAMPLE.seg, label="Segmentation map", type="numpy", image_mode="RGBA",
                              format="png", visible=False)
    sketch_sent = gr.ImageEditor(value=EXAMPLE.sketch, label="Sketch", type="numpy", image_mode="RGBA", format="png",
                                 visible=False)
    brush_sent = gr.JSON(visible=False)
    canvases, twins = [seg, sketch], [seg_sent, sketch_sent]
    inputs = [seg_sent, sketch_sent, text, seg_on, sketch_on, text_on, r_seg, r_sketch, r_text, seed, steps, guidance,
              sampler, world, live, class_name, r_class]
    outputs = [result, progress, seg_view, sketch_view, caption_view]
    # Every input of a run is judged by unite_demo.conditions under the name its messages use (see guard_input).
    for component, name, role in (
            (seg_sent, "segmentation map", "image"), (sketch_sent, "sketch", "image"), (text, "text", "pass"),
            (seed, "seed", "pass"), (steps, "steps", "number"), (guidance, "guidance", "number"),
            (r_seg, "reliability of seg", "number"), (r_sketch, "reliability of sketch", "number"),
            (r_text, "reliability of text", "number"), (r_class, "reliability of class", "number"),
            (sampler, "sampler", "pass"), (world, "world", "pass"), (class_name, "class", "pass")):
        guard_input(component, name, role)
    run_evt = run_btn.click(None, canvases, twins, js=SEND_JS, api_visibility="private").then(
        generate, inputs, outputs, api_name="generate", concurrency_id="generate", show_progress="minimal",
        show_progress_on=[result])
    # Live mode: any change (debounced in the browser, so no canvas is exported per stroke) presses the
    # hidden live button, whose run takes a new ticket first so that the run still going stops.
    live_go = gr.Button("live run", visible="hidden", elem_id="live-go")
    gr.on([w.change for w in inputs if w not in twins], None, None, None, js=LIVE_JS, api_visibility="private")
    live_evt = live_go.click(None, canvases, twins, js=SEND_JS, api_visibility="private").then(
        new_ticket, None, None, queue=False, show_progress="hidden", api_visibility="private").then(
        generate, inputs, outputs, trigger_mode="always_last", concurrency_id="generate", show_progress="hidden",
        api_visibility="private")
    stop_btn.click(stop, None, progress, queue=False, cancels=[run_evt, live_evt], api_visibility="private")
    dice.click(studio.random_seed, None, seed, queue=False, api_visibility="private")
    blank.click(blank_map, world, seg_sent, queue=False, api_visibility="private").then(
        None, seg_sent, seg, js=SHOW_JS, api_visibility="private")
    world.change(world_changed, world, [brush_sent, legend, seg_card, sketch_card, text_card, class_card, class_name,
                                        steps, guidance], api_visibility="private").then(
        None, brush_sent, seg, js=BRUSH_JS, api_visibility="private")
    world.input(blank_map, world, seg_sent, api_visibility="private").then(
        None, seg_sent, seg, js=SHOW_JS, api_visibility="private")
    seg.upload(None, None, None, js=LIVE_JS, api_visibility="private")
    # (The canvas is never an output of its own upload event: that would drop the strokes drawn later.)
    sketch.upload(None, sketch, sketch_sent, js=SEND_JS, api_visibility="private").then(
        sketch_uploaded, [sketch_sent, world], derived, api_visibility="private").then(
        None, None, None, js=LIVE_JS, api_visibility="private")
    sketch.clear(lambda: gr.update(value=None, visible=False), None, derived, queue=False, api_visibility="private")
    examples.click(load_example, examples, [seg_sent, sketch_sent, text, seg_on, sketch_on, text_on, r_seg, r_sketch,
                                            r_text, seed, world], api_visibility="private").then(
        None, twins, canvases, js=SHOW_JS, api_visibility="private")

demo.queue(default_concurrency_limit=2, max_size=32)
MAX_UPLOAD = "10mb"  # larger uploads are refused by the server (HTTP 413) before anything reads them
MAX_SESSIONS = 1000  # gradio keeps ~120 KB per session (a copy of the page's config); 10000 by default


def launch_options(environ=os.environ) -> dict:
    """demo.launch's arguments: this machine only (127.0.0.1) unless GRADIO_SERVER_NAME says otherwise,
    never a share link, uploads up to MAX_UPLOAD, the MAX_SESSIONS most recent sessions remembered
    (nothing here lives in a session's state: an older one is simply started afresh)."""
    return dict(server_name=environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                server_port=int(environ.get("GRADIO_SERVER_PORT") or "7860"), share=False,
                max_file_size=MAX_UPLOAD, state_session_capacity=MAX_SESSIONS, theme=THEME, css=CSS, js=PAGE_JS)


if __name__ == "__main__":
    studio.serve_setup()  # CPU threads per run
    demo.launch(**launch_options())
