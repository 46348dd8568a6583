"""The pretrained worlds on the page and in the CLI, through the tiny random networks of
tests/tiny_sd15.py configured by the UNITE_* variables: the painter's ADE20K palette and legend, a
painted map reaching the seg expert as ADE20K class ids, the conditions shown in ADE20K colours, the
class picker, the world's own steps and guidance, `python -m unite_demo.generate --world`, and
(slow) the /generate API of a live server."""

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import WORLDS, request, run
from unite_demo import generate, limits
from unite_demo.limits import DEFAULTS
from unite_demo.studio import pages, results, runs
from unite_demo.studio.studio import Studio
from unite_demo.worlds import pretrained as sd15
from unite_demo.worlds import registry as worlds
from unite_demo.worlds.conditions import ConditionError
from unite_demo.worlds.faces.data import PALETTE_RGB
from unite_demo.worlds.faces.world import BUILTIN
from unite_demo.worlds.pretrained import PretrainedConfig
from unite_demo.worlds.pretrained.labels import ADE20K_COMMON, ADE20K_NAMES, ADE20K_RGB, imagenet_classes

from tiny_sd15 import SIZE, seg_rgb

ROOT = Path(__file__).resolve().parent.parent
ENV_VARS = [var for var, _ in sd15.ENV.values()]
SKY, GRASS, TREE, WALL = (ADE20K_NAMES.index(n) for n in ("sky", "grass", "tree", "wall"))


@pytest.fixture(scope="module")
def config(sd15_folders):
    return PretrainedConfig(sd15=str(sd15_folders["sd15"]), scribble=str(sd15_folders["scribble"]),
                            seg=str(sd15_folders["seg"]), dit=str(sd15_folders["dit"]), image_size=SIZE, device="cpu")


@pytest.fixture(scope="module", autouse=True)
def pretrained_env(config):
    """The UNITE_* variables point at the tiny networks for this module; the worlds are unloaded after."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ENV_VARS:
            mp.delenv(var, raising=False)
        for var, value in config.env().items():
            mp.setenv(var, value)
        yield config
        for name in sd15.WORLDS:
            WORLDS.unload(name)


def editor(rgb_or_rgba: np.ndarray) -> dict:
    """The value gr.ImageEditor hands to the function (type='numpy', image_mode='RGBA')."""
    a = np.asarray(rgb_or_rgba, np.uint8)
    if a.shape[2] == 3:
        a = np.dstack([a, np.full(a.shape[:2], 255, np.uint8)])
    return {"background": a, "layers": [], "composite": a}


def painted_scene() -> np.ndarray:
    """A 256 px painter canvas: sky above grass, a tree in a colour slightly off the palette, and an
    unpainted (transparent) corner, which reads as ADE20K's first class, wall."""
    canvas = np.dstack([seg_rgb("sky", "grass", limits.CANVAS), np.full((limits.CANVAS,) * 2, 255, np.uint8)])
    canvas[150:230, 40:120, :3] = np.clip(ADE20K_RGB[TREE].astype(int) + (12, -15, 10), 0, 255)
    canvas[:64, :64] = 0
    return canvas


# ---------------------------------------------------------------------------------------------
# The page's widgets per world

