"""Unite & Conquer studio: draw, paint and type, then watch experts trained on different data agree
on one image, step by step. Only the page lives here: the work is unite_demo.studio.Studio's, and the
adaptations to gradio are gradio_adapters'.

    .venv/bin/python app.py    # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)
"""

import dataclasses
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from gradio_adapters import (BRUSH_JS, DELETE_CACHE, LIVE_JS, SEND_JS, SHOW_JS, ResultImage,  # noqa: E402
                             SentDropdown, SentNumber, SentRadio, SentSlider, SentTextbox, StreamedOutputs,
                             canvas_twin, guard_file_moves, import_matplotlib_now, launch_options, on_spaces_gpu,
                             page_js, stroke_size)
from unite_demo.conditions import MODALITY_NAMES, ConditionError  # noqa: E402
from unite_demo.examples import load_examples  # noqa: E402
from unite_demo.inputs import Card, RunInputs  # noqa: E402
from unite_demo.limits import (CANVAS, CONCURRENT_RUNS, DEFAULTS, GUIDANCE, MAX_TEXT_CHARS, MAX_UPLOAD,  # noqa: E402
                               RELIABILITY, SEED, STEPS, SWEEP_VALUES)
from unite_demo.pages import CLASS_OFF, example_inputs, legend_html, palette_hex, random_seed  # noqa: E402
from unite_demo.runs import UNCHANGED  # noqa: E402
from unite_demo.sampler import SAMPLERS  # noqa: E402
from unite_demo.studio import Studio  # noqa: E402
from unite_demo.world import BUILTIN  # noqa: E402

SWEEP_TEXT = ", ".join(f"{v:g}" for v in SWEEP_VALUES)  # the reliability strip's values as the page shows them

STUDIO = Studio()
STUDIO.world(BUILTIN)  # experts loaded once and warmed up before the first visitor
EXAMPLE = example_inputs(0)  # the page's defaults form a complete example
guard_file_moves()
import_matplotlib_now()
PAGE_JS = page_js(debounce_s=0.35)  # live mode: a run starts this long after the last change

THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
PAINT_WIDTH, SKETCH_WIDTH = 16, 8  # the bands the painter's and the sketch's brushes paint, in canvas pixels
CSS = """
#result img, #cond-seg img, #cond-sketch img { image-rendering: auto; }
#result img { width: 100%; height: 100%; object-fit: contain; }
#strip img { width: 100%; height: auto; object-fit: contain; }
.card-header label, .card-header [data-testid=block-info] { white-space: nowrap; }
#progress { min-height: 3em; font-family: ui-monospace, monospace; }
.palette-legend { font-size: 0.9em; max-height: 9em; overflow-y: auto; }
"""


def generate(seg, sketch, text, seg_on, sketch_on, text_on, r_seg, r_sketch, r_text, seed, steps, guidance, sampler,
             world, live, class_name="", r_class=1.0, superres=True, view="product", sweep="text",
             sweep_values=SWEEP_TEXT, request: gr.Request = None):
    """Generate an image from a segmentation map, a sketch and a caption (and, in worlds with a class
    expert, an ImageNet class name or id; '' = off), streaming a preview per step; superres: the
    final image sharpened to 128 px by the world's final-image stage (cartoon-faces). view: 'product'
    (the image alone), 'experts' (each expert alone beside the product, a strip) or 'sweep' (the
    reliability of the modality `sweep` at each of `sweep_values` and as set, a strip), every image
    from the same noise.

    Returns (streamed): result image, progress line, segmentation map / sketch as the experts
    received them, caption and expert weights, the strip (None in the product view) and its labels,
    and with the final image the run saved for slides: its image (PNG) and its steps (GIF)."""
    cards = {"seg": Card(seg, seg_on, r_seg), "sketch": Card(sketch, sketch_on, r_sketch),
             "text": Card(text, text_on, r_text), "class": Card(class_name, True, r_class)}
    inputs = RunInputs(cards, seed=seed, steps=steps, guidance=guidance, sampler=sampler, world=world,
                       superres=superres, view=view, sweep=sweep, sweep_values=sweep_values)
    run = STUDIO.run(inputs, live=bool(live), session=request.session_hash if request is not None else None)
    sent = StreamedOutputs(UNCHANGED)
    try:
        for update in run:
            if update.step == 1 and not live and not update.superseded:
                for note in update.notes:
                    gr.Info(note)
            yield sent(update.outputs(), skip=update.superseded)
            if update.superseded:
                return
    except (ConditionError, FloatingPointError) as e:
        raise gr.Error(str(e), print_exception=False) from None
    finally:  # finished, failed, Stop or a client gone: the run stops with it
        run.close()


