"""The GPU training recipe at tiny size on the CPU: the same code path (prepare, train, resume, export,
adopt) with 16 px networks, a render worker process and a handful of steps."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from unite_demo.worlds.faces.data import NUM_CLASSES, make_face
from unite_demo.worlds.faces.model import FaceUNet, FaceUNetConfig, load_face_unet, read_metadata, save_face_unet
from unite_demo.worlds.faces.text import encode_captions
from unite_demo.worlds.faces.training import recipe
from unite_demo.worlds.faces.training.train import EXPERT_MODALITIES

TINY = ["--batch", "4", "--workers", "1", "--pool", "256", "--device", "cpu", "--precision", "fp32",
        "--log-every", "1", "--warmup", "2"]


def tiny_assets(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for k, net in enumerate(recipe.NETWORKS):
        torch.manual_seed(k)
        model = FaceUNet(FaceUNetConfig(modalities=EXPERT_MODALITIES[net], image_size=16, channels=(16, 32)))
        model.config.extra = {"expert": net, "steps": 7, "batch": 2, "wall_minutes": 0.1, "hardware": ["test"],
                              "caption_head": {"captions": 1}}
        save_face_unet(model, folder / f"{net}.safetensors")
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    assets = tiny_assets(root / "assets")
    captions = recipe.prepare(root / "carry", assets, 24, wheel=False)
    common = ["--captions", str(captions), "--out", str(root / "out"), "--work", str(root / "work"),
              "--assets", str(assets), *TINY]
    recipe.main(["train", *common, "--steps", "3"])
    first = json.loads((root / "out" / recipe.RECORD_FILE).read_text())
    return root, assets, captions, common, first


def test_prepare_stores_each_caption_heads_read_out_of_its_own_split(run):
    root, assets, captions, *_ = run
    tensors = load_file(str(captions))
    heads = json.loads(read_metadata(captions)["heads"])
    for net in ("text", "joint"):
        seeds = tensors[f"{net}.seeds"]
        assert len(seeds) == 24 and len(set(seeds.tolist())) == 24
        assert all(s in recipe.SPLITS[net] for s in seeds.tolist())
        model = load_face_unet(assets / f"{net}.safetensors")
        assert heads[net] == recipe.head_digest(model)
        expected = model.caption_head(encode_captions([make_face(int(s), 8).caption for s in seeds[:4]]))
        assert torch.allclose(tensors[f"{net}.readout"][:4].float(), expected, atol=2e-3)
    assert "seg.seeds" not in tensors


def test_train_continues_every_network_from_the_shipped_weights_and_exports_fp16_with_its_record(run):
    root, assets, _, _, first = run
    for net in recipe.NETWORKS:
        path = root / "out" / f"{net}.safetensors"
        assert all(v.dtype == torch.float16 for v in load_file(str(path)).values())
        new, old = load_face_unet(path), load_face_unet(assets / f"{net}.safetensors")
        moved = [k for k, v in new.state_dict().items() if not torch.equal(v, old.state_dict()[k])]
        assert any(k.startswith("unet.") for k in moved)
        assert not any(k.startswith("caption_head.") for k in moved)  # frozen: the read-outs stay valid
        extra = new.config.extra
        assert (extra["steps"], extra["samples"], extra["batch"]) == (3, 12, 4)
        assert extra["init_record"]["steps"] == 7 and extra["caption_head"] == {"captions": 1}
        assert extra["hardware"] and extra["first_loss"] > 0 and extra["faces_rendered"] >= 4
        assert len(first[net]["loss_log"]) == 3


@pytest.mark.slow
def test_train_resumes_from_its_checkpoints_and_refuses_stale_read_outs(run):
    root, assets, _, common, _ = run
    recipe.main(["train", *common, "--steps", "2", "--networks", "seg", "text"])
    record = json.loads((root / "out" / recipe.RECORD_FILE).read_text())
    assert record["seg"]["steps"] == 5 and record["text"]["samples"] == 20
    assert [int(r["step"]) for r in record["text"]["loss_log"]] == [1, 2, 3, 4, 5]
    other = tiny_assets(root / "other")
    torch.manual_seed(99)
    changed = load_face_unet(other / "text.safetensors")
    changed.caption_head.mlp[0].weight.data.normal_()
    save_face_unet(changed, other / "text.safetensors")
    with pytest.raises(ValueError, match="prepare"):
        recipe.main(["train", *common, "--assets", str(other), "--work", str(root / "work2"), "--steps", "1",
                     "--networks", "text"])


def test_pool_batches_are_conditions_as_the_network_reads_them():
    pool = recipe.Pool(("seg", "sketch", "text"), capacity=8, size=16, device=torch.device("cpu"))
    faces = [make_face(s, 16) for s in range(5)]
    arrays = {"image": np.stack([f.image for f in faces]), "seg": np.stack([f.seg for f in faces]),
              "sketch": np.stack([f.sketch for f in faces])}
    readout = torch.rand(5, recipe.CAPTION_DIM)
    pool.add(arrays, readout)
    pool.add(arrays, readout)  # 10 faces into 8 places: the oldest two go
    assert (pool.filled, pool.rendered, pool.next) == (8, 10, 2)
    x0, cond = pool.batch(6, torch.Generator().manual_seed(0), p_drop=0.0)
    assert x0.shape == (6, 3, 16, 16) and x0.min() >= -1 and x0.max() <= 1
    assert torch.equal(cond["seg"].sum(1), torch.ones(6, 16, 16)) and cond["seg"].shape[1] == NUM_CLASSES
    assert torch.equal(cond["sketch"][:, 1], torch.ones(6, 16, 16))
    for row in range(6):  # each row's conditions belong to its own image
        k = next(k for k in range(5) if torch.equal(x0[row], torch.from_numpy(faces[k].image.copy()).permute(2, 0, 1).float() / 127.5 - 1))
        assert np.array_equal(cond["seg"][row].argmax(0).numpy(), faces[k].seg)
        assert torch.equal(cond["text"][row], readout[k])
    _, dropped = pool.batch(6, torch.Generator().manual_seed(0), p_drop=1.0)
    assert all(float(v.abs().sum()) == 0 for v in dropped.values())


@pytest.mark.slow
def test_adopt_writes_the_files_to_assets_with_a_card(run, tmp_path):
    root, assets, *_ = run
    dest = tmp_path / "assets"
    shutil.copytree(assets, dest)
    written = recipe.adopt(root / "out", dest)
    assert sorted(p.name for p in written) == sorted(f"{n}.safetensors" for n in recipe.NETWORKS)
    card = (dest / "text.md").read_text()
    assert "python -m unite_demo.recipe adopt" in card and "| samples |" in card
    assert (dest / "text_samples.png").exists()
    assert torch.equal(load_face_unet(dest / "seg.safetensors").state_dict()["unet.conv_in.weight"],
                       load_face_unet(root / "out" / "seg.safetensors").state_dict()["unet.conv_in.weight"])


@pytest.mark.slow
def test_the_one_gpu_call_runs_here_at_tiny_size(run, tmp_path):
    """scripts/gpu_train.sh, the command a CUDA machine runs, on this CPU with the tiny networks."""
    import os
    import subprocess
    import sys

    root, assets, captions, *_ = run
    env = {**os.environ, "RECIPE": str(captions.parent), "DEVICE": "cpu", "WORK": str(tmp_path / "work"),
           "PYTHON": sys.executable}
    done = subprocess.run(["bash", "scripts/gpu_train.sh", str(tmp_path / "out"), "0", "--steps", "1",
                           "--assets", str(assets), *TINY], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "out" / recipe.RECORD_FILE).read_text())
    assert sorted(record) == sorted(recipe.NETWORKS) and all(r["steps"] == 1 for r in record.values())


def test_caption_networks_train_on_new_faces_that_their_table_captions_fit():
    import random

    from unite_demo.worlds.faces.data import make_face_like, render, sample_attributes
    from unite_demo.worlds.faces.training.augment import render_arrays

    table = [make_face(s, 8) for s in range(2_000_000, 2_000_040)]
    for k, described in enumerate(table):
        face = make_face_like(described, 2_500_000 + k, 16)
        assert face.attributes == described.attributes and face.caption == described.caption
        if "expression" in described.mentioned:  # a caption that names the expression gets a face with a mouth
            rng = random.Random(face.seed)
            sample_attributes(rng)
            assert render(face.attributes, rng, 16)[3]
    same = make_face(2_000_000, 16)
    other = make_face_like(make_face(2_000_000, 8), 2_500_000, 16)
    assert not np.array_equal(same.seg, other.seg)  # a new drawing, not the table's face
    arrays = render_arrays(("text",), [2_500_000, 2_500_001], 16, 0, like=[2_000_000, 2_000_001])
    assert np.array_equal(arrays["image"][0], other.image) and set(arrays) == {"image"}
