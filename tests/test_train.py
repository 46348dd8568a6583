"""Tiny train-then-sample smoke test: the training script, resume, export, the world loader."""

import csv
import json

import pytest
import torch

from unite_demo.worlds.faces.data import make_face, seg_to_rgb
from unite_demo.worlds.faces.model import load_face_unet, read_metadata
from unite_demo.worlds.faces.training import train
from unite_demo.worlds.faces.world import load_faces_world

TINY = ["--size", "16", "--channels", "16", "32", "32", "--batch", "8", "--log-every", "5", "--save-every", "1000",
        "--warmup", "5", "--caption-set", "192", "--caption-steps", "50"]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    assets = root / "assets"
    for expert in ("seg", "sketch", "text", "joint"):
        out = root / "ck" / expert
        train.main(["--expert", expert, "--steps", "30", "--out", str(out), *TINY])
        train.main(["--expert", expert, "--export", "--out", str(out), "--assets", str(assets)])
    return root, assets


def test_loss_goes_down_and_training_resumes(tiny_world):
    root, _ = tiny_world
    rows = list(csv.DictReader(open(root / "ck" / "seg" / "loss.csv")))
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 6 and losses[-1] < losses[0]
    train.main(["--expert", "seg", "--steps", "5", "--out", str(root / "ck" / "seg"), *TINY])
    rows = list(csv.DictReader(open(root / "ck" / "seg" / "loss.csv")))
    assert int(rows[-1]["step"]) == 35


def test_resume_continues_exactly_where_it_stopped(tmp_path, capsys):
    """10 steps in one go == 5 steps, stop, 5 more (optimizer state and data order restored)."""
    train.main(["--expert", "text", "--steps", "10", "--out", str(tmp_path / "a"), *TINY])
    train.main(["--expert", "text", "--steps", "5", "--out", str(tmp_path / "b"), *TINY])
    # Resumed with other flags: the run goes on with the batch and learning rate it started with.
    train.main(["--expert", "text", "--steps", "5", "--out", str(tmp_path / "b"), *TINY, "--batch", "4", "--lr", "0.01"])
    warned = capsys.readouterr().err
    assert "--batch 4 ignored" in warned and "--lr 0.01 ignored" in warned  # and said so
    from safetensors.torch import load_file
    a, b = load_file(str(tmp_path / "a" / "last.safetensors")), load_file(str(tmp_path / "b" / "last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=k)


def test_exported_weights_are_self_describing_fp16(tiny_world):
    _, assets = tiny_world
    meta = read_metadata(assets / "sketch.safetensors")
    config = json.loads(meta["config"])
    assert config["modalities"] == ["sketch"] and config["image_size"] == 16
    assert config["extra"]["steps"] == 30 and "seeds 1000000..1999999" in config["extra"]["split"]
    from safetensors.torch import load_file
    assert all(v.dtype == torch.float16 for v in load_file(str(assets / "sketch.safetensors")).values())
    assert load_face_unet(assets / "sketch.safetensors").config.channels == (16, 32, 32)


def test_world_from_tiny_experts_samples_an_image(tiny_world):
    _, assets = tiny_world
    world = load_faces_world(assets, superres_file=None)  # the tiny experts alone
    assert world.modalities == ("seg", "sketch", "text") and "joint" in world.baselines
    f = make_face(9_000_000, 16)
    req = world.request(seg=seg_to_rgb(f.seg), sketch=f.sketch, text=f.caption, steps=4, seed=0)
    frames = list(world.generate(req))
    assert len(frames) == 5 and frames[-1].done
    img = frames[-1].image
    assert img.shape == (1, 3, 16, 16) and torch.isfinite(img).all()
    again = list(world.generate(req))[-1].image
    assert torch.equal(img, again)


def test_missing_weights_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing its weights.*seg.safetensors"):
        load_faces_world(tmp_path)
