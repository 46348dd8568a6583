"""Canaries: one per adaptation in gradio_adapters.py, each asserting the gradio behaviour it works
around. A canary that fails after a gradio upgrade says that its adaptation may be deleted (and the
tests of the page, tests/test_app.py and tests/test_server_hardening.py, say whether it still must)."""

import asyncio
import inspect
import os
import subprocess
import sys
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pydantic
import pytest
from gradio import processing_utils
from gradio.components.image_editor import EditorData
from gradio.context import LocalContext
from gradio.data_classes import FileData
from PIL import Image

import gradio_adapters

ROOT = Path(__file__).resolve().parent.parent


def test_gradio_rewrites_a_cached_image_in_place(tmp_path):  # -> ResultImage, CanvasTwin.postprocess
    img = Image.new("RGB", (8, 8), (200, 10, 10))
    path = Path(processing_utils.save_pil_to_cache(img, str(tmp_path), format="png"))
    inode = path.stat().st_ino
    path.write_bytes(b"x")  # what a client would be fetching
    assert processing_utils.save_pil_to_cache(img, str(tmp_path), format="png") == str(path)
    assert path.stat().st_ino == inode and path.read_bytes() != b"x"  # written again, in the same file


def test_our_cached_image_is_written_once_and_whole(tmp_path):
    img = Image.new("RGB", (8, 8), (200, 10, 10))
    path = Path(gradio_adapters.cache_image(img, str(tmp_path), "png"))
    inode = path.stat().st_ino
    assert gradio_adapters.cache_image(np.asarray(img), str(tmp_path), "png") == str(path)
    assert path.stat().st_ino == inode and Image.open(path).size == (8, 8)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no staging file left


def test_gradio_inputs_coerce_or_refuse_a_callers_value_in_their_own_words():  # -> AsSent
    with pytest.raises(gr.Error, match="Value 5 is greater than maximum value 3"):
        gr.Slider(0, 3).preprocess(5)
    with pytest.raises(gr.Error, match="maximum value"):
        gr.Number(minimum=0, maximum=10).preprocess(11)
    assert gr.Textbox().preprocess(5) == "5"
    with pytest.raises(gr.Error, match="not in the list of choices"):
        gr.Dropdown(["dpmpp", "ddim"]).preprocess("euler")
    assert gradio_adapters.SentSlider(0, 3).preprocess(5) == 5 and gradio_adapters.SentTextbox().preprocess(5) == 5


def test_our_components_keep_gradios_frontend_components():
    pairs = [(gradio_adapters.SentSlider(0, 1), gr.Slider(0, 1)), (gradio_adapters.SentNumber(), gr.Number()),
             (gradio_adapters.SentTextbox(), gr.Textbox()), (gradio_adapters.SentDropdown(["a"]), gr.Dropdown(["a"])),
             (gradio_adapters.ResultImage(), gr.Image()), (gradio_adapters.CanvasTwin(label="sketch"), gr.ImageEditor())]
    for ours, theirs in pairs:  # the same frontend component, given the same properties
        assert ours.get_block_name() == theirs.get_block_name()
        assert set(ours.get_config()) == set(theirs.get_config())


def test_gradio_editor_answers_a_wrong_shape_with_a_validation_error_naming_no_input():  # -> named_editor_data
    with pytest.raises(pydantic.ValidationError):
        EditorData.model_validate("a.png")
    with pytest.raises(gr.Error, match="sketch: expected an image editor value"):
        gradio_adapters.named_editor_data("sketch").model_validate("a.png")


def test_gradio_editor_decodes_a_file_of_any_size(tmp_path):  # -> CanvasTwin.preprocess
    wide = Image.new("RGBA", (4097, 1), (0, 0, 0, 255))
    wide.save(tmp_path / "wide.png")
    value = EditorData(background=FileData(path=str(tmp_path / "wide.png")), layers=[], composite=None)
    assert gr.ImageEditor(type="numpy").preprocess(value)["background"].shape[:2] == (1, 4097)
    with pytest.raises(gr.Error, match="sketch: the image is 4097x1; at most 4096x4096"):
        gradio_adapters.CanvasTwin(label="sketch").preprocess(value)


def moved(block, path: str):
    """gradio's own move of a caller's file for `block`, as in an event of a launched app."""
    with gr.Blocks() as demo:
        pass
    demo.has_launched = True
    token = LocalContext.blocks.set(demo)
    try:
        return asyncio.run(gradio_adapters.GRADIO_MOVE_FILES({"path": path, "meta": {"_type": "gradio.FileData"}},
                                                              block, check_in_upload_folder=True))
    finally:
        LocalContext.blocks.reset(token)


