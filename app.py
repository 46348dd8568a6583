"""Unite & Conquer studio: draw, paint and type, then watch experts trained on different data agree
on one image, step by step. Only the page lives here: the work is unite_demo.studio.studio.Studio's, and the
adaptations to gradio are gradio_adapters'.

    .venv/bin/python app.py    # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)
"""

import dataclasses
import os

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from gradio_adapters import (BRUSH_JS, DELETE_CACHE, LIVE_JS, PHONE_WIDTH, RUN_JS, SEND_JS, SHOW_JS,  # noqa: E402
                             MapTwin, RangeSlider, ResultImage, SentDropdown, SentNumber, SentRadio, SentSlider,
                             SentTextbox, StreamedOutputs, canvas_twin, guard_file_moves, import_matplotlib_now,
                             launch_options, on_spaces_gpu, optional_parameters, page_js, stroke_size)
from unite_demo.worlds.conditions import ConditionError  # noqa: E402
from unite_demo.worlds.modalities import MODALITIES  # noqa: E402
from unite_demo.worlds.faces.examples import load_examples  # noqa: E402
from unite_demo.studio.inputs import RunInputs  # noqa: E402
from unite_demo.limits import (CANVAS, CONCURRENT_RUNS, DEFAULTS, GUIDANCE, MAX_UPLOAD,  # noqa: E402
                               RELIABILITY, SEED, STEPS, SWEEP_VALUES)
from unite_demo.studio.pages import (CLASS_OFF, blank_reliability_map, example_inputs, legend_html,  # noqa: E402
                                     painter_upload, palette_hex, random_seed, reliability_map_over,
                                     sketch_upload)
from unite_demo.studio.runs import UNCHANGED, image_views, outputs  # noqa: E402
from unite_demo.studio.threads import tune_malloc  # noqa: E402
from unite_demo.method.sampler import SAMPLERS  # noqa: E402
from unite_demo.studio.studio import Studio  # noqa: E402
from unite_demo.worlds.faces.world import BUILTIN  # noqa: E402

# A world picked: the painters show the new world's maps, only where the page moved to another world.
SHOW_IF_MOVED_JS = ("(moved, ...maps) => { if (moved) window.__uniteLiveKick?.(); "
                    "return maps.map((m) => moved ? m : {__type__: 'update'}); }")
SWEEP_TEXT = ", ".join(f"{v:g}" for v in SWEEP_VALUES)  # the reliability strip's values as the page shows them

STUDIO = Studio()  # holds no world until start() (or the first run) loads one
# Live mode: a run starts 0.35 s after the last change. A file given to a canvas goes to its hidden upload.
PAGE_JS = page_js(debounce_s=0.35, uploads={f"#{m.widget_id}": f"#{m.name}-upload" for m in MODALITIES.values()
                                            if m.widget in ("drawing", "painter")})

