"""Invariants of the generalized product of experts (DESIGN.md section 1), with dummy experts."""

import itertools

import pytest
import torch
from diffusers import DDPMScheduler

from unite_demo.method.combine import (GuidanceOptions, ProductOfExperts, combine_eps, conflict_map, map_on_grid,
                                       prior_weights)
from unite_demo.method.experts import Expert, NoiseSchedule, eps_to_x0, to_eps, x0_to_eps
from unite_demo.method.sampler import alpha_bar_window, heard_steps, sample, step_alpha_bars

from dummies import DummyDenoiser, FieldDummy, ScheduledDummy, true_eps


def _inputs(seed=0, b=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, 8, 8, generator=g) * 2
    ab = torch.full((b,), 0.4)
    cond = {k: torch.randn(b, 5, generator=g) for k in ("seg", "sketch", "text")}
    return x, ab, cond


def _experts(shared=False):
    if shared:
        den = DummyDenoiser(("seg", "sketch", "text"), seed=1)
        return [Expert(m, den, (m,)) for m in ("seg", "sketch", "text")]
    return [Expert(m, DummyDenoiser((m,), seed=i + 1), (m,)) for i, m in enumerate(("seg", "sketch", "text"))]


def test_single_expert_r1_s1_is_that_expert():
    x, ab, cond = _inputs()
    e = _experts()[0]
    poe = ProductOfExperts([e], {"seg": 1.0}, guidance=1.0, clamp_x0=False)
    expected = e.denoiser(x, ab, {"seg": cond["seg"]})
    torch.testing.assert_close(poe(x, ab, cond), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("shared", [False, True])
def test_identical_experts_equal_one(n, shared):
    """N copies of one expert, reliabilities summing to r, act as that expert with r."""
    x, ab, cond = _inputs()
    one = DummyDenoiser(("seg",), seed=7)
    copies = [one if shared else DummyDenoiser(("seg",), seed=7) for _ in range(n)]
    experts = [Expert(f"e{i}", d, ("seg",)) for i, d in enumerate(copies)]
    single = ProductOfExperts([Expert("e", one, ("seg",))], {"e": 1.5}, guidance=2.0, clamp_x0=False)
    many = ProductOfExperts(experts, {f"e{i}": 1.5 / n for i in range(n)}, guidance=2.0, clamp_x0=False)
    torch.testing.assert_close(many(x, ab, cond), single(x, ab, cond), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shared", [False, True])
def test_zero_reliability_makes_output_independent_of_that_condition(shared):
    x, ab, cond = _inputs()
    poe = ProductOfExperts(_experts(shared), {"seg": 1.0, "sketch": 0.0, "text": 2.0}, guidance=3.0)
    other = dict(cond, sketch=torch.randn(2, 5) * 10)
    without = {k: v for k, v in cond.items() if k != "sketch"}
    a = poe(x, ab, cond)
    assert torch.equal(a, poe(x, ab, other))
    assert torch.equal(a, poe(x, ab, without))
    # ...while a positive reliability does depend on it (the test above could not pass vacuously).
    poe_on = ProductOfExperts(_experts(shared), {"seg": 1.0, "sketch": 0.5, "text": 2.0}, guidance=3.0)
    assert not torch.allclose(poe_on(x, ab, cond), poe_on(x, ab, other))


@pytest.mark.parametrize("shared", [False, True])
def test_expert_order_does_not_matter(shared):
    x, ab, cond = _inputs()
    experts = _experts(shared)
    rel = {"seg": 0.7, "sketch": 1.3, "text": 2.1}
    ref = ProductOfExperts(experts, rel, guidance=2.5)(x, ab, cond)
    for perm in itertools.permutations(experts):
        assert torch.equal(ProductOfExperts(list(perm), rel, guidance=2.5)(x, ab, cond), ref)


def test_formula_matches_hand_computation():
    x, ab, cond = _inputs()
    experts = _experts()
    rel = {"seg": 0.5, "sketch": 1.0, "text": 2.5}
    s = 1.7
    got = ProductOfExperts(experts, rel, guidance=s, clamp_x0=False)(x, ab, cond)
    total = sum(rel.values())
    expected = torch.zeros_like(x)
    for e in experts:
        null = e.denoiser(x, ab, {})
        c = e.denoiser(x, ab, {e.name: cond[e.name]})
        expected += rel[e.name] / total * null + s * rel[e.name] * (c - null)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_explicit_beta_and_defaults():
    assert prior_weights({"a": 1.0, "b": 3.0}) == {"a": 0.25, "b": 0.75}
    assert prior_weights({"a": 0.0, "b": 0.0}) == {"a": 0.5, "b": 0.5}
    assert prior_weights({"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 2.0}) == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError, match="no weight for"):
        prior_weights({"a": 1.0, "b": 1.0}, {"a": 1.0})
    x, ab, cond = _inputs()
    experts = _experts()
    rel = {"seg": 1.0, "sketch": 1.0, "text": 2.0}
    default = ProductOfExperts(experts, rel, beta=None)(x, ab, cond)
    same = ProductOfExperts(experts, rel, beta={"seg": 1, "sketch": 1, "text": 2})(x, ab, cond)
    other = ProductOfExperts(experts, rel, beta={"seg": 1, "sketch": 0, "text": 0})(x, ab, cond)
    torch.testing.assert_close(default, same, rtol=0, atol=1e-6)
    assert not torch.allclose(default, other)


def test_all_zero_reliability_samples_the_mixed_prior():
    x, ab, cond = _inputs()
    experts = _experts()
    out = ProductOfExperts(experts, {"seg": 0, "sketch": 0, "text": 0}, guidance=2.0, clamp_x0=False)(x, ab, cond)
    expected = sum(e.denoiser(x, ab, {}) for e in experts) / 3
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_shared_denoiser_uses_one_call_with_n_plus_one_rows():
    x, ab, cond = _inputs(b=2)
    experts = _experts(shared=True)
    den = experts[0].denoiser
    poe = ProductOfExperts(experts, {"seg": 1, "sketch": 1, "text": 1})
    batched = poe(x, ab, cond)
    assert den.calls == [2 * 4]  # 3 conditional rows + 1 shared null row, batch 2 each
    den.calls.clear()
    loop = ProductOfExperts(experts, {"seg": 1, "sketch": 1, "text": 1}, batched=False)(x, ab, cond)
    assert den.calls == [2] * 4
    torch.testing.assert_close(batched, loop, rtol=0, atol=1e-6)


def test_separate_denoisers_one_call_each():
    x, ab, cond = _inputs()
    experts = _experts()
    poe = ProductOfExperts(experts, {"seg": 1, "sketch": 1, "text": 1})
    poe(x, ab, cond)
    assert [e.denoiser.calls for e in experts] == [[4], [4], [4]]
    assert poe.calls == 3 and poe.rows == 12


def test_clamping_keeps_predicted_x0_in_range():
    x, ab, cond = _inputs()
    poe = ProductOfExperts(_experts(), {"seg": 3, "sketch": 3, "text": 3}, guidance=10.0)
    eps = poe(x, ab, cond)
    x0 = eps_to_x0(eps, x, ab)
    assert x0.abs().max() <= 1 + 1e-4
    unclamped = ProductOfExperts(_experts(), {"seg": 3, "sketch": 3, "text": 3}, guidance=10.0, clamp_x0=False)
    assert eps_to_x0(unclamped(x, ab, cond), x, ab).abs().max() > 1.5


def test_refuses_experts_from_different_spaces():
    a = Expert("seg", DummyDenoiser(("seg",), 1, space="pixel 3x8x8"), ("seg",))
    b = Expert("text", DummyDenoiser(("text",), 2, space="latent 4x8x8"), ("text",))
    with pytest.raises(ValueError, match="different image spaces.*pixel 3x8x8.*latent 4x8x8"):
        ProductOfExperts([a, b], {"seg": 1, "text": 1})


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_refuses_bad_reliability_and_guidance(bad):
    with pytest.raises(ValueError, match="reliability of seg"):
        ProductOfExperts(_experts(), {"seg": bad})
    with pytest.raises(ValueError, match="guidance"):
        ProductOfExperts(_experts(), {"seg": 1}, guidance=bad)
    with pytest.raises(ValueError, match="unknown expert"):
        ProductOfExperts(_experts(), {"colour": 1})


def test_combine_eps_is_the_formula():
    en = [torch.tensor(1.0), torch.tensor(3.0)]
    ec = [torch.tensor(2.0), torch.tensor(7.0)]
    out = combine_eps(en, ec, [0.5, 2.0], [0.25, 0.75], guidance=2.0)
    assert out.item() == pytest.approx(0.25 * 1 + 0.75 * 3 + 2 * (0.5 * 1 + 2 * 4))


# --- noise-schedule alignment ---------------------------------------------------------------

def _schedule(kind):
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule=kind).alphas_cumprod


def test_timestep_for_inverts_the_table():
    ac = _schedule("linear")
    sched = NoiseSchedule(ac)
    t = torch.tensor([0, 1, 250, 999])
    torch.testing.assert_close(sched.timestep_for(ac[t]), t.float(), rtol=0, atol=1e-3)
    mid = torch.exp((ac[10].double().log() + ac[11].double().log()) / 2)
    assert sched.timestep_for(mid).item() == pytest.approx(10.5, abs=1e-4)
    with pytest.raises(ValueError, match="strictly decreasing"):
        NoiseSchedule(torch.tensor([0.5, 0.9]))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_experts_with_different_schedules_are_aligned_on_the_master_alpha_bar(prediction_type):
    """A linear-schedule expert, asked at the cosine master schedule's noise levels (which fall
    between its integer timesteps), returns the eps of the same x_t as a cosine-schedule expert."""
    master = _schedule("squaredcos_cap_v2")
    linear = ScheduledDummy(_schedule("linear"), prediction_type)
    cosine = ScheduledDummy(master, "epsilon")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 8, 8, generator=g)
    for t in (40, 333, 700, 900):
        ab = master[t].expand(4)
        ref = true_eps(x, ab)
        torch.testing.assert_close(cosine(x, ab, {}), ref, rtol=0, atol=1e-4)
        torch.testing.assert_close(linear(x, ab, {}), ref, rtol=0, atol=2e-3)
        poe = ProductOfExperts([Expert("a", linear, ()), Expert("b", cosine, ())], {"a": 1, "b": 1}, guidance=1.0,
                               clamp_x0=False)
        torch.testing.assert_close(poe(x, ab, {}), ref, rtol=0, atol=2e-3)


def test_prediction_type_conversions_round_trip():
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    eps = torch.randn(2, 3, 4, 4, generator=g)
    ab = torch.tensor([0.3, 0.8])
    a = ab.view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(to_eps(v, x_t, ab, "v_prediction"), eps, rtol=0, atol=1e-5)
    torch.testing.assert_close(to_eps(x0, x_t, ab, "sample"), eps, rtol=0, atol=1e-5)
    torch.testing.assert_close(x0_to_eps(eps_to_x0(eps, x_t, ab), x_t, ab), eps, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="unknown prediction_type"):
        to_eps(v, x_t, ab, "velocity")


# --- guidance options (colour-keeping remedies) ---------------------------------------------

OPTIONS = {"interval": GuidanceOptions(interval=(0.3, 2.0)), "rescale": GuidanceOptions(rescale=0.7),
           "apg": GuidanceOptions(apg=0.0, apg_norm=5.0)}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_each_guidance_option_keeps_the_invariants(name):
    """r = 0 removes an expert, one expert at r = 1 and s = 1 is that expert, order does not matter,
    and at s > 1 the option changes the result (so these could fail)."""
    options = OPTIONS[name]
    x, ab = _inputs()[0], torch.tensor([0.2, 0.95])  # sigma 2.0 (inside the interval) and 0.23 (outside)
    cond = _inputs()[2]
    e = _experts()[0]
    one = ProductOfExperts([e], {"seg": 1.0}, guidance=1.0, clamp_x0=False, options=options)
    torch.testing.assert_close(one(x, ab, cond), e.denoiser(x, ab, {"seg": cond["seg"]}), rtol=0, atol=1e-5)
    rel = {"seg": 1.0, "sketch": 0.0, "text": 2.0}
    poe = ProductOfExperts(_experts(), rel, guidance=3.0, options=options)
    other = dict(cond, sketch=torch.randn(2, 5) * 10)
    assert torch.equal(poe(x, ab, cond), poe(x, ab, other))
    for perm in itertools.permutations(_experts()):
        torch.testing.assert_close(ProductOfExperts(list(perm), rel, guidance=3.0, options=options)(x, ab, cond),
                                   poe(x, ab, cond), rtol=0, atol=1e-5)
    plain = ProductOfExperts(_experts(), rel, guidance=3.0)
    assert not torch.allclose(poe(x, ab, cond), plain(x, ab, cond), atol=1e-3)


def test_interval_guidance_guides_only_inside_its_noise_levels():
    x, _, cond = _inputs()
    ab = torch.tensor([0.9, 0.05])  # sigma 0.33 (inside (0.3, 2]) and 4.4 (outside)
    rel = {"seg": 1.0, "text": 2.0}
    interval = ProductOfExperts(_experts(), rel, guidance=3.0, clamp_x0=False,
                                options=GuidanceOptions(interval=(0.3, 2.0)))(x, ab, cond)
    guided = ProductOfExperts(_experts(), rel, guidance=3.0, clamp_x0=False)(x, ab, cond)
    unguided = ProductOfExperts(_experts(), rel, guidance=1.0, clamp_x0=False)(x, ab, cond)
    torch.testing.assert_close(interval[0], guided[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(interval[1], unguided[1], rtol=0, atol=1e-5)


def test_rescaled_guidance_matches_the_unguided_products_spread_at_phi_1():
    x, ab, cond = _inputs()
    rel = {"seg": 1.0, "text": 2.0}
    full = ProductOfExperts(_experts(), rel, guidance=4.0, clamp_x0=False,
                            options=GuidanceOptions(rescale=1.0))(x, ab, cond)
    unguided = ProductOfExperts(_experts(), rel, guidance=1.0, clamp_x0=False)(x, ab, cond)
    torch.testing.assert_close(full.flatten(1).std(1), unguided.flatten(1).std(1), rtol=1e-4, atol=0)


def test_projected_guidance_drops_the_update_along_the_predicted_image():
    """With eta = 0 the guided x0 differs from the unguided product's x0 only orthogonally to it."""
    x, ab, cond = _inputs()
    rel = {"seg": 1.0, "text": 2.0}
    apg = ProductOfExperts(_experts(), rel, guidance=4.0, clamp_x0=False,
                           options=GuidanceOptions(apg=0.0))(x, ab, cond)
    unguided = ProductOfExperts(_experts(), rel, guidance=1.0, clamp_x0=False)(x, ab, cond)
    x0_apg, x0_1 = eps_to_x0(apg, x, ab).flatten(1), eps_to_x0(unguided, x, ab).flatten(1)
    along = ((x0_apg - x0_1) * x0_1).sum(1) / x0_1.norm(dim=1)
    assert along.abs().max() < 1e-3 and (x0_apg - x0_1).norm(dim=1).min() > 0.1


# --- reliability in space (maps) and time (windows) -------------------------------------------

LEFT_OFF = torch.ones(8, 8)
LEFT_OFF[:, :4] = 0  # the expert is not heard on the left half of the 8x8 image


def _left(t):
    return t[..., :4]


@pytest.mark.parametrize("options", [GuidanceOptions(), *OPTIONS.values()], ids=["plain", *OPTIONS])
@pytest.mark.parametrize("shared", [False, True])
def test_a_uniform_map_is_the_number(shared, options):
    """A white map is the number itself (bitwise); a uniform grey map m with r / m is r (per-pixel path, 1e-6)."""
    x, ab, cond = _inputs()
    ab = torch.tensor([0.2, 0.95])
    rel = {"seg": 0.7, "sketch": 1.2, "text": 2.0}
    ref = ProductOfExperts(_experts(shared), rel, guidance=3.0, options=options)(x, ab, cond)
    white = ProductOfExperts(_experts(shared), rel, guidance=3.0, options=options, maps={"sketch": torch.ones(5, 7)})
    assert white.maps == {} and torch.equal(white(x, ab, cond), ref)
    grey = ProductOfExperts(_experts(shared), {**rel, "sketch": 2.4}, guidance=3.0, options=options,
                            maps={"sketch": torch.full((8, 8), 0.5)})
    torch.testing.assert_close(grey(x, ab, cond), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("options", [GuidanceOptions(), OPTIONS["interval"]], ids=["plain", "interval"])
@pytest.mark.parametrize("shared", [False, True])
def test_where_a_map_is_0_the_output_does_not_depend_on_that_condition(shared, options):
    """Exactly, pixel by pixel, with the batched shared null row too. (Rescale and APG act per image, so
    with them a map's region follows the rest of its image: not asserted.)"""
    x, ab, cond = _inputs()
    poe = ProductOfExperts(_experts(shared), {"seg": 1.0, "sketch": 1.5, "text": 2.0}, guidance=3.0, options=options,
                           maps={"sketch": LEFT_OFF.repeat_interleave(2, 0).repeat_interleave(2, 1)})  # 16x16 -> 8x8
    other = dict(cond, sketch=torch.randn(2, 5) * 10)
    a, b = poe(x, ab, cond), poe(x, ab, other)
    assert torch.equal(_left(a), _left(b))
    assert not torch.allclose(a[..., 4:], b[..., 4:])  # heard on the right half
    # ... and on the left half the product is the one without that expert
    without = ProductOfExperts(_experts(shared), {"seg": 1.0, "sketch": 0.0, "text": 2.0}, guidance=3.0,
                               options=options)(x, ab, cond)
    torch.testing.assert_close(_left(a), _left(without), rtol=0, atol=1e-6)


def test_maps_follow_the_formula_per_pixel_and_where_nobody_is_heard_the_prior_is_the_equal_mix():
    x, ab, cond = _inputs()
    experts = _experts()
    g = torch.Generator().manual_seed(3)
    maps = {"seg": torch.rand(8, 8, generator=g), "sketch": torch.rand(8, 8, generator=g), "text": LEFT_OFF}
    maps["seg"][:2, :2] = maps["sketch"][:2, :2] = 0  # with text's left half: nobody is heard there
    rel, s = {"seg": 0.5, "sketch": 1.0, "text": 2.5}, 1.7
    got = ProductOfExperts(experts, rel, guidance=s, clamp_x0=False, maps=maps)(x, ab, cond)
    r = {e.name: rel[e.name] * maps[e.name] for e in experts}  # (8, 8)
    total = sum(r.values())
    expected = torch.zeros_like(x)
    for e in experts:
        null, c = e.denoiser(x, ab, {}), e.denoiser(x, ab, {e.name: cond[e.name]})
        beta = torch.where(total > 0, r[e.name] / total.clamp_min(1e-12), torch.full_like(total, 1 / 3))
        expected += beta * null + s * r[e.name] * (c - null)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    nulls = sum(e.denoiser(x, ab, {}) for e in experts) / 3
    torch.testing.assert_close(got[..., :2, :2], nulls[..., :2, :2], rtol=0, atol=1e-6)


@pytest.mark.parametrize("shared", [False, True])
def test_expert_order_does_not_matter_with_maps(shared):
    x, ab, cond = _inputs()
    g = torch.Generator().manual_seed(4)
    maps = {m: torch.rand(8, 8, generator=g) for m in ("seg", "sketch", "text")}
    rel = {"seg": 0.7, "sketch": 1.3, "text": 2.1}
    ref = ProductOfExperts(_experts(shared), rel, guidance=2.5, maps=maps)(x, ab, cond)
    for perm in itertools.permutations(_experts(shared)):
        assert torch.equal(ProductOfExperts(list(perm), rel, guidance=2.5, maps=maps)(x, ab, cond), ref)


def test_a_black_map_turns_the_expert_off_and_maps_are_resampled_by_area():
    x, ab, cond = _inputs()
    rel = {"seg": 1.0, "sketch": 1.0, "text": 2.0}
    black = ProductOfExperts(_experts(), rel, guidance=3.0, maps={"sketch": torch.zeros(8, 8)})
    assert [e.name for e in black.active(cond)] == ["seg", "text"]
    off = ProductOfExperts(_experts(), {**rel, "sketch": 0.0}, guidance=3.0)
    assert torch.equal(black(x, ab, cond), off(x, ab, cond))
    big = torch.arange(16.0).repeat(16, 1) / 15  # (16, 16), columns 0..1
    on_grid = map_on_grid(big, (8, 8))
    assert on_grid.shape == (1, 1, 8, 8) and torch.allclose(on_grid[0, 0, 0], (big[0, ::2] + big[0, 1::2]) / 2)
    with pytest.raises(ValueError, match=r"reliability map of sketch must be \(H,W\) with values in \[0, 1\]"):
        ProductOfExperts(_experts(), rel, maps={"sketch": torch.full((8, 8), 1.5)})
    with pytest.raises(ValueError, match="reliability map given for unknown expert"):
        ProductOfExperts(_experts(), rel, maps={"colour": torch.ones(8, 8)})


def test_heard_steps_and_their_alpha_bar_interval():
    assert heard_steps((0, 0.6), 10) == [1, 2, 3, 4, 5, 6]
    assert heard_steps((0.5, 1), 4) == [3, 4] and heard_steps((0, 1), 3) == [1, 2, 3]
    assert heard_steps((0.9, 1), 4) == []
    a = step_alpha_bars(4, "ddim")
    assert bool((a[1:] > a[:-1]).all())
    assert alpha_bar_window((0, 1), a) == (0.0, 1.0) and alpha_bar_window((0.9, 1), a) is None
    lo, hi = alpha_bar_window((0.5, 1), a)
    assert float(a[1]) < lo < float(a[2]) and hi == 1.0
    lo, hi = alpha_bar_window((0, 0.5), a)
    assert lo == 0.0 and float(a[1]) < hi < float(a[2])


def test_the_window_0_1_is_today():
    x, ab, cond = _inputs()
    rel = {"seg": 1.0, "sketch": 1.5, "text": 2.0}
    ref = ProductOfExperts(_experts(), rel, guidance=3.0)(x, ab, cond)
    always = ProductOfExperts(_experts(), rel, guidance=3.0, windows={"sketch": (0.0, 1.0)})
    assert torch.equal(always(x, ab, cond), ref)


@pytest.mark.parametrize("shared", [False, True])
def test_a_window_0_5_1_is_that_expert_at_r_0_during_the_first_half(shared):
    """Sampled: the product with sketch's window (0.5, 1) equals, step by step, the product with sketch at
    r = 0 for steps 1-2 of 4 and as set for steps 3-4 (a reference that switches by counting its calls)."""
    _, _, cond = _inputs()
    rel = {"seg": 1.0, "sketch": 1.5, "text": 2.0}
    window = alpha_bar_window((0.5, 1), step_alpha_bars(4, "ddim"))
    windowed = ProductOfExperts(_experts(shared), rel, guidance=3.0, windows={"sketch": window})
    off = ProductOfExperts(_experts(shared), {**rel, "sketch": 0.0}, guidance=3.0)
    on = ProductOfExperts(_experts(shared), rel, guidance=3.0)
    calls = []

    def switching(x_t, alpha_bar, c):
        calls.append(None)
        return (off if len(calls) <= 2 else on)(x_t, alpha_bar, c)

    def run(denoiser):
        return [f.image for f in sample(denoiser, cond, (2, 3, 8, 8), steps=4, sampler="ddim",
                                        generator=torch.Generator().manual_seed(0))]
    got, want = run(windowed), run(switching)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert not torch.equal(got[-1], run(on)[-1]) and not torch.equal(got[-1], run(off)[-1])


def test_a_window_acts_per_row_by_each_rows_noise_level():
    x, _, cond = _inputs()
    ab = torch.tensor([0.3, 0.8])  # row 0 outside the window, row 1 inside
    rel = {"seg": 1.0, "sketch": 1.5, "text": 2.0}
    got = ProductOfExperts(_experts(), rel, guidance=3.0, windows={"sketch": (0.5, 1.0)})(x, ab, cond)
    off = ProductOfExperts(_experts(), {**rel, "sketch": 0.0}, guidance=3.0)(x, ab, cond)
    on = ProductOfExperts(_experts(), rel, guidance=3.0)(x, ab, cond)
    torch.testing.assert_close(got[0], off[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[1], on[1], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="window of sketch must be an alpha_bar interval"):
        ProductOfExperts(_experts(), rel, windows={"sketch": (0.6, 0.2)})


def test_conflict_is_high_where_two_experts_push_opposite_ways_and_0_elsewhere():
    """Two field experts: a pushes +v everywhere; b pushes -v on the left half, +v on the right."""
    den = FieldDummy(("a", "b"))
    experts = [Expert("a", den, ("a",)), Expert("b", den, ("b",))]
    v = torch.tensor([1.0, -0.5, 0.25]).view(1, 3, 1, 1)
    push_a = v.expand(2, 3, 8, 8).clone()
    push_b = push_a.clone()
    push_b[..., :4] *= -1
    x, ab = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.full((2,), 0.5)
    poe = ProductOfExperts(experts, {"a": 1.0, "b": 2.0}, guidance=2.0, keep_conflict=True)
    poe(x, ab, {"a": push_a, "b": push_b})
    c = poe.last_conflict
    assert c.shape == (2, 8, 8)  # over 3 x 3 pixels: the two columns at the border mix both halves
    assert bool((c[..., :3] > 0.99).all()) and bool((c[..., 5:] < 1e-6).all())
    assert bool((c[..., 3] > c[..., 4]).all()) and bool((c[..., 3:5] > 0.05).all())
    # one expert muted on the left: fewer than 2 push there, no conflict
    muted = ProductOfExperts(experts, {"a": 1.0, "b": 2.0}, guidance=2.0, keep_conflict=True, maps={"b": LEFT_OFF})
    muted(x, ab, {"a": push_a, "b": push_b})
    assert float(muted.last_conflict.abs().max()) < 1e-6
    # orthogonal pushes: 0.5; one expert alone or none: 0
    ortho = torch.zeros(1, 3, 1, 1)
    ortho[0, 0] = 1.0
    assert torch.allclose(conflict_map([ortho.expand(1, 3, 2, 2), ortho.roll(1, 1).expand(1, 3, 2, 2)]),
                          torch.full((1, 2, 2), 0.5))
    alone = ProductOfExperts(experts, {"a": 1.0, "b": 0.0}, keep_conflict=True)
    alone(x, ab, {"a": push_a, "b": push_b})
    assert torch.equal(alone.last_conflict, torch.zeros(2, 8, 8))


def test_a_conflict_over_a_neighbourhood_reads_structure_through_channel_noise():
    """Two experts whose pushes agree on the left and oppose on the right, plus noise as large as the
    push: per pixel (3 channels) the halves blur into each other; over 3 x 3 pixels they separate."""
    gen = torch.Generator().manual_seed(0)
    push = torch.ones(1, 3, 16, 16)
    other = push.clone()
    other[..., 8:] *= -1
    noisy = [t + 1.5 * torch.randn(t.shape, generator=gen) for t in (push, other)]
    per_pixel, pooled = conflict_map(noisy), conflict_map(noisy, neighbourhood=3)

    def contrast(c):  # the halves' difference over the speckle within them
        left, right = c[..., :7], c[..., 9:]
        return float(right.mean() - left.mean()) / float(torch.cat([left - left.mean(), right - right.mean()]).std())

    assert contrast(pooled) > 2 and contrast(pooled) > 2 * contrast(per_pixel)
    assert torch.equal(conflict_map(noisy, neighbourhood=1), per_pixel)  # a neighbourhood of 1: the pixel itself