def test_world_page_gives_each_world_its_palette_legend_cards_and_defaults():
    assert worlds.available() == [BUILTIN, "sd15", "sd15-dit"]
    page = Studio(WORLDS).page("sd15")
    ade_hex = {"#%02x%02x%02x" % tuple(int(v) for v in c) for c in ADE20K_RGB}
    # The ADE20K palette, common classes first, every colour reachable once (skyscraper = road's colour).
    assert len(page.brush_colours) == len(set(page.brush_colours)) == len(ade_hex) == 149
    assert set(page.brush_colours) == ade_hex
    first = ["#%02x%02x%02x" % tuple(int(v) for v in ADE20K_RGB[ADE20K_NAMES.index(n)]) for n in ADE20K_COMMON]
    assert page.brush_colours[:len(first)] == first and page.default_colour == first[0]  # sky
    for name in ("sky", "tree", "chest of drawers", "flag", "road / skyscraper"):
        assert f">{name}<" in page.legend
    assert page.legend.index(">sky<") < page.legend.index(">wall<") < page.legend.index(">flag<")
    assert (page.blank == ADE20K_RGB[WALL]).all() and page.blank.shape == (limits.CANVAS, limits.CANVAS, 3)
    assert page.modalities == ("text", "sketch", "seg") and page.class_choices == [(pages.CLASS_OFF, "")]
    assert (page.steps, page.guidance) == (sd15.SD_DEFAULTS["steps"], sd15.SD_DEFAULTS["guidance"])

    dit = Studio(WORLDS).page("sd15-dit")
    assert "class" in dit.modalities and dit.brush_colours == page.brush_colours
    assert dit.class_choices[0] == (pages.CLASS_OFF, "") and len(dit.class_choices) == 1001
    assert ("goldfish", "goldfish") in dit.class_choices

    faces = Studio(WORLDS).page(BUILTIN)
    assert faces.brush_colours == pages.palette_hex() and faces.default_colour == pages.palette_hex()[1]
    assert faces.legend == pages.legend_html() and (faces.blank == PALETTE_RGB[0]).all()
    assert "class" not in faces.modalities and faces.class_choices == [(pages.CLASS_OFF, "")]
    assert (faces.steps, faces.guidance) == (DEFAULTS["steps"], DEFAULTS["guidance"])
    with pytest.raises(ConditionError, match="unknown world 'mars'; accepted: cartoon-faces, sd15, sd15-dit"):
        Studio(WORLDS).page("mars")


# ---------------------------------------------------------------------------------------------
# Painted map -> ADE20K class ids -> the seg expert; the conditions in ADE20K colours

def test_painted_ade20k_map_reaches_the_seg_expert_as_its_class_ids():
    world = WORLDS.get("sd15")
    req = request(world, seg=editor(painted_scene()), text="a cat", steps=2)
    ids = req.values.get("seg")
    assert ids.shape == (SIZE, SIZE) and set(np.unique(ids)) == {SKY, GRASS, TREE, WALL}
    assert (ids[:12, :12] == WALL).all() and (ids[20:30, 40:] == SKY).all() and (ids[50:, 40:] == GRASS).all()
    assert (ids[40:56, 12:28] == TREE).all()  # the off-palette green reads as the nearest class
    seg = world.conditions(req)["seg"]  # (1, 3, S, S): what ControlNet seg reads
    assert np.allclose(seg[0].permute(1, 2, 0).numpy() * 255, ADE20K_RGB[ids], atol=1e-3)
    assert (req.steps, req.guidance) == (2, sd15.SD_DEFAULTS["guidance"])  # guidance not given: the world's
    # Nothing painted but the unpainted class: the seg expert is off, and the notes say so.
    blank = request(world, seg=editor(Studio(WORLDS).page("sd15").blank), text="a cat")
    assert blank.values.get("seg") is None and any("segmentation map is blank" in n for n in blank.notes)


def test_conditions_view_shows_the_map_in_ade20k_colours_and_the_class_by_name():
    world = WORLDS.get("sd15-dit")
    req = request(world, seg=editor(painted_scene()), text="a cat", class_name="goldfish", r_class=2,
                               steps=2)
    views, caption = runs.conditions_view(req, world)
    seg_view = views["seg"]
    colours = {tuple(int(v) for v in c) for c in np.asarray(seg_view).reshape(-1, 3)}
    assert colours == {tuple(int(v) for v in ADE20K_RGB[k]) for k in (SKY, GRASS, TREE, WALL)}
    assert "class: goldfish (id 1)" in caption and "class x2" in caption
    assert "the text expert reads" not in caption  # CLIP has no attribute head to report