CANVAS_WIDGETS = ("drawing", "painter")  # the widgets drawn on a canvas, in the order the page shows them
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
STRIP_HEIGHT = 300  # px: the explain view's strip, placeholder, previews and final image alike
PAINT_WIDTH, SKETCH_WIDTH = 16, 8  # the bands the painter's and the sketch's brushes paint, in canvas pixels
MAP_WIDTH = 40  # the band a reliability map's brush paints: broad, as the experts' grid is coarse
# A reliability map's brush: black, not heard there; grey (black at half), heard half; the eraser: as the slider.
MAP_BRUSH = dict(colors=[("#000000", 1.0), ("#000000", 0.5)], default_color=("#000000", 1.0), color_mode="fixed")
CSS = f"""
#result img, #cond-seg img, #cond-sketch img {{ image-rendering: auto; }}
#result img, #conflict img {{ width: 100%; height: 100%; object-fit: contain; }}
#strip img {{ width: 100%; height: 100%; object-fit: contain; }}
.card-header label, .card-header [data-testid=block-info] {{ white-space: nowrap; }}
#progress {{ height: 1.6em; font-family: ui-monospace, monospace; white-space: nowrap; overflow: hidden;
            text-overflow: ellipsis; }}
#progress .wrap, #notes .wrap {{ display: none !important; }}
#outputs .wrap .error, #strip .wrap .error {{ display: none !important; }}  /* said in the notes instead */
#notes-box {{ height: 5.2em; overflow-y: auto; gap: 0; font-size: 0.9em; }}
#notes, #notes-box .prose {{ min-height: 0; }}
#page-notes:empty {{ display: none; }}
#strip-caption {{ min-height: 1.6em; }}
.map-legend {{ font-size: 0.85em; }}
.where > .label-wrap {{ padding-right: 6px; }}  /* its arrow, turned, stays inside the button */
.palette-legend {{ font-size: 0.9em; max-height: 9em; overflow-y: auto; }}
#seg-painter .image-container > .top-panel, #sketch-canvas .image-container > .top-panel {{ top: 2.7em !important; }}
#seg-painter [data-testid=block-label], #sketch-canvas [data-testid=block-label] {{ z-index: 20; }}
@media (max-width: {PHONE_WIDTH}px) {{
  #main {{ flex-direction: column; }}
  #inputs, #outputs {{ display: contents; }}
  #inputs > *, #outputs > * {{ order: 10; width: 100%; }}
  #inputs > .first {{ order: 1; }}
  #inputs > .second {{ order: 2; }}
  #outputs > .third:nth-child(1) {{ order: 3; }}
  #outputs > .third {{ order: 4; }}
  .card-header, .card-header > .form {{ flex-wrap: wrap !important; }}  /* the switch above its slider */
  .card-header > .form > * {{ flex: 1 1 100% !important; min-width: 100% !important; }}
  .settings-row, .settings-row > .form {{ flex-wrap: wrap !important; }}
  .settings-row > *, .settings-row > .form > * {{ min-width: 40% !important; flex: 1 1 40% !important; }}
  #result, #conflict {{ height: 240px !important; }}
  #notes-box {{ height: auto; max-height: 5.2em; }}
}}
"""


def generate(request: gr.Request = None, live=False, **params):
    """Generate an image from a segmentation map, a sketch and a caption (and, in worlds with a class
    expert, an ImageNet class name or id; '' = off), streaming a preview per step. Each modality has its
    value, an on switch (<name>_on), a reliability (r_<name>), where it is heard (map_<name>: an image,
    black = not heard there, white = heard at its reliability, any size; None: everywhere) and when
    (window_<name>: 'start,end', the fraction of the steps it is heard in; '0,1': every step);
    superres: the final image sharpened to 128 px by the world's final-image stage (cartoon-faces).
    view: 'product' (the image alone), 'experts' (each expert alone beside the product, a strip) or
    'sweep' (the reliability of the modality `sweep` at each of `sweep_values` and as set, a strip),
    every image from the same noise.

    Returns (streamed): result image, progress line, the conditions as the experts received them (an
    image per image modality, then the caption, class and expert weights in words), the strip (None in
    the product view) and its labels, with the final image the run saved for slides: its image (PNG)
    and its steps (GIF), the notes: a line per change made to the inputs (an expert off, a number put
    within its range, a caption cut or not understood), and last where the experts disagree at this
    step (a heat map over the image: dark where they agree, bright where they pull apart). Bad input
    raises an error naming it."""
    sent = StreamedOutputs(UNCHANGED)
    run = None
    try:
        inputs = RunInputs.from_params(params)
        run = STUDIO.run(inputs, live=bool(live), session=request.session_hash if request is not None else None)
        for update in run:
            named = update.outputs()
            yield sent(tuple(named[name] for name in outputs()), skip=update.superseded)
            if update.superseded:
                return
    except (ConditionError, FloatingPointError) as e:
        # Said where the notes are, the image shown so far kept; the API's caller gets the error itself.
        said = {name: UNCHANGED for name in outputs()} | {"progress": "not run", "notes": f"could not run: {e}"}
        yield sent(tuple(said[name] for name in outputs()), skip=True)
        raise gr.Error(str(e), visible=False, print_exception=False) from None
    finally:  # finished, failed, Stop or a client gone: the run stops with it
        if run is not None:
            run.close()


def stop(shown, request: gr.Request):
    """Stop: the run is cancelled by the queue; a live run also sees its ticket superseded. The progress
    line says "stopped" only where a run was going (an idle page keeps its "done")."""
    return "stopped" if STUDIO.stop(request.session_hash) else shown


def new_ticket(request: gr.Request):
    """Live mode: the run of this page still going (if any) stops within one step."""
    STUDIO.stop(request.session_hash)


