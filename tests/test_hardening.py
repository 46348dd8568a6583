"""Hardening without a server: every odd input the page, the API and the command line can receive gets
one clear message from the one validation place (unite_demo.worlds.conditions, reached through
Studio.run), faults stop a run with a message, and the code loads weights safely.
The live-server half (fuzzing /generate, crowds, Stop, disconnects, files served) is
tests/test_server_hardening.py."""

import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import WORLDS, editor, header_only_png, run
from unite_demo import limits
from unite_demo.studio import results
from unite_demo.studio.studio import Studio
from unite_demo.worlds import registry as worlds
from unite_demo.worlds.conditions import MAX_SIDE, MAX_TEXT_CHARS, ConditionError, check_image_file
from unite_demo.worlds.faces.data import PALETTE_RGB

ROOT = Path(__file__).resolve().parent.parent


def saved(tmp_path: Path, name: str, img: Image.Image, **kw) -> Path:
    path = tmp_path / name
    img.save(path, **kw)
    return path


def face_map(size=256) -> np.ndarray:
    m = np.zeros((size, size, 3), np.uint8)
    m[size // 4:3 * size // 4, size // 4:3 * size // 4] = PALETTE_RGB[1]  # a skin square
    return m


@pytest.fixture(scope="module")
def world():
    return WORLDS.get()


def run_request(**kw):
    """The first update of a run (validation happens before it), with 1 step."""
    return next(iter(run(cache=results.ResultCache(), **{"steps": 1, **kw})))


# --- images: modes, sizes, damage ---------------------------------------------------------------

@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L", "LA", "P", "I;16", "I", "F", "1", "CMYK"])
def test_a_map_in_any_image_mode_is_read_as_the_same_classes(world, tmp_path, mode):
    rgb = Image.fromarray(face_map())
    if mode in ("L", "LA", "I;16", "I", "F", "1"):  # grey modes: a sketch, drawn dark on white
        img = Image.new("L", (256, 256), 255)
        img.paste(0, (40, 120, 216, 136))
        img = img.convert(mode) if mode != "I;16" else Image.fromarray((np.asarray(img, np.uint16) * 257))
        path = saved(tmp_path, "s.tiff" if mode in ("I", "F", "I;16") else "s.png", img)
        update = run_request(sketch=editor(str(path)), seg_on=False, text_on=False)
        seen = np.asarray(update.views["sketch"])
        assert seen.shape[:2] == (limits.CONDITION_SIZE,) * 2 and (seen > 127).any() and (seen < 128).any()
        return
    img = rgb.convert(mode) if mode != "P" else rgb.quantize(8)
    path = saved(tmp_path, "m.jpg" if mode == "CMYK" else "m.png", img, **({"quality": 100} if mode == "CMYK" else {}))
    update = run_request(seg=editor(str(path)), sketch_on=False, text_on=False)
    colours = {tuple(c) for c in np.asarray(update.views["seg"]).reshape(-1, 3)}
    assert colours == {tuple(PALETTE_RGB[0]), tuple(PALETTE_RGB[1])}


def test_tiny_images_work_and_huge_ones_are_refused_from_their_header(world, tmp_path):
    one = saved(tmp_path, "one.png", Image.new("RGB", (1, 1), tuple(int(v) for v in PALETTE_RGB[1])))
    assert run_request(seg=editor(str(one)), sketch_on=False, text_on=False).views["seg"] is not None  # all skin
    huge = header_only_png(tmp_path / "huge.png", 10_000, 10_000)
    for call in (lambda: check_image_file(huge, "segmentation map"),
                 lambda: run_request(seg=editor(str(huge)))):
        with pytest.raises(ConditionError, match=rf"segmentation map: the image is 10000x10000; at most "
                                                 rf"{MAX_SIDE}x{MAX_SIDE} is accepted"):
            call()
    check_image_file(one, "segmentation map")  # a good file passes


@pytest.mark.parametrize("name, content, message", [
    ("empty.png", b"", "cannot read the image"),
    ("noise.png", bytes(range(256)) * 8, "cannot read the image"),
    ("truncated.png", None, "damaged|cannot read"),
    ("text.png", b"hello, I am not a picture\n", "cannot read the image"),
])
def test_damaged_files_get_one_clear_message(world, tmp_path, name, content, message):
    if content is None:
        buf = io.BytesIO()
        Image.fromarray(face_map()).save(buf, "PNG")
        content = buf.getvalue()[:200]
    path = tmp_path / name
    path.write_bytes(content)
    for field in ("seg", "sketch"):
        with pytest.raises(ConditionError, match=rf"^(segmentation map|sketch)\b.*({message})") as e:
            run_request(**{field: editor(str(path))})
        assert str(tmp_path) not in str(e.value)  # the server's folders are never shown; the file's name may be
        if name != "truncated.png":  # its header is whole: only decoding finds the damage (above)
            with pytest.raises(ConditionError, match=message):
                check_image_file(path, field)


def test_empty_canvases_and_foreign_colours(world):
    white = np.full((256, 256, 3), 255, np.uint8)
    clear = np.zeros((256, 256, 4), np.uint8)
    update = run_request(seg=editor(clear), sketch=editor(white), text="")
    assert update.views["seg"] is None and update.views["sketch"] is None  # all off: the page says so
    said = "\n".join(update.notes)  # the notes have their own place, not the progress line
    assert "sketch" in said and "empty" in said
    odd = face_map()
    odd[:64, :64] = (13, 250, 99)  # not a palette colour: read as its nearest class, never blended
    colours = {tuple(c) for c in np.asarray(run_request(seg=editor(odd)).views["seg"]).reshape(-1, 3)}
    assert colours <= {tuple(c) for c in PALETTE_RGB}


# --- text, numbers, names -----------------------------------------------------------------------

@pytest.mark.parametrize("text, read", [("", False), ("   ", False), ("a face with red hair", True),
                                        ("赤い髪の顔", False), ("وجه بشعر أحمر", False), ("🙂 red hair 👓", True),
                                        ("tab\tand\nnewline", False), ("red hair " * 111, True)])
def test_captions_in_any_script_or_length_up_to_the_limit_are_taken(world, text, read):
    update = run_request(text=text)
    assert update.image is not None
    said = " ".join(update.notes)
    if not text.strip():
        assert "caption is empty" in said
    elif read:  # words the text expert knows: read, whatever else is in the caption
        assert "the text expert did not understand" not in said and "(no text" not in update.caption
    else:  # other scripts, words it never saw: left out, in words
        assert f'the text expert did not understand: "{" ".join(text.split())}"' in said


def test_a_caption_over_the_limit_is_cut_to_it_and_said(world):
    update = run_request(text="red hair " * 200)  # 1,799 characters once the last space is dropped
    assert update.caption.startswith("red hair red hair") and len(update.caption.split("\n\n")[0]) == MAX_TEXT_CHARS
    assert [n for n in update.notes if "characters" in n] == ["text: 1,799 characters; the first 1,000 are read"]
    update = run_request(text="a face\x00 with\x1b a null byte")  # control characters are dropped
    assert update.caption.startswith("a face with a null byte")


BAD_NUMBERS = [math.nan, math.inf, -math.inf, "abc", None, [1], {"a": 1}, True]
OUT_OF_RANGE = [-1, 1e308, 2**70, 10**400]  # finite: set to the nearest end of the range, with a note
FIELDS = {"r_seg": "reliability of seg", "r_sketch": "reliability of sketch", "r_text": "reliability of text",
          "guidance": "guidance", "steps": "steps", "seed": "seed"}


@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize("value", [*BAD_NUMBERS, "3"], ids=repr)
def test_bad_numbers_name_the_field_and_the_range(world, field, value):
    if (field, value) in (("steps", None), ("guidance", None)) or (field.startswith("r_") and value is None):
        return  # None means "the default" for these: checked below
    if field in ("r_seg", "r_sketch", "r_text", "guidance") and value == "3":
        return  # a number in a string is read as that number (gradio_client may send it so)
    with pytest.raises(ConditionError, match=rf"^{FIELDS[field]}: expected .*(from|number)"):
        run_request(**{field: value})


@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=repr)
def test_finite_numbers_out_of_range_are_set_to_the_nearest_end_and_said(world, field, value):
    limit = {"guidance": limits.GUIDANCE, "steps": limits.STEPS, "seed": limits.SEED}.get(field, limits.RELIABILITY)
    end = limit.low if value < 0 else limit.high
    if field == "steps" and end == limit.high:
        return  # a 50-step run: tests/test_studio.py and tests/test_cli.py run one
    update = run_request(**{field: value})
    assert update.image is not None
    (said,) = [n for n in update.notes if n.startswith(f"{FIELDS[field]}: ")]
    shown = f"{end:g}" if field != "seed" else str(int(end))
    assert said.endswith(f"is {'under the minimum' if value < 0 else 'over the maximum'} {shown}; {shown} is used")