def test_gradio_refuses_a_file_not_uploaded_without_naming_the_input_and_downloads_urls(monkeypatch):
    editor = gr.ImageEditor()  # -> move_files_to_cache
    with pytest.raises(ValueError, match="it was not uploaded by a user") as refused:
        moved(editor, "/etc/passwd")
    assert not isinstance(refused.value, gr.Error)
    fetched = []

    async def download(url, cache_dir):
        fetched.append(url)
        return str(ROOT / "assets" / "examples" / "seg_0.png")

    monkeypatch.setattr(processing_utils, "async_ssrf_protected_download", download)
    moved(editor, "http://127.0.0.1:9/x.png")
    assert fetched == ["http://127.0.0.1:9/x.png"]


def test_gradio_asks_matplotlib_for_its_backend_around_every_event():  # -> import_matplotlib_now
    code = ("import sys; from gradio import utils\n"
            "with utils.MatplotlibBackendMananger():\n    pass\n"
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    assert out.stdout.strip() == "True", out.stderr[-2000:]


@pytest.mark.slow
def test_gradio_page_reuploads_an_editor_input_on_every_streamed_message():  # -> TWINS (SEND_JS, CanvasTwin)
    """A plain page: an ImageEditor as the input of a streaming event, run twice. gradio 6.31's page
    refreshes the loading status of every component of a finished event on each streamed message by
    asking it for its value, and the editor answers by uploading its canvas again: from the second run
    on, the uploads grow with the messages (measured: 6 for the first run, 46 for the second of 16
    messages). The studio's twins exist for this; once the second run uploads only once, they can go."""
    from scripts.media import chromium, free_port

    messages = 16

    def stream(value):
        for k in range(messages):
            time.sleep(0.1)
            yield f"message {k + 1}"

    with gr.Blocks() as demo:
        canvas = gr.ImageEditor(value=np.full((64, 64, 3), 200, np.uint8), type="numpy", elem_id="canvas")
        out = gr.Textbox(elem_id="out")
        gr.Button("go", elem_id="go").click(stream, canvas, out)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        with chromium() as browser:
            page = browser.new_page()
            uploads = []
            page.on("request", lambda r: uploads.append(r.url) if r.url.split("?")[0].endswith("/upload") else None)
            page.goto(url)
            counts = []
            for _ in range(2):
                before = len(uploads)
                page.locator("#go").click()
                page.wait_for_timeout(300)
                page.wait_for_function("() => document.querySelector('#out textarea')?.value === "
                                       f"'message {messages}'", timeout=30000)
                page.wait_for_timeout(500)
                counts.append(len(uploads) - before)
    finally:
        demo.close()
    print(f"canvas uploads per run of {messages} messages:", counts)
    assert counts[1] > messages  # uploads per streamed message, not once per run


def test_gradio_remembers_ten_thousand_sessions_by_default():  # -> MAX_SESSIONS in launch_options
    import inspect

    assert inspect.signature(gr.Blocks.launch).parameters["state_session_capacity"].default == 10000
    options = gradio_adapters.launch_options({}, max_file_size=5)
    assert options["state_session_capacity"] == gradio_adapters.MAX_SESSIONS < 10000
    assert options["server_name"] == "127.0.0.1" and options["share"] is False and options["max_file_size"] == 5


def test_gradio_keeps_a_component_for_good_after_each_skipped_output():  # -> StreamedOutputs
    from gradio_client import Client

    from scripts.media import free_port

    with gr.Blocks() as demo:
        box, button = gr.Textbox(), gr.Button()

        def three_messages(skip: bool):
            for message in ("first", gr.skip() if skip else "first", "last"):
                yield message

        button.click(lambda: (yield from three_messages(True)), None, box, api_name="skipping")
        button.click(lambda: (yield from three_messages(False)), None, box, api_name="resending")
    demo.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        grown = {}
        for api_name in ("skipping", "resending"):
            client = Client(demo.local_url, verbose=False, ssl_verify=False)
            for _ in range(4):
                assert client.predict(api_name=f"/{api_name}") == "last"
            session = demo.state_holder.session_data[client.session_hash]
            grown[api_name] = len(session.blocks_config.blocks) - len(demo.default_config.blocks)
    finally:
        demo.close()
    assert grown["skipping"] >= 3 and grown["resending"] == 0, grown  # a component more per run that skipped


def test_streamed_outputs_send_an_unchanged_output_again_and_skip_only_for_another_run():
    unchanged = object()
    sent = gradio_adapters.StreamedOutputs(unchanged)
    assert sent(("img1", "step 1", "seg")) == ("img1", "step 1", "seg")
    assert sent(("img2", "step 2", unchanged)) == ("img2", "step 2", "seg")
    skipped = sent((unchanged, "stopped", unchanged), skip=True)
    assert skipped[1] == "stopped" and all(gr_skip == gr.skip() for gr_skip in (skipped[0], skipped[2]))
    fresh = gradio_adapters.StreamedOutputs(unchanged)
    assert fresh((unchanged, "step 1"))[0] == gr.skip()  # nothing sent yet to repeat


def gradio_frontend() -> str:
    """gradio's built page scripts, as shipped in the installed package."""
    assets = Path(gr.__file__).parent / "templates" / "frontend" / "assets"
    return "\n".join(p.read_text(errors="replace") for p in assets.glob("Index-*.js"))


def test_gradio_stamps_brush_strokes_with_discs_whose_radius_is_the_size():  # -> stroke_size
    js = gradio_frontend()
    assert "circle(t.from_x,t.from_y,t.size)" in js  # a stroke's segment: discs of radius size along it
    assert gradio_adapters.stroke_size(16) == 8 and gradio_adapters.stroke_size(1) == 1


def test_gradio_closes_the_colour_pop_up_only_on_a_mousedown_outside_it():  # -> COLOUR_PICKED_JS
    js = gradio_frontend()
    assert "e&&!e.contains(n.target)&&!n.defaultPrevented&&t(n)};return document.addEventListener(`mousedown`" in js
    assert "'mousedown'" in gradio_adapters.COLOUR_PICKED_JS and "button.color" in gradio_adapters.COLOUR_PICKED_JS


def test_gradio_editor_has_no_hook_for_files_before_its_canvas_takes_them():  # -> UPLOAD_JS
    # The editor takes a file into its canvas in the browser, whatever it is and however large (the page's own
    # tests, tests/test_browser_visitor.py 2-4, show what that did); it offers no setting to check or scale one
    # first. A parameter for that would let UPLOAD_JS and the hidden upload components go.
    import inspect

    params = set(inspect.signature(gr.ImageEditor).parameters)
    assert not params & {"file_types", "max_file_size", "max_size", "upload_limit", "preprocess_upload"}, params
    assert "routeUpload" in gradio_adapters.UPLOAD_JS and "UPLOAD_SIDE" in gradio_adapters.UPLOAD_JS


def test_gradio_brush_colours_carry_no_names():  # -> SWATCH_NAMES_JS
    import inspect

    colours = inspect.signature(gr.Brush).parameters["colors"].annotation
    assert colours == "list[str | tuple[str, float]] | str | tuple[str, float] | None"  # a colour and an opacity
    assert "title" in gradio_adapters.SWATCH_NAMES_JS and "legend-item" in gradio_adapters.SWATCH_NAMES_JS


def test_gradio_slider_puts_a_typed_number_back_in_range_without_a_word():  # -> CLAMP_NOTES_JS
    js = gradio_frontend()
    assert "R.props.value=Math.min(Math.max(R.props.value,R.props.minimum),R.props.maximum)" in js  # on blur
    assert "is over the maximum" in gradio_adapters.CLAMP_NOTES_JS


def test_gradio_has_no_slider_with_two_handles():  # -> RangeSlider
    assert not hasattr(gr, "RangeSlider") and not hasattr(gr, "RangeSlider".lower())
    with pytest.raises((TypeError, ValueError)):
        gr.Slider(0, 1, value=[0, 0.6]).preprocess([0, 0.6])
    slider = gradio_adapters.RangeSlider("0,0.6", label="heard in")
    assert slider.preprocess("0.2,0.6") == "0.2,0.6" and slider.api_info()["type"] == "string"


def test_gradio_makes_a_parameter_optional_only_for_a_value_or_a_none_default():  # -> optional_parameters
    def fn(**params):
        return ""

    def optional_fn(**params):
        return ""

    gradio_adapters.optional_parameters(optional_fn, ["picture"])
    with gr.Blocks() as demo:
        picture, out = gr.Image(), gr.Textbox()
        gr.Button().click(fn, None, out, inputs_kwargs={"picture": picture}, api_name="plain")
        gr.Button().click(optional_fn, None, out, inputs_kwargs={"picture": picture}, api_name="optional")
    info = {e: demo.get_api_info()["named_endpoints"][f"/{e}"]["parameters"][0] for e in ("plain", "optional")}
    assert info["plain"]["parameter_has_default"] is False
    assert info["optional"]["parameter_has_default"] is True and info["optional"]["parameter_default"] is None


def test_a_map_twin_takes_a_plain_image_file_as_its_layer(tmp_path):
    data = gradio_adapters.named_editor_data("reliability map of seg", image_as_layer=True)
    got = data.model_validate({"path": str(tmp_path / "mask.png"), "meta": {"_type": "gradio.FileData"}})
    assert got.background is None and len(got.layers) == 1 and got.layers[0].path.endswith("mask.png")
    with pytest.raises(gr.Error, match="reliability map of seg: expected an image editor value"):
        data.model_validate("mask.png")


def test_optional_parameters_may_be_given_again():
    def fn(request=None, **params):
        return ""

    for _ in range(2):
        gradio_adapters.optional_parameters(fn, ["a", "b"])
    assert list(inspect.signature(fn).parameters) == ["request", "a", "b", "params"]