generate = on_spaces_gpu(generate)


def stop(shown, request: gr.Request):
    """Stop: the run is cancelled by the queue; a live run also sees its ticket superseded. The progress
    line says "stopped" only where a run was going (an idle page keeps its "done")."""
    return "stopped" if STUDIO.stop(request.session_hash) else shown


def new_ticket(request: gr.Request):
    """Live mode: the run of this page still going (if any) stops within one step."""
    STUDIO.stop(request.session_hash)


def sketch_uploaded(sketch, world):
    """A photo dropped on the sketch canvas: show the sketch derived from it (the canvas keeps the photo)."""
    derived, note = STUDIO.derive_sketch(sketch, world)
    if derived is None:
        return gr.update(value=None, visible=False)
    gr.Info(note)
    return gr.update(value=derived, visible=True)


def load_example(index):
    """The examples are cartoon faces: they bring that world back with them."""
    ex = example_inputs(int(index))
    return (ex.seg, ex.sketch, ex.text, True, True, True, ex.reliability["seg"], ex.reliability["sketch"],
            ex.reliability["text"], ex.seed, BUILTIN)


def world_page(name):
    try:
        return STUDIO.page(name)
    except ConditionError as e:
        raise gr.Error(str(e), print_exception=False) from None


def world_changed(name):
    """Another world: its painter palette (for BRUSH_JS) and legend, its cards, its class picker, its
    steps, guidance and reliabilities."""
    page = world_page(name)
    return (dataclasses.asdict(painter_brush(page.brush_colours, page.default_colour)), page.legend,
            gr.Column(visible="seg" in page.modalities), gr.Column(visible="sketch" in page.modalities),
            gr.Column(visible="text" in page.modalities), gr.Column(visible="class" in page.modalities),
            gr.Dropdown(choices=page.class_choices, value=""), page.steps, page.guidance,
            *(page.reliability.get(m, 1.0) for m in ("seg", "sketch", "text", "class")),
            gr.Dropdown(choices=sweep_choices(page.modalities), value=page.modalities[-1]))


def sweep_choices(modalities):
    return [(MODALITY_NAMES[m], m) for m in modalities]


def view_changed(view):
    """The strip and its saving show in the explain views; the swept modality and values in the sweep."""
    return gr.Column(visible=view != "product"), gr.Row(visible=view == "sweep")


def blank_map(name):
    """The world's blank map: when a world is picked (a map painted in another palette means nothing
    there) and on 'Start from a blank map'."""
    return world_page(name).blank


def painter_brush(colours, default):
    return gr.Brush(colors=colours, default_color=default, color_mode="fixed", default_size=stroke_size(PAINT_WIDTH))


def slider(limit, value, label, **kwargs):
    return SentSlider(limit.low, limit.high, value=value, step=limit.step, label=label, **kwargs)


def card_header(name, value):
    with gr.Row(equal_height=True, elem_classes=["card-header"]):
        on = gr.Checkbox(value=True, label=f"{name} on", scale=1, min_width=100, elem_id=f"{name}-on")
        rel = slider(RELIABILITY, value, "reliability", scale=3, elem_id=f"{name}-reliability")
    return on, rel