def test_none_numbers_take_the_defaults(world):
    update = run_request(r_seg=None, r_sketch=None, r_text=None, guidance=None)
    assert update.image is not None


@pytest.mark.parametrize("kw, pattern", [
    ({"sampler": "euler"}, r"sampler: unknown sampler 'euler'; accepted: dpmpp, unipc, ddim"),
    ({"sampler": None}, r"sampler: unknown sampler None"),
    ({"world_name": "mars"}, r"world: unknown world 'mars'; accepted: cartoon-faces"),
    ({"world_name": ""}, r"world: unknown world ''"),
])
def test_unknown_names_are_listed_with_what_is_accepted(world, kw, pattern):
    with pytest.raises(ConditionError, match=pattern):
        run_request(**kw)


# --- faults -------------------------------------------------------------------------------------

def test_a_non_finite_value_during_sampling_stops_the_run_with_a_message(world, monkeypatch):
    expert = world.experts[0]
    real = expert.denoiser.forward

    def broken(*args):
        return real(*args) * float("nan")

    monkeypatch.setattr(expert.denoiser, "forward", broken)
    with pytest.raises(FloatingPointError, match=r"non-finite values at step 1"):
        list(run(steps=3, cache=results.ResultCache(), seed=5))
    monkeypatch.setattr(expert.denoiser, "forward", real)
    assert list(run(steps=2, cache=results.ResultCache(), seed=5))[-1].done  # the world still works


