"""The shipped cartoon-faces world: three trained experts (+ the joint baseline) that sample faces
which follow their conditions."""

import json

import numpy as np
import pytest

from helpers import WORLDS
from unite_demo.worlds.conditions import to_uint8
from unite_demo.worlds.faces.data import DATA_VERSION, HAIR_RGB, SPLITS, make_face
from unite_demo.worlds.faces.examples import EXAMPLE_SEEDS, load_examples
from unite_demo.worlds.faces.model import read_metadata
from unite_demo.worlds.faces.world import FACES_DIR


@pytest.fixture(scope="module")
def world():
    return WORLDS.get()


def test_shipped_weights_are_self_describing_with_disjoint_splits(world):
    splits = set()
    for name in ("seg", "sketch", "text", "joint"):
        config = json.loads(read_metadata(FACES_DIR / f"{name}.safetensors")["config"])
        extra = config["extra"]
        assert extra["expert"] == name and extra["steps"] > 0 and extra["wall_minutes"] > 0
        assert extra["data_version"] == DATA_VERSION and extra["augment"]  # trained on faces as people draw them
        splits.add(extra["split"])
        assert (FACES_DIR / f"{name}.md").exists() and (FACES_DIR / f"{name}_samples.png").exists()
    assert len(splits) == 4
    assert [e.reads for e in world.experts] == [("seg",), ("sketch",), ("text",)]
    assert world.baselines["joint"].reads == ("seg", "sketch", "text")


def _final(world, **inputs):
    """The sampler's own final image (32 px: the final-image stage off unless asked)."""
    inputs.setdefault("superres", False)
    frames = list(world.generate(world.request(**inputs)))
    assert frames[-1].done and len(frames) == world.request(**inputs).steps + 1
    return to_uint8(frames[-1].image)[0].astype(int)


def _region_mean(img, mask):
    return img[mask].mean(axis=0)


def test_the_text_expert_reads_what_a_caption_says(world):
    reading = {k: v for k, (v, _) in world.read_caption(
        "drawing of a smiling character with short red hair and purple eyes").items()}
    said = {"hair_colour": "red", "hair_style": "short", "eye_colour": "purple", "expression": "smiling"}
    assert {k: reading.get(k) for k in said} == said
    assert set(reading) - set(said) <= {"glasses", "beard"}  # at most a guess of "no" for what is not said
    assert world.read_caption(None) == {}


@pytest.mark.parametrize("caption, expected", [
    pytest.param("a person with short red hair and green eyes on a blue background",
                 {"hair_colour": "red", "hair_style": "short", "eye_colour": "green", "background": "sky blue"},
                 marks=pytest.mark.xfail(strict=True, reason="known: the caption head swaps the two colours "
                                         "(reads blue eyes on green); MiniLM's mean-pooled embedding blurs which "
                                         "colour goes with which noun")),
    ("blond guy, tanned skin, no glasses, light blue backdrop",
     {"hair_colour": "blonde", "skin_tone": "tan", "glasses": "no", "background": "sky blue"}),
    ("a grinning lady with ginger hair", {"hair_colour": "red", "expression": "smiling"}),
])
def test_the_text_expert_reads_captions_in_the_words_people_use(world, caption, expected):
    """Synonyms and other sentence shapes."""
    reading = {k: v for k, (v, _) in world.read_caption(caption).items()}
    assert reading == expected, reading


def test_three_experts_make_a_face_that_follows_the_map(world):
    """Example 0 through all three experts: the painted regions come out in the right places."""
    ex = load_examples()[0]
    req = world.request(seg=ex.seg, sketch=ex.sketch, text=ex.text)
    img = _final(world, seg=ex.seg, sketch=ex.sketch, text=ex.text, seed=0)
    assert np.isfinite(img).all() and img.std() > 20
    face = make_face(SPLITS["heldout"].start + EXAMPLE_SEEDS[0])  # example 0 is this held-out face
    assert np.array_equal(req.values["seg"], face.seg)
    means = {k: _region_mean(img, req.values["seg"] == k) for k in (0, 1, 2)}  # background, skin, hair
    # Each region is far more uniform inside than the regions are apart.
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert np.linalg.norm(means[a] - means[b]) > 40
    inside_skin = img[req.values["seg"] == 1].std(axis=0).mean()
    assert inside_skin < 30


@pytest.mark.xfail(strict=True, reason="known: the product's hair for example 0 (grey in its caption) comes out "
                   "nearest grey in 1 of 3 seeds (blue, grey, brown): the segmentation expert's colour wins")
def test_product_follows_the_caption_hair_colour(world):
    ex = load_examples()[0]
    req = world.request(seg=ex.seg, sketch=ex.sketch, text=ex.text)
    face = make_face(SPLITS["heldout"].start + EXAMPLE_SEEDS[0])
    target = face.attributes["hair_colour"]

    def nearest(rgb):
        return min(HAIR_RGB, key=lambda name: np.linalg.norm(rgb - np.array(HAIR_RGB[name])))

    # Judged per seed: the mean of several seeds' colours drifts towards grey whatever they are.
    hair = [nearest(_region_mean(_final(world, seg=ex.seg, sketch=ex.sketch, text=ex.text, seed=s), req.values["seg"] == 2))
            for s in range(3)]
    assert hair.count(target) >= 2, hair


def test_text_alone_sets_the_hair_colour(world):
    """The text expert on its own: 'blonde' vs 'black' hair changes the image the right way."""
    bright, dark = [], []
    for seed in range(3):
        bright.append(_final(world, text="a person with long blonde hair", seed=seed).mean())
        dark.append(_final(world, text="a person with long black hair", seed=seed).mean())
    assert np.mean(bright) > np.mean(dark) + 5