def sketch_uploaded(path, world):
    """A file given to the sketch canvas (by the page's script, scaled to UPLOAD_SIDE at most): the canvas
    gets it fitted on white paper, and a photo shows the sketch derived from it; a file that is not an
    image leaves the canvas as it was. -> canvas value, derived view, notes, accepted, and the upload component
    emptied for the next file."""
    try:
        value = sketch_upload(path)
        derived, note = STUDIO.derive_sketch(value, world)
    except ConditionError as e:
        return None, gr.update(), f"not used: {e}", False, None
    shown = gr.update(value=derived, visible=True) if derived is not None else gr.update(value=None, visible=False)
    return value, shown, f"note: {note}" if note else "", True, None


def painter_uploaded(path, world):
    """A file given to the painter: a map in the world's palette is read onto the canvas (in those
    colours); anything else (a photo, a file that is not an image) is refused, the canvas kept.
    -> canvas value, notes, accepted, and the upload component emptied."""
    try:
        return painter_upload(path, STUDIO.world(world)), "", True, None
    except ConditionError as e:
        return None, f"not used: {e}", False, None


def world_page(name):
    try:
        return STUDIO.page(name)
    except ConditionError as e:
        raise gr.Error(str(e), print_exception=False) from None


def sweep_choices(modalities):
    return [(MODALITIES[m].label, m) for m in modalities]


def view_changed(view):
    """The strip and its saving show in the explain views; the swept modality and values in the sweep."""
    return gr.Column(visible=view != "product"), gr.Row(visible=view == "sweep")


def blank_map(name):
    """The world's blank map: on 'Start from a blank map' and Clear."""
    return world_page(name).blank


def blank_sketch(_world):
    """White paper: the sketch canvas on Clear."""
    return np.full((CANVAS, CANVAS, 3), 255, np.uint8)


def canvas_js(widget_id: str, fn: str) -> str:
    """A browser-side step that gives a canvas its value (fn: the step's JS function) and ends the page's
    note ('reading ...'), then puts the brush back in the visitor's hand (gradio 6.31.0's editor drops the
    tool when its image is replaced) and tells live mode that the canvas changed."""
    return (f"(...args) => {{ window.__uniteSay?.(''); const out = ({fn})(...args); setTimeout(() => {{ "
            f"document.querySelector('#{widget_id} button[aria-label=Brush]:not(.highlight)')?.click(); "
            f"window.__uniteLiveKick?.(); }}, 300); return out; }}")


def map_painter(guide, painted):
    """A map painter's value when its panel opens: what is painted so far over a faded view of `guide` (a
    canvas's value); a value that cannot be read leaves the painter as it is."""
    try:
        return reliability_map_over(guide, painted)
    except ConditionError:
        return gr.skip()


def uniform_again(guide):
    """"uniform again": nothing painted (heard everywhere, as its reliability says) and every step."""
    return map_painter(guide, None), "0,1"


def painter_brush(colours, default):
    return gr.Brush(colors=colours, default_color=default, color_mode="fixed", default_size=stroke_size(PAINT_WIDTH))


def slider(limit, value, label, **kwargs):
    return SentSlider(limit.low, limit.high, value=value, step=limit.step, label=label, **kwargs)


def card_header(m, value):
    with gr.Row(equal_height=True, elem_classes=["card-header"]):
        on = gr.Checkbox(value=True, label=f"{m.name} on", scale=1, min_width=100, elem_id=f"{m.name}-on")
        rel = slider(RELIABILITY, value, "reliability", scale=3, elem_id=f"{m.name}-reliability")
    return on, rel


def canvas(component, value, label, brush, eraser_size, elem_id, sources=("upload",), **kwargs):
    return component(value=value, label=label, type="numpy", image_mode="RGBA", format="png",
                     sources=sources, brush=brush, **kwargs,
                     eraser=gr.Eraser(default_size=stroke_size(eraser_size)),
                     canvas_size=(CANVAS, CANVAS), fixed_canvas=True, layers=False, transforms=(), interactive=True,
                     elem_id=elem_id)


def condition_view(label, elem_id, **kwargs):
    return ResultImage(label=label, format="png", interactive=False, buttons=["download"], elem_id=elem_id, **kwargs)