def test_a_world_whose_weights_fail_to_load_says_so_and_the_others_keep_working(world, tmp_path, monkeypatch,
                                                                                    sd15_folders):
    from unite_demo.worlds import pretrained as sd15

    from tiny_sd15 import write_tiny_models

    folders = write_tiny_models(tmp_path / "broken")
    unet = next(Path(folders["sd15"]).rglob("unet/*.safetensors"))
    unet.write_bytes(b"this is not a safetensors file")
    for var, _ in sd15.ENV.values():
        monkeypatch.delenv(var, raising=False)
    env = sd15.PretrainedConfig(sd15=str(folders["sd15"]), scribble=str(folders["scribble"]),
                                seg=str(folders["seg"]), dit=str(folders["dit"]), image_size=64, device="cpu").env()
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    WORLDS.unload("sd15")
    try:
        assert "sd15" in worlds.available()  # offered: its files are there
        for call in (lambda: Studio(WORLDS).page("sd15"), lambda: run_request(world_name="sd15", text="a cat")):
            with pytest.raises(ConditionError, match=r"world: sd15 could not be loaded \([\s\S]*\); the other worlds "
                                                     r"still work"):
                call()
        assert run_request(text="a face").image is not None  # the built-in world is unaffected
    finally:
        WORLDS.unload("sd15")


# --- security -----------------------------------------------------------------------------------

def source_files():
    return [ROOT / "app.py", ROOT / "gradio_adapters.py", *(ROOT / "unite_demo").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]


def test_no_pickle_loading_and_no_remote_code_anywhere_in_the_code():
    pattern = re.compile(r"torch\.load\(|import pickle|pickle\.load|trust_remote_code\s*=\s*True|weights_only\s*=\s*False"
                         r"|allow_pickle\s*=\s*True")
    offenders = [f"{p.name}:{k}" for p in source_files() for k, line in enumerate(p.read_text().splitlines(), 1)
                 if pattern.search(line) and not SAFE_LOAD.search(line)]
    assert offenders == []
    # The one load of a pickle: the one-time conversion of pickled hub weights, tensors only.
    conversions = [p.name for p in source_files() if SAFE_LOAD.search(p.read_text())]
    assert conversions == ["convert_to_safetensors.py"]


SAFE_LOAD = re.compile(r"torch\.load\([^)]*weights_only=True\)")


def test_pretrained_weights_load_from_safetensors_only(tmp_path, monkeypatch):
    from diffusers import UNet2DConditionModel

    from unite_demo.worlds import pretrained as sd15

    tiny = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                norm_num_groups=8, attention_head_dim=4)
    tiny.save_pretrained(tmp_path / "pickled", safe_serialization=False)  # a .bin (pickle) file only
    tiny.save_pretrained(tmp_path / "safe")
    config = sd15.PretrainedConfig(device="cpu")
    args = (UNet2DConditionModel, None, config, torch.device("cpu"), torch.float32)
    assert sd15.load_net(UNet2DConditionModel, str(tmp_path / "safe"), *args[1:]) is not None
    with pytest.raises(Exception, match=r"safetensors|\.safetensors"):
        sd15.load_net(UNet2DConditionModel, str(tmp_path / "pickled"), *args[1:])


@pytest.mark.parametrize("value", ["yes", 1, 0.0, [True]])
def test_the_superres_switch_takes_true_or_false_only(world, value):
    with pytest.raises(ConditionError, match=r"superres: expected true or false, got"):
        world.request(text="a face", superres=value)
    assert world.request(text="a face", superres=None).superres is True
    assert world.request(text="a face", superres=False).superres is False
