"""`python -m unite_demo.generate` on the shipped world: determinism, frames, clear errors (the pretrained
worlds' --world and --class: tests/test_sd15_page.py)."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unite_demo import generate
from unite_demo.limits import GUIDANCE, STEPS
from unite_demo.worlds.faces.examples import load_examples

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def example():
    return load_examples()[0]


def _gen(example, out, *extra):
    return generate.main(["--seg", str(example.seg), "--sketch", str(example.sketch), "--text", example.text,
                          "--steps", "8", "--out", str(out), *extra])


def test_same_seed_same_bytes_other_seed_other_image(example, tmp_path):
    assert _gen(example, tmp_path / "a.png", "--seed", "0") == 0
    assert _gen(example, tmp_path / "b.png", "--seed", "0") == 0
    assert _gen(example, tmp_path / "c.png", "--seed", "1") == 0
    a, b, c = ((tmp_path / n).read_bytes() for n in ("a.png", "b.png", "c.png"))
    assert a == b
    assert a != c


def test_frames_one_preview_per_step(example, tmp_path):
    assert _gen(example, tmp_path / "out.png", "--frames", str(tmp_path / "frames"), "--steps", "5") == 0
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == [f"step_{k:03d}.png" for k in range(1, 6)]


def test_any_modality_may_be_left_out(example, tmp_path):
    assert generate.main(["--text", example.text, "--steps", "4", "--out", str(tmp_path / "t.png")]) == 0
    assert generate.main(["--sketch", str(example.sketch), "--steps", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert generate.main(["--steps", "4", "--out", str(tmp_path / "u.png")]) == 0
    assert all((tmp_path / n).exists() for n in ("t.png", "s.png", "u.png"))


@pytest.mark.parametrize("args, message", [
    (["--sketch", "missing.png"], "sketch: file not found"),
    (["--seg", "SKETCH"], "segmentation map: .* not palette colours"),
    (["--seg", "BROKEN"], "segmentation map: cannot read the image"),
    (["--reliability", "seg=nan"], "reliability of seg: expected a number from 0 to 3, got 'nan'"),
    (["--reliability", "colour=1"], "unknown modality 'colour'"),
    (["--steps", "2.5"], "steps: expected a whole number, got '2.5'"),
    (["--steps", "ten"], "steps: expected a whole number"),
    (["--guidance", "inf"], f"guidance: expected a number from 0 to {GUIDANCE.high:g}, got 'inf'"),
    (["--sampler", "euler"], "unknown sampler 'euler'"),
])
def test_bad_input_exits_non_zero_with_one_clear_line(example, tmp_path, args, message):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    args = [str(example.sketch) if a == "SKETCH" else str(broken) if a == "BROKEN" else a for a in args]
    proc = subprocess.run([sys.executable, "-m", "unite_demo.generate", *args, "--out", str(tmp_path / "x.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "x.png").exists()


def test_numbers_out_of_range_run_at_the_nearest_end_of_their_range_and_each_is_said_once(tmp_path, capsys):
    assert generate.main(["--text", "a face with red hair", "--steps", "500", "--reliability", "text=999",
                          "--guidance", "15", "--seed", "-1", "--out", str(tmp_path / "x.png")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if " is used" in line] == [
        "note: reliability of text: 999 is over the maximum 3; 3 is used",
        "note: guidance: 15 is over the maximum 10; 10 is used",
        f"note: steps: 500 is over the maximum {STEPS.high}; {STEPS.high} is used",
        "note: seed: -1 is under the minimum 0; 0 is used"]
    assert (tmp_path / "x.png").exists()
    assert generate.main(["--text", "a face", "--steps", "2", "--sweep", "text", "--values", "0,9",
                          "--out", str(tmp_path / "s.png")]) == 0
    assert "note: sweep value: 9 is over the maximum 3; 3 is used" in capsys.readouterr().err.splitlines()


def test_a_caption_the_text_expert_does_not_understand_is_left_out_with_a_note(tmp_path, capsys):
    assert generate.main(["--text", "зелёные глаза", "--steps", "2", "--out", str(tmp_path / "x.png")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert sum(n.startswith('note: the text expert did not understand: "зелёные глаза"') for n in notes) == 1


@pytest.mark.parametrize("args, message", [
    (["--class", "goldfish"], r"^error: class: this world has no class expert; its modalities: seg, sketch, text$"),
    (["--world", "mars"], r"^error: unknown world 'mars'; accepted: cartoon-faces, sd15, sd15-dit$"),
])
def test_unknown_world_and_class_without_a_class_expert_are_one_clear_line(tmp_path, capsys, args, message):
    assert generate.main([*args, "--steps", "2", "--out", str(tmp_path / "x.png")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    assert not (tmp_path / "x.png").exists()


def test_the_final_image_is_sharpened_to_128_px_unless_switched_off(example, tmp_path):
    from PIL import Image

    assert _gen(example, tmp_path / "sharp.png") == 0
    assert _gen(example, tmp_path / "own.png", "--no-superres") == 0
    assert _gen(example, tmp_path / "big.png", "--size", "256") == 0
    sizes = {n: Image.open(tmp_path / f"{n}.png").size for n in ("sharp", "own", "big")}
    assert sizes == {"sharp": (128, 128), "own": (32, 32), "big": (256, 256)}


def test_explain_and_sweep_write_labelled_strips_whose_last_image_is_the_run_as_set(example, tmp_path, capsys):
    assert _gen(example, tmp_path / "one.png") == 0
    assert _gen(example, tmp_path / "strip.png", "--explain", "--animation", str(tmp_path / "strip.gif")) == 0
    assert "segmentation alone · sketch alone · text alone · [product]" in capsys.readouterr().out
    one, strip = np.asarray(Image.open(tmp_path / "one.png")), np.asarray(Image.open(tmp_path / "strip.png"))
    side = one.shape[0]
    assert strip.shape[1] == 4 * side + 3 * 6 and strip.shape[0] > side
    inner = slice(4, side - 4)
    assert (strip[inner, -side:][:, inner] == one[inner, inner]).all()  # the product is the run alone, exactly
    with Image.open(tmp_path / "strip.gif") as anim:
        assert anim.n_frames == 9 and anim.size == (strip.shape[1], strip.shape[0])
    assert _gen(example, tmp_path / "sweep.png", "--sweep", "text", "--values", "0,3") == 0
    assert "text 0 · [text 2 (as set)] · text 3" in capsys.readouterr().out
    assert np.asarray(Image.open(tmp_path / "sweep.png")).shape[1] == 3 * side + 2 * 6
    assert _gen(example, tmp_path / "x.png", "--sweep", "class") == 2
    assert "sweep: 'class' is not a modality this run has an input for" in capsys.readouterr().err
    assert _gen(example, tmp_path / "x.png", "--sweep", "text", "--explain") == 2


@pytest.mark.slow
def test_reliability_maps_and_windows_from_the_command_line(example, tmp_path, capsys):
    left = np.full((64, 64), 255, np.uint8)
    left[:, :32] = 0  # seg not heard on the left half
    Image.fromarray(left).save(tmp_path / "left.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(tmp_path / "white.png")
    plain = ["--no-superres", "--steps", "4"]
    assert _gen(example, tmp_path / "plain.png", *plain) == 0
    assert _gen(example, tmp_path / "white_run.png", *plain, "--reliability-map", f"seg={tmp_path / 'white.png'}",
                "--window", "sketch=0,1") == 0
    assert _gen(example, tmp_path / "map.png", *plain, "--reliability-map", f"seg={tmp_path / 'left.png'}") == 0
    assert _gen(example, tmp_path / "both.png", *plain, "--reliability-map", f"seg={tmp_path / 'left.png'}",
                "--window", "sketch=0,0.6", "--window", "text=0.5,1") == 0
    assert _gen(example, tmp_path / "pairs.png", *plain, "--reliability-map", f"seg={tmp_path / 'left.png'}",
                "--window", "sketch=0,0.6,text=0.5,1") == 0
    image = {n: (tmp_path / n).read_bytes() for n in ("plain.png", "white_run.png", "map.png", "both.png",
                                                       "pairs.png")}
    assert image["white_run.png"] == image["plain.png"]  # white and (0, 1): today's run
    assert len({image["plain.png"], image["map.png"], image["both.png"]}) == 3
    assert image["pairs.png"] == image["both.png"]  # repeated flags or pairs in one
    capsys.readouterr()
    with pytest.raises(SystemExit):
        generate.main(["--help"])
    help_text = capsys.readouterr().out
    assert "--reliability-map NAME=IMAGE" in help_text and "--window NAME=START,END" in help_text


@pytest.mark.parametrize("args, message", [
    (["--window", "sketch=0.6,0.2"], r"^error: window of sketch: expected start,end with 0 <= start < end <= 1 \(the "
     r"fraction of the steps it is heard in, e.g. 0,0.6\), got '0.6,0.2'$"),
    (["--window", "sketch"], r"^error: window: expected name=value pairs like sketch=0,0.6, got 'sketch'$"),
    (["--reliability-map", "colour=x.png"], r"^error: reliability map: unknown modality 'colour'; accepted: seg, "
     r"sketch, text$"),
    (["--reliability-map", "seg=missing.png"], r"^error: reliability map of seg: file not found: missing.png$"),
    (["--window", "class=0,1"], r"^error: window of class: this world has no class expert; its modalities: seg, "
     r"sketch, text$"),
])
def test_bad_maps_and_windows_are_one_clear_line(example, tmp_path, capsys, args, message):
    assert _gen(example, tmp_path / "x.png", *args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    assert not (tmp_path / "x.png").exists()
    assert generate.main(["--text", "a face", "--window", "sketch=0,0.5", "--out", str(tmp_path / "y.png")]) == 2
    assert "window of sketch: no sketch input is given" in capsys.readouterr().err