def test_reliability_zero_ignores_that_condition(world):
    ex = load_examples()[0]
    a = _final(world, seg=ex.seg, text=ex.text, reliability="seg=0", seed=3)
    b = _final(world, seg=load_examples()[1].seg, text=ex.text, reliability="seg=0", seed=3)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("engine", ["onnx", "torchscript"])
def test_served_networks_give_the_modules_eps_for_any_batch_noise_level_and_condition(engine, tmp_path, monkeypatch):
    import torch

    from unite_demo.method import engines
    from unite_demo.method.sampler import make_sampler
    from unite_demo.worlds.faces.data import NUM_CLASSES
    from unite_demo.worlds.faces.denoiser import FaceDenoiser
    from unite_demo.worlds.faces.model import TEXT_DIM, FaceUNet, FaceUNetConfig

    config = FaceUNetConfig.from_dict({"modalities": ["seg", "sketch", "text"], "image_size": 16,
                                       "channels": [16, 32, 32], "text_reader": "attributes"})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = FaceUNet(config)
    alphas = make_sampler("ddim", config.num_train_timesteps, config.beta_schedule).alphas_cumprod
    monkeypatch.setattr(engines, "CACHE_DIR", tmp_path)
    served, plain = FaceDenoiser(net, alphas, engine), FaceDenoiser(net, alphas, "eager")
    kind = engines.OnnxForward if engine == "onnx" else torch.jit.ScriptModule
    assert isinstance(served.forward, kind) and plain.forward is net
    g = torch.Generator().manual_seed(1)
    for b, level in ((1, 0.02), (3, 0.5), (6, 0.97)):  # traced/exported at batch 1: other batches and levels too
        x_t = torch.randn(b, 3, 16, 16, generator=g)
        alpha_bar = torch.full((b,), level)
        ids = torch.randint(0, NUM_CLASSES, (b, 16, 16), generator=g)
        cond = {"seg": torch.nn.functional.one_hot(ids, NUM_CLASSES).permute(0, 3, 1, 2).float(),
                "sketch": (torch.rand(b, 2, 16, 16, generator=g) > 0.5).float(),
                "text": torch.randn(b, TEXT_DIM, generator=g)}
        cond["seg"][0] = 0  # a null row
        torch.testing.assert_close(served(x_t, alpha_bar, cond), plain(x_t, alpha_bar, cond), rtol=1e-5, atol=1e-5)


def test_the_final_stage_sharpens_the_product_to_128_px_along_the_same_regions(world):
    """The shipped world's final image goes through its super-resolution stage: 128 px, the same
    picture as the sampler's 32 px image (brought back to 32 px), flatter inside the regions than
    that image upscaled bicubic. Off, the sampler's own image comes back."""
    from unite_demo.worlds.faces.training import superres

    assert world.final_stage is not None and "steps" in world.cards["superres"]
    ex = load_examples()[0]
    small = _final(world, seg=ex.seg, sketch=ex.sketch, text=ex.text, seed=0)
    sharp = _final(world, seg=ex.seg, sketch=ex.sketch, text=ex.text, seed=0, superres=True)
    assert small.shape == (32, 32, 3) and sharp.shape == (128, 128, 3)
    back, ids = superres.box_down(sharp[None].astype(np.uint8))[0].astype(int), world.request(seg=ex.seg).values["seg"]
    for k in (0, 1, 2):  # background, skin, hair: each keeps its colour (a shifted one may move back toward
        # the world's own: measured 14 levels on one channel of this background)
        assert np.abs(_region_mean(back, ids == k) - _region_mean(small, ids == k)).max() < 25
    # Grain as the evaluation measures it: inside the regions the segmenter sees in the sample.
    from unite_demo.worlds.faces.evaluation import metric_nets

    regions = metric_nets.segment(metric_nets.load_net("segmenter"), small[None].astype(np.uint8))
    regions = regions.repeat(4, 1).repeat(4, 2)
    soft = superres.bicubic(small[None].astype(np.uint8))
    assert superres.grain(sharp[None].astype(np.uint8), regions, 4) < superres.grain(soft, regions, 4)


def test_the_built_in_world_runs_where_unite_device_says_or_on_a_gpu_where_there_is_one(monkeypatch):
    import torch

    from unite_demo.worlds.faces.world import faces_device

    monkeypatch.delenv("UNITE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert faces_device() == torch.device("cuda")
    monkeypatch.setenv("UNITE_DEVICE", "cpu")
    assert faces_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("UNITE_DEVICE")
    assert faces_device() == torch.device("cpu")


def test_the_gpu_code_path_gives_the_same_image_from_the_same_seed(world):
    """What changes on a GPU, run on the CPU: the networks moved to the world's device and served by
    the trace (ONNX Runtime serves the CPU only), the conditions moved there, x_t drawn on the CPU
    and moved. The final tensor matches the served world's within 1e-4."""
    import torch

    from unite_demo.worlds.faces.world import load_faces_world

    moved = load_faces_world(engine="torchscript", device=torch.device("cpu"), superres_file=None)
    assert moved.device == torch.device("cpu") and isinstance(moved.experts[0].denoiser.forward, torch.jit.ScriptModule)
    ex = load_examples()[0]
    req = dict(seg=ex.seg, sketch=ex.sketch, text=ex.text, steps=6, seed=4, superres=False)
    a = list(world.generate(world.request(**req)))[-1].image
    b = list(moved.generate(moved.request(**req)))[-1].image
    assert (a - b).abs().max().item() <= 1e-4