def starting_reliability(m) -> float:
    """A modality's slider to start from: the built-in world's default (limits.DEFAULTS), else its own."""
    return DEFAULTS["reliability"].get(m.name, m.default_reliability)


@dataclasses.dataclass
class Where:
    """A modality's "where & when it is heard" panel: its reliability map painter (a canvas, with its
    hidden twin that the server reads, and the hidden button that copies one to the other) and its window."""

    panel: object
    painter: object
    twin: object
    send: object
    uniform: object
    window: object


def where_and_when(m) -> Where:
    """The panel, closed: a map painted over a faded view of a drawing (black: not heard there), a button
    back to uniform (the map and the window), and the steps it is heard in."""
    with gr.Accordion("where & when it is heard", open=False, elem_id=f"{m.name}-where",
                      elem_classes=["where"]) as panel:
        painter = canvas(gr.ImageEditor, blank_reliability_map(), "paint where it is not heard",
                         gr.Brush(default_size=stroke_size(MAP_WIDTH), **MAP_BRUSH), MAP_WIDTH, f"{m.name}-map",
                         sources=(), height=300, elem_classes=["reliability-map"])
        gr.Markdown("black: not heard there · grey: heard half · erased: heard as its reliability says",
                    elem_classes=["map-legend"])
        window = RangeSlider("0,1", label="heard in", elem_id=f"{m.name}-window")
        uniform = gr.Button("uniform again", size="sm", elem_id=f"{m.name}-uniform")
    twin = MapTwin(value=None, label=f"reliability map of {m.name}", type="numpy", image_mode="RGBA", format="png",
                   visible=False)
    send = gr.Button("send the map", visible="hidden", elem_id=f"{m.name}-map-send")
    return Where(panel, painter, twin, send, uniform, window)


@dataclasses.dataclass
class Card:
    """One modality's widgets on the page."""

    modality: object
    box: object  # the card (hidden in worlds without this modality's expert)
    value: object  # the widget the server reads (a canvas's hidden twin, a text box, a picker)
    on: object = None
    reliability: object = None
    canvas: object = None  # a canvas, drawn on in the browser only
    extra: dict = dataclasses.field(default_factory=dict)  # a canvas's other widgets (legend, derived sketch)
    where: Where | None = None  # where & when it is heard


def canvas_card(m, example):
    """A painter or sketch card: its header, its canvas and the canvas's hidden twin (gradio_adapters' TWINS),
    read by the server as the canvas itself would be."""
    start = example.values.get(m.name)
    label = m.page_label or m.label
    with gr.Column(variant="panel", min_width=280) as box:
        on, rel = card_header(m, starting_reliability(m))
        if m.widget == "drawing":
            drawn = canvas(gr.Sketchpad, start, label, gr.Brush(colors=["#000000"], color_mode="fixed",
                                                               default_size=stroke_size(SKETCH_WIDTH)), 12,
                           m.widget_id)
            extra = {"derived": condition_view("sketch derived from the photo (OpenCV Canny), as the expert gets it",
                                               f"{m.name}-derived", visible=False, height=140)}
        else:
            drawn = canvas(gr.ImageEditor, start, label, painter_brush(palette_hex(), palette_hex()[1]), 16,
                           m.widget_id)
            extra = {"legend": gr.HTML(legend_html(), elem_id=f"{m.name}-legend"),
                     "blank": gr.Button("Start from a blank map", size="sm")}
        extra["upload"] = gr.File(visible="hidden", type="filepath", elem_id=f"{m.name}-upload")
        extra["accepted"] = gr.Checkbox(visible=False)  # whether its last upload was read (build_page)
        where = where_and_when(m)
    return Card(m, box, canvas_twin(start, label.lower()), on, rel, drawn, extra, where)


