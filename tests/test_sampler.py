"""The sampler: diffusers schedulers, explicit generators, one preview per step."""

import pytest
import torch

from unite_demo.method.combine import ProductOfExperts
from unite_demo.method.experts import Expert
from unite_demo.method.sampler import SAMPLERS, sample

from dummies import DummyDenoiser


def _poe():
    experts = [Expert(m, DummyDenoiser((m,), seed=i), (m,)) for i, m in enumerate(("seg", "text"))]
    return ProductOfExperts(experts, {"seg": 1.0, "text": 1.0}, guidance=2.0)


def _run(seed, sampler="dpmpp", steps=6, den=None):
    cond = {"seg": torch.ones(1, 5), "text": torch.ones(1, 5) * 0.5}
    gen = torch.Generator().manual_seed(seed)
    return list(sample(den or _poe(), cond, (1, 3, 8, 8), steps=steps, sampler=sampler, generator=gen))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_one_preview_per_step_then_the_final_image(sampler):
    frames = _run(0, sampler)
    assert [f.step for f in frames] == [1, 2, 3, 4, 5, 6, 6]
    assert [f.done for f in frames] == [False] * 6 + [True]
    assert all(f.image.shape == (1, 3, 8, 8) and f.image.abs().max() <= 1 for f in frames)
    assert len({tuple(f.image.flatten().tolist()) for f in frames}) >= 5  # the preview changes


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_same_image_other_seed_other_image(sampler):
    a, b, c = _run(3, sampler)[-1].image, _run(3, sampler)[-1].image, _run(4, sampler)[-1].image
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_samplers_differ_but_agree_roughly():
    a, b = _run(0, "dpmpp", steps=30)[-1].image, _run(0, "ddim", steps=30)[-1].image
    assert not torch.equal(a, b)
    assert (a - b).abs().mean() < 0.2


def test_bad_sampler_and_steps_are_refused():
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        _run(0, "euler")
    with pytest.raises(ValueError, match="steps must be a whole number from 1 to 200"):
        _run(0, steps=0)


def test_non_finite_prediction_stops_the_run():
    class Broken:
        space, reads = "pixel 3x8x8", ()

        def __call__(self, x_t, alpha_bar, cond):
            return torch.full_like(x_t, float("nan"))

    with pytest.raises(FloatingPointError, match="non-finite values at step 1"):
        _run(0, den=Broken())