def canvas(component, value, label, brush, eraser_size, elem_id):
    return component(value=value, label=label, type="numpy", image_mode="RGBA", format="png",
                     sources=("upload", "clipboard"), brush=brush, eraser=gr.Eraser(default_size=stroke_size(eraser_size)),
                     canvas_size=(CANVAS, CANVAS), fixed_canvas=True, layers=False, transforms=(), interactive=True,
                     elem_id=elem_id)


def condition_view(label, elem_id, **kwargs):
    return ResultImage(label=label, format="png", interactive=False, buttons=["download"], elem_id=elem_id, **kwargs)


with gr.Blocks(title="Unite & Conquer studio", fill_width=True, delete_cache=DELETE_CACHE) as demo:
    gr.Markdown("## Unite & Conquer studio\nThree experts, each trained alone on one modality of cartoon faces "
                "(a segmentation map, a sketch, a caption), combined at every denoising step as a product of "
                "experts (Nair et al., CVPR 2023). Reliability sets how much each one is heard; 0 or an empty "
                "input switches it off.")
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                with gr.Column(variant="panel", min_width=280) as sketch_card:
                    sketch_on, r_sketch = card_header("sketch", EXAMPLE.reliability["sketch"])
                    sketch = canvas(gr.Sketchpad, EXAMPLE.sketch, "Sketch",
                                    gr.Brush(colors=["#000000"], color_mode="fixed",
                                             default_size=stroke_size(SKETCH_WIDTH)), 12, "sketch-canvas")
                    derived = condition_view("sketch derived from the photo (OpenCV Canny), as the expert gets it",
                                             "sketch-derived", visible=False, height=140)
                with gr.Column(variant="panel", min_width=280) as seg_card:
                    seg_on, r_seg = card_header("seg", EXAMPLE.reliability["seg"])
                    seg = canvas(gr.ImageEditor, EXAMPLE.seg, "Segmentation map",
                                 painter_brush(palette_hex(), palette_hex()[1]), 16, "seg-painter")
                    legend = gr.HTML(legend_html(), elem_id="seg-legend")
                    blank = gr.Button("Start from a blank map", size="sm")
            with gr.Column(variant="panel") as text_card:
                text_on, r_text = card_header("text", EXAMPLE.reliability["text"])
                text = SentTextbox(value=EXAMPLE.text, label="Caption", lines=2, max_length=MAX_TEXT_CHARS,
                                   elem_id="caption")
            with gr.Column(variant="panel", visible=False) as class_card:  # worlds with a class expert (sd15-dit)
                with gr.Row(equal_height=True):
                    class_name = SentDropdown([(CLASS_OFF, "")], value="", label="ImageNet class",
                                              allow_custom_value=True, filterable=True, scale=2, elem_id="class-name")
                    r_class = slider(RELIABILITY, 1.0, "class reliability", scale=3, elem_id="class-reliability")
            with gr.Row(equal_height=True):
                seed = SentNumber(value=EXAMPLE.seed, label="Seed", precision=0, minimum=SEED.low, maximum=SEED.high,
                                  min_width=90, elem_id="seed")
                dice = gr.Button("random seed", size="sm", scale=0, min_width=70, elem_id="dice")
                steps = slider(STEPS, DEFAULTS["steps"], "Steps", min_width=140, elem_id="steps")
                guidance = slider(GUIDANCE, DEFAULTS["guidance"], "Guidance scale", min_width=140, elem_id="guidance")
            with gr.Row(equal_height=True):
                sampler = SentDropdown(list(SAMPLERS), value=DEFAULTS["sampler"], label="Sampler", min_width=90)
                world = SentDropdown(STUDIO.available_worlds(), value=BUILTIN, label="World", min_width=130)
                superres = gr.Checkbox(value=True, label="Sharpen the final image (128 px)", min_width=110,
                                       elem_id="superres")
                live = gr.Checkbox(value=False, label="Live mode (re-run on every change)", min_width=110,
                                   elem_id="live")
        with gr.Column(scale=2):
            result = ResultImage(label="Result", type="pil", format="png", height=320, interactive=False,
                                 buttons=["download", "fullscreen"], elem_id="result")
            progress = gr.Markdown("press Run", label="progress", elem_id="progress", line_breaks=True)
            with gr.Row():
                run_btn = gr.Button("Run", variant="primary", elem_id="run")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
            view = SentRadio([("the product", "product"), ("each expert alone", "experts"),
                              ("a reliability strip", "sweep")], value="product", label="Show", elem_id="view")
            with gr.Row(equal_height=True, visible=False) as sweep_row:
                sweep = SentDropdown(sweep_choices(STUDIO.page(BUILTIN).modalities), value="text",
                                     label="reliability strip of", min_width=120, elem_id="sweep")
                sweep_values = SentTextbox(SWEEP_TEXT, label="at reliabilities",
                                           min_width=120, elem_id="sweep-values")
            with gr.Row():
                save_png = gr.DownloadButton("save the image (PNG)", size="sm", elem_id="save-png")
                save_gif = gr.DownloadButton("save its steps (GIF)", size="sm", elem_id="save-gif")
            gr.Markdown("**What the experts received**")
            with gr.Row():
                seg_view = condition_view("label map", "cond-seg", height=150)
                sketch_view = condition_view("binarised sketch", "cond-sketch", height=150)
            caption_view = gr.Textbox(label="caption and weights", lines=3, interactive=False, elem_id="cond-text")
    with gr.Column(visible=False, elem_id="strip-box") as strip_box:
        strip = ResultImage(label="the strip, every image from the same noise", type="pil", format="png",
                            interactive=False, buttons=["download", "fullscreen"], elem_id="strip")
        strip_caption = gr.Markdown(label="strip labels", elem_id="strip-caption")
    examples = gr.Dataset(label="Examples (click to fill every input)", components=["image", "textbox"],
                          samples=[[str(e.seg), e.text] for e in load_examples()], type="index",
                          elem_id="examples")

    # The canvases' hidden twins (gradio_adapters' TWINS), read by the server as the canvases themselves would be.
    seg_sent, sketch_sent = canvas_twin(EXAMPLE.seg, "segmentation map"), canvas_twin(EXAMPLE.sketch, "sketch")
    brush_sent = gr.JSON(visible=False)
    canvases, twins = [seg, sketch], [seg_sent, sketch_sent]
    inputs = [seg_sent, sketch_sent, text, seg_on, sketch_on, text_on, r_seg, r_sketch, r_text, seed, steps, guidance,
              sampler, world, live, class_name, r_class, superres, view, sweep, sweep_values]
    outputs = [result, progress, seg_view, sketch_view, caption_view, strip, strip_caption, save_png, save_gif]
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
    stop_btn.click(stop, progress, progress, queue=False, cancels=[run_evt, live_evt], api_visibility="private")
    view.change(view_changed, view, [strip_box, sweep_row], queue=False, api_visibility="private")
    dice.click(random_seed, None, seed, queue=False, api_visibility="private")
    blank.click(blank_map, world, seg_sent, queue=False, api_visibility="private").then(
        None, seg_sent, seg, js=SHOW_JS, api_visibility="private")
    world.change(world_changed, world, [brush_sent, legend, seg_card, sketch_card, text_card, class_card, class_name,
                                        steps, guidance, r_seg, r_sketch, r_text, r_class, sweep],
                 api_visibility="private").then(
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

demo.queue(default_concurrency_limit=CONCURRENT_RUNS, max_size=32)


if __name__ == "__main__":
    STUDIO.serve()  # CPU threads per run
    demo.launch(**launch_options(os.environ, max_file_size=MAX_UPLOAD, theme=THEME, css=CSS, js=PAGE_JS))