def build_page(run=generate) -> gr.Blocks:
    """The page: a card per modality of the registry (worlds.modalities), the settings, the result and the
    conditions as the experts got them; its events bound to STUDIO. `run` is generate as start() hands it
    (on ZeroGPU, wrapped for the GPU)."""
    example = example_inputs(0)  # the canvases and the caption start from a complete example
    modalities = list(MODALITIES.values())
    cards: dict[str, Card] = {}
    with gr.Blocks(title="Unite & Conquer studio", fill_width=True, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown("## Unite & Conquer studio\nThree experts, each trained alone on one modality of cartoon faces "
                    "(a segmentation map, a sketch, a caption), combined at every denoising step as a product of "
                    "experts (Nair et al., CVPR 2023). Reliability sets how much each one is heard; 0 or an empty "
                    "input switches it off.")
        with gr.Row(elem_id="main"):
            with gr.Column(scale=3, elem_id="inputs"):
                with gr.Row(elem_classes=["first"]):  # the canvases side by side, the drawing first
                    for m in sorted((m for m in modalities if m.widget in CANVAS_WIDGETS),
                                    key=lambda m: CANVAS_WIDGETS.index(m.widget)):
                        cards[m.name] = canvas_card(m, example)
                for m in modalities:
                    if m.widget == "caption":
                        with gr.Column(variant="panel", elem_classes=["second"]) as box:
                            on, rel = card_header(m, starting_reliability(m))
                            # No max_length: a longer caption reaches the validation, which says what it reads.
                            value = SentTextbox(value=example.values.get(m.name, ""), label=m.page_label or m.label,
                                                lines=2, elem_id=m.widget_id)
                            where = where_and_when(m)
                        cards[m.name] = Card(m, box, value, on, rel, where=where)
                    elif m.widget == "choice":  # worlds with a class expert (sd15-dit)
                        with gr.Column(variant="panel", visible=False, elem_classes=["second"]) as box:
                            with gr.Row(equal_height=True):
                                value = SentDropdown([(CLASS_OFF, "")], value="", label=m.page_label or m.label,
                                                     allow_custom_value=True, filterable=True, scale=2,
                                                     elem_id=m.widget_id)
                                rel = slider(RELIABILITY, starting_reliability(m), f"{m.name} reliability", scale=3,
                                             elem_id=f"{m.name}-reliability")
                            where = where_and_when(m)
                        cards[m.name] = Card(m, box, value, None, rel, where=where)
                with gr.Row(equal_height=True, elem_classes=["settings-row"]):
                    seed = SentNumber(value=DEFAULTS["seed"], label="Seed", precision=0, minimum=SEED.low,
                                      maximum=SEED.high, min_width=90, elem_id="seed")
                    dice = gr.Button("random seed", size="sm", scale=0, min_width=70, elem_id="dice")
                    steps = slider(STEPS, DEFAULTS["steps"], "Steps", min_width=140, elem_id="steps")
                    guidance = slider(GUIDANCE, DEFAULTS["guidance"], "Guidance scale", min_width=140,
                                      elem_id="guidance")
                with gr.Row(equal_height=True, elem_classes=["settings-row"]):
                    sampler = SentDropdown(list(SAMPLERS), value=DEFAULTS["sampler"], label="Sampler", min_width=90,
                                           elem_id="sampler")
                    world = SentDropdown(STUDIO.world_choices(), value=BUILTIN, label="World", min_width=130,
                                         elem_id="world")
                    superres = gr.Checkbox(value=True, label="Sharpen the final image (128 px)", min_width=110,
                                           elem_id="superres")
                    live = gr.Checkbox(value=False, label="Live mode (re-run on every change)", min_width=110,
                                       elem_id="live")
            with gr.Column(scale=2, elem_id="outputs"):
                shown = {}
                with gr.Row(equal_height=True, elem_classes=["third"], elem_id="result-row"):
                    shown["result"] = ResultImage(label="Result", type="pil", format="png", height=320,
                                                  interactive=False, buttons=["download", "fullscreen"],
                                                  elem_id="result", scale=3, min_width=160)
                    # Streamed beside the result: where the experts pull the image different ways at each step.
                    shown["conflict"] = ResultImage(label="where the experts disagree",
                                                    type="pil", format="png", height=320, interactive=False,
                                                    buttons=["fullscreen"], elem_id="conflict", scale=2,
                                                    min_width=120)
                shown["progress"] = gr.Markdown("press Run", label="progress", elem_id="progress",
                                                elem_classes=["third"])
                with gr.Row(elem_classes=["third"]):
                    run_btn = gr.Button("Run", variant="primary", min_width=100, elem_id="run")
                    stop_btn = gr.Button("Stop", variant="stop", min_width=100, elem_id="stop")
                with gr.Column(elem_id="notes-box", elem_classes=["third"]):  # a fixed height: the page holds still
                    shown["notes"] = gr.Markdown("", label="notes", elem_id="notes", line_breaks=True)
                    gr.HTML('<div id="page-notes"></div>', padding=False)  # the page's own (gradio_adapters.page_js)
                view = SentRadio([("the product", "product"), ("each expert alone", "experts"),
                                  ("a reliability strip", "sweep")], value="product", label="Show", elem_id="view")
                with gr.Row(equal_height=True, visible=False) as sweep_row:
                    builtin = STUDIO.page(BUILTIN).modalities
                    sweep = SentDropdown(sweep_choices(builtin), value=builtin[-1],
                                         label="reliability strip of", min_width=120, elem_id="sweep")
                    sweep_values = SentTextbox(SWEEP_TEXT, label="at reliabilities", min_width=120,
                                               elem_id="sweep-values")
                with gr.Row():
                    shown["save_png"] = gr.DownloadButton("save the image (PNG)", size="sm", elem_id="save-png")
                    shown["save_gif"] = gr.DownloadButton("save its steps (GIF)", size="sm", elem_id="save-gif")
                gr.Markdown("**What the experts received**")
                with gr.Row():
                    for name in image_views():
                        m = MODALITIES[name]
                        shown[f"{name}_view"] = condition_view(m.view_label or m.label, f"cond-{name}", height=150)
                shown["conditions"] = gr.Textbox(label="caption and weights", lines=4, max_lines=4, interactive=False,
                                                 elem_id="cond-text")  # a fixed height: nothing below moves
        with gr.Column(visible=False, elem_id="strip-box") as strip_box:
            # A fixed height, whatever the strip holds so far (none, previews, the final strip): nothing below moves.
            shown["strip"] = ResultImage(label="the strip, every image from the same noise", type="pil",
                                         format="png", interactive=False, buttons=["download", "fullscreen"],
                                         height=STRIP_HEIGHT, elem_id="strip")
            shown["strip_caption"] = gr.Markdown(label="strip labels", elem_id="strip-caption")
        examples = gr.Dataset(label="Examples (click to fill every input)", components=["image", "textbox"],
                              samples=[[str(e.seg), e.text] for e in load_examples()], type="index",
                              elem_id="examples")

        painters = [c for c in cards.values() if c.modality.widget == "painter"]
        canvases = [c.canvas for c in cards.values() if c.canvas is not None]
        twins = [c.value for c in cards.values() if c.canvas is not None]
        brush_sent = gr.JSON(visible=False)
        shown_world = gr.State(BUILTIN)  # the world the page shows (the dropdown may name one not available)
        kept_maps = gr.State({})  # the painters' maps of the worlds the visitor left, by world: they come back
        world_moved = gr.Checkbox(visible=False)  # whether the last pick showed another world
        # /generate's parameters by name, in the order positional callers know: the switchable modalities'
        # values, switches and reliabilities, the settings, the others' values and reliabilities, the views.
        in_order = [cards[m.name] for m in modalities]  # the registry's order
        switchable = [c for c in in_order if c.on is not None]
        others = [c for c in in_order if c.on is None]
        params = {**{c.modality.param: c.value for c in switchable},
                  **{c.modality.switch_param: c.on for c in switchable},
                  **{c.modality.reliability_param: c.reliability for c in switchable},
                  "seed": seed, "steps": steps, "guidance": guidance, "sampler": sampler, "world": world, "live": live}
        for c in others:
            params.update({c.modality.param: c.value, c.modality.reliability_param: c.reliability})
        params.update(superres=superres, view=view, sweep=sweep, sweep_values=sweep_values)
        wheres = [c for c in in_order if c.where is not None]  # where and when each is heard: the newest parameters
        for c in wheres:
            params.update({c.modality.map_param: c.where.twin, c.modality.window_param: c.where.window})
        map_twins = [c.where.twin for c in wheres]
        out = [shown[name] for name in outputs()]
        optional_parameters(run, [c.modality.map_param for c in wheres])  # no map: heard everywhere
        run_evt = run_btn.click(None, canvases, twins, js=RUN_JS, api_visibility="private").then(
            run, None, out, inputs_kwargs=params, api_name="generate", concurrency_id="generate",
            show_progress="hidden")
        # Live mode: any change (debounced in the browser, so no canvas is exported per stroke) presses the
        # hidden live button, whose run takes a new ticket first so that the run still going stops.
        live_go = gr.Button("live run", visible="hidden", elem_id="live-go")
        gr.on([w.change for w in params.values() if w not in [*twins, *map_twins]], None, None, None, js=LIVE_JS,
              api_visibility="private")
        live_evt = live_go.click(None, canvases, twins, js=SEND_JS, api_visibility="private").then(
            new_ticket, None, None, queue=False, show_progress="hidden", api_visibility="private").then(
            run, None, out, inputs_kwargs=params, trigger_mode="always_last", concurrency_id="generate",
            show_progress="hidden", api_visibility="private")
        stop_btn.click(stop, shown["progress"], shown["progress"], queue=False, cancels=[run_evt, live_evt],
                       show_progress="hidden", api_visibility="private")
        view.change(view_changed, view, [strip_box, sweep_row], queue=False, api_visibility="private")
        dice.click(random_seed, None, seed, queue=False, api_visibility="private")

        # Files given to a canvas reach the server through its hidden upload component (gradio_adapters'
        # UPLOAD_JS); the canvas shows what was read only when it was accepted, else it keeps the drawing.
        for c in cards.values():
            if c.canvas is None:
                continue
            upload, show_if = c.extra["upload"], canvas_js(c.modality.widget_id, "(value, ok) => ok ? value : "
                                                           "({__type__: 'update'})")
            if c.modality.widget == "drawing":
                upload.upload(sketch_uploaded, [upload, shown_world], [c.value, c.extra["derived"], shown["notes"],
                                                                     c.extra["accepted"], upload],
                              show_progress="hidden", api_visibility="private").then(
                    None, [c.value, c.extra["accepted"]], c.canvas, js=show_if, api_visibility="private")
                cleared = blank_sketch
                c.canvas.clear(lambda: gr.update(value=None, visible=False), None, c.extra["derived"], queue=False,
                               api_visibility="private")
            else:
                upload.upload(painter_uploaded, [upload, shown_world],
                              [c.value, shown["notes"], c.extra["accepted"], upload],
                              show_progress="hidden", api_visibility="private").then(
                    None, [c.value, c.extra["accepted"]], c.canvas, js=show_if, api_visibility="private")
                cleared = blank_map
                c.extra["blank"].click(blank_map, shown_world, c.value, queue=False, api_visibility="private").then(
                    None, c.value, c.canvas, js=canvas_js(c.modality.widget_id, "(value) => value"),
                    api_visibility="private")
            # Clear gives the canvas back as it starts (the blank map, white paper) with the brush in hand.
            c.canvas.clear(cleared, shown_world, c.value, queue=False, api_visibility="private").then(
                None, c.value, c.canvas, js=canvas_js(c.modality.widget_id, "(value) => value"),
                api_visibility="private")

        # Where and when each expert is heard. Opened, a panel's map painter shows a faded view of a drawing under
        # what is painted: the modality's own canvas, else the first one (the face's layout). The painter meets
        # only browser-side events (TWINS): a pointer released over it copies it to its twin (page_js).
        for c in wheres:
            w, guide = c.where, c if c.canvas is not None else next(d for d in cards.values() if d.canvas is not None)
            show_map = canvas_js(w.painter.elem_id, "(value) => value")
            w.panel.expand(None, [guide.canvas, w.painter], [guide.value, w.twin], js=SEND_JS,
                           api_visibility="private").then(
                map_painter, [guide.value, w.twin], w.twin, queue=False, show_progress="hidden",
                api_visibility="private").then(
                None, w.twin, w.painter, js=show_map, api_visibility="private")
            w.send.click(None, w.painter, w.twin, js=SHOW_JS, api_visibility="private")
            for back in (w.uniform.click, w.painter.clear):
                back(uniform_again, guide.value, [w.twin, w.window], queue=False, show_progress="hidden",
                     api_visibility="private").then(None, w.twin, w.painter, js=show_map, api_visibility="private")

        settings = [brush_sent, *(c.extra["legend"] for c in painters), *(c.box for c in cards.values()),
                    *(c.value for c in others), steps, guidance, *(c.reliability for c in cards.values()), sweep]

        def world_settings(page):
            """Another world's page: its painter palette (for BRUSH_JS) and legend, its cards, its class picker,
            its steps, guidance and reliabilities."""
            brush = dataclasses.asdict(painter_brush(page.brush_colours, page.default_colour))
            return (brush, *(page.legend for _ in painters),
                    *(gr.Column(visible=c.modality.name in page.modalities) for c in cards.values()),
                    *(gr.Dropdown(choices=page.class_choices, value="") for _ in others),
                    page.steps, page.guidance,
                    *(page.reliability.get(c.modality.name, c.modality.default_reliability) for c in cards.values()),
                    gr.Dropdown(choices=sweep_choices(page.modalities), value=page.modalities[-1]))

        def unchanged_settings():
            return tuple(gr.skip() for _ in settings)

        def world_picked(name, was, kept, *maps):
            """The World dropdown picked by the visitor. The same world: nothing changes. A world that cannot be
            loaded here: said, and the dropdown goes back. Another world: its page (said), the painters' maps
            of the world left kept for when the visitor comes back, the new world's own or its blank map."""
            if name == was:
                return was, was, kept, False, *(gr.skip() for _ in painters), gr.skip(), *unchanged_settings()
            try:
                page = STUDIO.page(name)
            except (ConditionError, OSError) as e:
                return was, was, kept, False, *(gr.skip() for _ in painters), f"not used: {e}", *unchanged_settings()
            kept = {**kept, was: [m.get("composite") if isinstance(m, dict) else m for m in maps]}  # what shows
            new_maps = kept.get(name) or [page.blank for _ in painters]
            note = (f"note: world {name}: its steps ({page.steps}), guidance ({page.guidance:g}) and reliabilities "
                    f"are set; the map painted in {was} comes back when {was} is picked again")
            return name, name, kept, True, *new_maps, note, *world_settings(page)

        painter_twins = [c.value for c in painters]
        world.input(None, canvases, twins, js=SEND_JS, api_visibility="private").then(
            world_picked, [world, shown_world, kept_maps, *painter_twins],
            [world, shown_world, kept_maps, world_moved, *painter_twins, shown["notes"], *settings], show_progress="hidden",
            api_visibility="private").then(
            None, brush_sent, [c.canvas for c in painters], js=BRUSH_JS, api_visibility="private").then(
            None, [world_moved, *painter_twins], [c.canvas for c in painters], js=SHOW_IF_MOVED_JS,
            api_visibility="private")
        filled = [c for c in cards.values() if c.modality.name in example.values]

        def load_example(index, was):
            """The examples are cartoon faces: they bring that world back with them, every modality on, heard
            everywhere (maps and windows uniform again)."""
            ex = example_inputs(int(index))
            back = world_settings(STUDIO.page(BUILTIN)) if was != BUILTIN else unchanged_settings()
            return (*(ex.values[c.modality.name] for c in filled), *(True for c in filled if c.on is not None),
                    *(ex.reliability.get(c.modality.name, starting_reliability(c.modality)) for c in filled),
                    ex.seed, BUILTIN, BUILTIN, *back, *(blank_reliability_map() for _ in wheres),
                    *("0,1" for _ in wheres))

        examples.click(load_example, [examples, shown_world],
                       [*(c.value for c in filled), *(c.on for c in filled if c.on is not None),
                        *(c.reliability for c in filled), seed, world, shown_world, *settings, *map_twins,
                        *(c.where.window for c in wheres)],
                       api_visibility="private").then(
            None, brush_sent, [c.canvas for c in painters], js=BRUSH_JS, api_visibility="private").then(
            None, [*twins, *map_twins], [*canvases, *(c.where.painter for c in wheres)], js=SHOW_JS,
            api_visibility="private")
    return demo


def start() -> gr.Blocks:
    """The start-up of `python app.py`, a Space and the tests; importing this module does none of it.
    The process's memory allocator is tuned for a long-running server, gradio's file moves are guarded,
    the built-in world's experts are loaded and warmed up before the first visitor, and the page is built
    with its queue."""
    tune_malloc()
    guard_file_moves()
    import_matplotlib_now()
    STUDIO.world(BUILTIN)
    demo = build_page(on_spaces_gpu(generate))
    demo.queue(default_concurrency_limit=CONCURRENT_RUNS, max_size=32)
    return demo


if __name__ == "__main__":
    demo = start()
    STUDIO.serve()  # CPU threads per run
    demo.launch(**launch_options(os.environ, max_file_size=MAX_UPLOAD, theme=THEME, css=CSS, js=PAGE_JS))