def test_class_picker_values_reach_the_class_expert():
    dit, faces = WORLDS.get("sd15-dit"), WORLDS.get(BUILTIN)
    req = request(dit, text="a cat", class_name="Goldfish", r_class=2.5, steps=2)
    assert req.values.get("class") == 1 and req.reliability["class"] == 2.5
    assert request(dit, class_name="207").values.get("class") == 207  # an id works too
    off = request(dit, text="a cat", class_name="", r_class=1.0)
    assert off.values.get("class") is None and "no class picked: the class expert is off" in off.notes
    with pytest.raises(ConditionError, match="unknown class name 'goldfsh'; did you mean goldfish"):
        request(dit, class_name="goldfsh")
    # The faces world ignores the hidden picker's empty value, and refuses a class.
    assert request(faces, text="a face", class_name="", r_class=1.0).values.get("class") is None
    with pytest.raises(ConditionError, match="class: this world has no class expert"):
        request(faces, text="a face", class_name="goldfish")
    with pytest.raises(ConditionError, match="no class expert"):
        request(WORLDS.get("sd15"), text="a cat", class_name="goldfish")


def test_run_streams_the_class_world_and_caches_by_class():
    cache = results.ResultCache()
    kw = {"seg": editor(painted_scene()), "text": "a cat", "steps": 2, "guidance": 5.0, "cache": cache}
    first = list(run("sd15-dit", class_name="goldfish", **kw))
    assert [u.step for u in first] == [1, 2, 2] and first[-1].done and not first[-1].cached
    assert first[-1].image.size == (limits.RESULT_SIZE, limits.RESULT_SIZE)
    assert "class: goldfish" in first[-1].caption
    other = list(run("sd15-dit", class_name="tench", **kw))
    assert not other[-1].cached and "class: tench" in other[-1].caption  # another class is another run
    assert list(run("sd15-dit", class_name="goldfish", **kw))[-1].cached
    assert len(imagenet_classes()) == 1000


# ---------------------------------------------------------------------------------------------
# python -m unite_demo.generate --world ... --class ...

