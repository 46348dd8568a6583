"""Invariants of the generalized product of experts (DESIGN.md section 1), with dummy experts."""

import itertools

import pytest
import torch
from diffusers import DDPMScheduler

from unite_demo.method.combine import GuidanceOptions, ProductOfExperts, combine_eps, prior_weights
from unite_demo.method.experts import Expert, NoiseSchedule, eps_to_x0, to_eps, x0_to_eps

from dummies import DummyDenoiser, ScheduledDummy, true_eps


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
