"""Reliability in space (maps) and time (windows) through real worlds: the built-in cartoon faces and the
pretrained worlds on tiny random networks (the math itself: tests/test_combine.py; validation:
tests/test_conditions.py)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from unite_demo.method.combine import ProductOfExperts
from unite_demo.method.sampler import sample
from unite_demo.worlds import pretrained as sd15
from unite_demo.worlds.faces.examples import load_examples
from unite_demo.worlds.pretrained import PretrainedConfig

from helpers import WORLDS
from tiny_sd15 import SIZE
from tiny_sd15 import seg_rgb as _seg_rgb

LEFT_OFF = np.ones((32, 32), np.float32)
LEFT_OFF[:, :16] = 0  # not heard on the left half


@pytest.fixture(scope="module")
def world():
    return WORLDS.get()


@pytest.fixture(scope="module")
def examples():
    return load_examples()[:2]


def _inputs(example, **other):
    return {"seg": example.seg, "sketch": example.sketch, "text": example.text, **other}


def _frames(world, req, **kwargs):
    return [f for f in world.generate(req, **kwargs)]


def test_a_uniform_map_is_the_number_on_the_built_in_world(world, examples):
    req = world.request(_inputs(examples[0]), steps=4, superres=False)
    white = world.request(_inputs(examples[0]), steps=4, superres=False,
                          reliability_maps={"sketch": np.full((100, 60), 255, np.uint8)})
    assert white.reliability_maps == {}  # the fast path: today's request
    grey = replace(req, reliability={**req.reliability, "sketch": 2 * req.reliability["sketch"]},
                   reliability_maps={"sketch": np.full((32, 32), 0.5, np.float32)})  # the per-pixel path
    ref = [f.image for f in _frames(world, req)]
    for a, b in zip(ref, [f.image for f in _frames(world, grey)]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_where_a_map_is_0_the_expert_is_not_heard_on_the_built_in_world(world, examples):
    """Changing the sketch leaves the left half, where its map is 0, exactly as it was in each step's eps
    and in the first step's preview. The networks' receptive field is the whole 32 px image (changing x_t's
    right half changes eps even in column 0), so from the second step on the other experts carry the
    sketch's effect across: in the final image the left half, away from its border (8 px margin), changes
    much less than without the map (measured at 4 steps: mean 0.05 against 0.16), not exactly nothing."""
    a, b = examples
    maps = {"sketch": LEFT_OFF}

    def run(sketch_of, with_map):
        req = world.request(_inputs(a, sketch=sketch_of.sketch), steps=4, superres=False,
                            reliability_maps=maps if with_map else None)
        return req, [f.image[0] for f in _frames(world, req)]
    (req_a, ma), (req_b, mb) = run(a, True), run(b, True)
    (_, na), (_, nb) = run(a, False), run(b, False)
    # one call: eps on the whole left half does not depend on the sketch
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ab = torch.tensor([0.4])
    mix = world.mixture(req_a)
    assert torch.equal(mix(x, ab, world.conditions(req_a))[..., :16], mix(x, ab, world.conditions(req_b))[..., :16])
    assert torch.equal(ma[0][..., :16], mb[0][..., :16])  # the first preview
    assert not torch.allclose(ma[0][..., 16:], mb[0][..., 16:])  # ... heard on the right
    inner = (slice(None), slice(8, 24), slice(0, 8))  # the left half, 8 px from its border and the image's
    mapped, unmapped = (ma[-1] - mb[-1]).abs()[inner].mean(), (na[-1] - nb[-1]).abs()[inner].mean()
    assert mapped < 0.5 * unmapped, (float(mapped), float(unmapped))


def test_order_of_experts_does_not_matter_with_maps_on_the_built_in_world(world, examples):
    g = np.random.default_rng(0)
    req = world.request(_inputs(examples[0]), steps=4,
                        reliability_maps={m: g.random((32, 32)).astype(np.float32) for m in ("seg", "sketch", "text")})
    x, ab, cond = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.tensor([0.3]), \
        world.conditions(req)
    settings = world.product_settings(req)
    ref = ProductOfExperts(world.experts, options=world.guidance_options, **settings)(x, ab, cond)
    got = ProductOfExperts(list(reversed(world.experts)), options=world.guidance_options, **settings)(x, ab, cond)
    assert torch.equal(got, ref)


def test_windows_on_the_built_in_world(world, examples):
    """(0, 1) is today; (0.5, 1) on the sketch is the sketch at r = 0 for steps 1-2 of 4, then as set
    (the world's own sampler, multistep UniPC, through a reference that switches by counting its calls)."""
    req = world.request(_inputs(examples[0]), steps=4, superres=False)
    ref = [f.image for f in _frames(world, req)]
    full = replace(req, windows={"sketch": (0.0, 1.0)})  # what validation would drop, given to the world as is
    assert all(torch.equal(a, f.image) for a, f in zip(ref, _frames(world, full)))
    late = world.request(_inputs(examples[0]), steps=4, superres=False, windows={"sketch": "0.5,1"})
    got = [f.image for f in _frames(world, late)]
    off, on = world.mixture(replace(req, reliability={**req.reliability, "sketch": 0.0})), world.mixture(req)
    calls = []

    def switching(x_t, alpha_bar, cond):
        calls.append(None)
        return (off if len(calls) <= 2 else on)(x_t, alpha_bar, cond)
    want = [f.image for f in sample(switching, world.conditions(req), (1, *world.sample_shape), steps=4,
                                    sampler=req.sampler, generator=torch.Generator().manual_seed(req.seed),
                                    **world.schedule())]
    assert all(torch.equal(a, b) for a, b in zip(got, want)) and not torch.equal(got[-1], ref[-1])


def test_frames_carry_the_experts_conflict_when_asked(world, examples):
    req = world.request(_inputs(examples[0]), steps=3, superres=False)
    frames = _frames(world, req, conflict=True)
    maps = [f.conflict for f in frames if not f.done]
    assert len(maps) == 3 and all(m.shape == (1, 32, 32) and 0 <= m.min() and m.max() <= 1 for m in maps)
    assert all(f.conflict is None for f in _frames(world, req))
    alone = world.request({"text": examples[0].text}, steps=3, superres=False)
    assert all(torch.equal(f.conflict, torch.zeros(1, 32, 32)) for f in _frames(world, alone, conflict=True)
               if not f.done)


# ---------------------------------------------------------------------------------------------
# The pretrained worlds (tiny random networks): maps on the latent grid

@pytest.fixture(scope="module")
def sd_world(sd15_folders):
    f = sd15_folders
    config = PretrainedConfig(sd15=str(f["sd15"]), scribble=str(f["scribble"]), seg=str(f["seg"]), dit=str(f["dit"]),
                              image_size=SIZE, device="cpu")
    return sd15.load_world("sd15-dit", config)


def _sketch(s=SIZE):
    yy, xx = np.mgrid[:s, :s]
    return np.where(np.abs(np.hypot(yy - s / 2, xx - s / 2) - s / 4) < 2, 255, 0).astype(np.uint8)


@pytest.mark.slow
def test_a_map_reaches_the_latent_grid_of_a_pretrained_world(sd_world):
    side = SIZE // 8  # the latent grid
    left = np.full((3 * SIZE, 2 * SIZE), 255, np.uint8)  # any size, any shape
    left[:, :SIZE] = 0
    inputs = {"text": "a cat", "sketch": _sketch(), "seg": _seg_rgb(), "class": "goldfish"}
    req = sd_world.request(inputs, steps=2, reliability_maps={"sketch": left})
    assert req.reliability_maps["sketch"].shape == (SIZE, SIZE)  # kept at the world's image size
    mix = sd_world.mixture(req)
    x = torch.randn(1, *sd_world.sample_shape, generator=torch.Generator().manual_seed(0))
    assert x.shape[-2:] == (side, side)
    on_grid = mix.grid_map("sketch", x)
    want = torch.ones(side, side)
    want[:, :side // 2] = 0
    assert on_grid.shape == (1, 1, side, side) and torch.equal(on_grid[0, 0], want)
    # where the map is 0 the step does not depend on the sketch; elsewhere it does
    ab = torch.tensor([0.4])
    bars = np.zeros((SIZE, SIZE), np.uint8)
    bars[::8] = 255  # another sketch: horizontal strokes
    other = sd_world.request({**inputs, "sketch": bars}, steps=2, reliability_maps={"sketch": left})
    a, b = mix(x, ab, sd_world.conditions(req)), mix(x, ab, sd_world.conditions(other))
    torch.testing.assert_close(a[..., :side // 2], b[..., :side // 2], rtol=0, atol=1e-6)
    assert not torch.allclose(a[..., side // 2:], b[..., side // 2:], atol=1e-4)
    # a uniform map is the number: white is today's request, grey at r / m the same product
    plain = sd_world.request(inputs, steps=2)
    white = sd_world.request(inputs, steps=2, reliability_maps={"sketch": np.full((7, 9), 255, np.uint8)})
    assert white.reliability_maps == {}
    grey = replace(plain, reliability={**plain.reliability, "sketch": 2 * plain.reliability["sketch"]},
                   reliability_maps={"sketch": np.full((SIZE, SIZE), 0.5, np.float32)})
    cond = sd_world.conditions(plain)
    torch.testing.assert_close(sd_world.mixture(grey)(x, ab, cond), sd_world.mixture(plain)(x, ab, cond),
                               rtol=0, atol=1e-6)
    windowed = sd_world.request(inputs, steps=2, windows={"class": (0, 0.5)})
    assert [f.image.shape for f in sd_world.generate(windowed)][-1] == (1, 3, SIZE, SIZE)