def test_cli_generates_with_a_pretrained_world_and_its_defaults(tmp_path, capsys):
    seg = tmp_path / "scene.png"
    Image.fromarray(seg_rgb("sea", "sand", 128)).save(seg)
    out = tmp_path / "sd15.png"
    # No --steps: the world's own 25 steps (one preview per step).
    assert generate.main(["--world", "sd15", "--seg", str(seg), "--text", "a cat", "--out", str(out),
                          "--frames", str(tmp_path / "frames")]) == 0
    assert Image.open(out).size == (SIZE, SIZE)
    assert len(list((tmp_path / "frames").iterdir())) == sd15.SD_DEFAULTS["steps"]
    out = tmp_path / "dit.png"
    assert generate.main(["--world", "sd15-dit", "--text", "a cat", "--class", "goldfish", "--reliability",
                          "text=1,class=2", "--steps", "2", "--seed", "3", "--out", str(out)]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--world", "sd15", "--class", "goldfish"], r"^error: class: this world has no class expert; its modalities: "
                                                 r"text, sketch, seg$"),
    (["--world", "sd15-dit", "--class", "goldfsh"], r"^error: class: unknown class name 'goldfsh'"),
    (["--world", "sd15-dit", "--class", "1000"], r"class: expected a class id from 0 to 999, got 1000"),
])
def test_cli_refuses_bad_world_inputs_in_one_line(tmp_path, capsys, args, message):
    assert generate.main([*args, "--steps", "1", "--out", str(tmp_path / "x.png")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    assert not (tmp_path / "x.png").exists()


def test_cli_says_in_one_line_how_to_get_missing_weights(tmp_path, capsys, monkeypatch):
    WORLDS.unload("sd15")
    monkeypatch.setenv("UNITE_SD15", str(tmp_path / "nowhere"))
    assert generate.main(["--world", "sd15", "--text", "a cat", "--out", str(tmp_path / "x.png")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: world 'sd15' needs weights: set UNITE_DOWNLOAD=1")
    assert "now UNITE_SD15: no such folder" in lines[0] and "docs/pretrained-worlds.md" in lines[0]
    assert lines[0].endswith("; available here: cartoon-faces")  # sd15-dit shares SD 1.5
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------------------------------------
# The /generate API of a live server configured with the tiny worlds

@pytest.mark.slow
def test_live_server_offers_the_worlds_and_the_class_through_the_api(config, tmp_path):
    from gradio_client import Client, handle_file

    from scripts.media import serve

    scene = tmp_path / "scene.png"
    Image.fromarray(painted_scene()).save(scene)
    painted = {"background": handle_file(str(scene)), "layers": [], "composite": handle_file(str(scene)), "id": None}
    with serve(env={**config.env(), "OMP_NUM_THREADS": "1"}) as url:
        client = Client(url, verbose=False)
        params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]["parameters"]
        defaults = {p["parameter_name"]: p["parameter_default"] for p in params}
        assert defaults["class_name"] == "" and defaults["r_class"] == 1.0
        image, status, seg_view, _, caption, *_ = client.predict(world="sd15-dit", seg=painted, text="a cat",
                                                             class_name="goldfish", steps=2, api_name="/generate")
        assert "done" in status and "class: goldfish (id 1)" in caption
        colours = {tuple(c) for c in np.asarray(Image.open(seg_view).convert("RGB")).reshape(-1, 3)}
        assert colours == {tuple(int(v) for v in ADE20K_RGB[k]) for k in (SKY, GRASS, TREE, WALL)}
        assert "done" in client.predict(world="sd15", text="a cat", steps=2, api_name="/generate")[1]
        assert "done" in client.predict(steps=2, api_name="/generate")[1]  # the faces world, no class: as before
        with pytest.raises(Exception, match="no class expert"):
            client.predict(world="sd15", class_name="goldfish", steps=2, api_name="/generate")
        # In the browser: picking the world gives the painter ADE20K colours and a blank map; a sky
        # stroke reaches the segmentation expert as sky.
        from scripts.media import VIEWPORT, StudioPage, chromium

        with chromium() as browser:
            sp = StudioPage(browser.new_page(viewport=VIEWPORT), url).open()
            sp.page.get_by_label("World").click()
            sp.page.get_by_role("option", name="sd15", exact=True).click()
            sp.page.wait_for_function("() => /sky/.test(document.querySelector('#seg-legend').innerText)",
                                      timeout=30_000)
            wall = np.asarray(ADE20K_RGB[WALL], np.int16)
            for _ in range(120):  # the blank map (wall everywhere) reaches the painter; under load this takes a while
                shot = np.asarray(Image.open(io.BytesIO(sp.page.locator("#seg-painter canvas").first.screenshot()))
                                  .convert("RGB")).astype(np.int16)
                if (np.abs(shot - wall).max(-1) <= 8).mean() > 0.3:
                    break
                sp.page.wait_for_timeout(250)
            else:
                raise AssertionError("the painter never showed the sd15 world's blank map")
            sp.page.wait_for_timeout(500)  # and the brush
            sp.pick_colour(tuple(int(v) for v in ADE20K_RGB[SKY]))
            for y in (0.1, 0.2, 0.3):
                sp.stroke("#seg-painter", [(0.05, y), (0.95, y)])
            sp.set_number("steps", 2)
            sp.run()
            sp.wait_done()
            src = sp.page.locator("#cond-seg img").get_attribute("src")
            seen = np.asarray(Image.open(io.BytesIO(sp.page.request.get(src).body())).convert("RGB"))
            colours = {tuple(c) for c in seen.reshape(-1, 3)}
            assert colours == {tuple(int(v) for v in ADE20K_RGB[k]) for k in (SKY, WALL)}, colours
