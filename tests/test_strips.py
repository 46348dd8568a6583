"""The explain view: strips of runs sampled side by side from the same noise (each expert alone beside
the product, a reliability swept) equal the runs made one at a time, make one network call per expert
per step, and are shown, cached and saved for slides."""

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import WORLDS, editor, request, rgba, run_inputs
from unite_demo import limits
from unite_demo.method.combine import REMEDIES, ProductOfExperts, ProductStrip
from unite_demo.method.experts import Expert
from unite_demo.studio import pages, results, runs
from unite_demo.studio.inputs import build_strip
from unite_demo.studio.strips import MARK, make_strip, strip_image
from unite_demo.studio.studio import Studio
from unite_demo.worlds.conditions import ConditionError

from dummies import DummyDenoiser

TOLERANCE = 1e-4  # on the final tensor in [-1, 1]: rows batched with other rows differ only in float order


@pytest.fixture(scope="module")
def world():
    return WORLDS.get()


def example_widgets(k=0, **more):
    ex = pages.example_inputs(k)
    return dict(seg=editor(rgba(ex.seg)), sketch=editor(rgba(ex.sketch)), text=ex.text, seed=ex.seed, **more)


def final(world, reqs) -> torch.Tensor:
    """The final images of these runs side by side (B, 3, H, W)."""
    return [f for f in world.generate_strip(reqs) if f.done][0].image


def alone_widgets(widgets: dict, modality: str) -> dict:
    """The same inputs with every other modality switched off, as a visitor would ask for one expert."""
    return {**widgets, **{f"{m}_on": m == modality for m in ("seg", "sketch", "text")}}


def test_each_expert_alone_and_the_product_equal_their_runs_one_at_a_time(world):
    widgets = example_widgets(0, r_seg=2.0, r_sketch=1.5, r_text=2.5)
    strip = build_strip(world, run_inputs(view="experts", **widgets))
    assert strip.labels == ("segmentation alone", "sketch alone", "text alone", "product") and strip.marked == 3
    together = final(world, strip.requests)
    for k, m in enumerate(("seg", "sketch", "text")):
        one = final(world, [request(world, **alone_widgets(widgets, m))])
        assert (together[k] - one[0]).abs().max() <= TOLERANCE, m
    product = final(world, [request(world, **widgets)])
    assert (together[3] - product[0]).abs().max() <= TOLERANCE
    assert (together[0] - together[3]).abs().max() > 0.1  # the strip's images are different images


def test_the_sweep_equals_the_runs_at_those_reliabilities(world):
    widgets = example_widgets(1, steps=6)
    strip = build_strip(world, run_inputs(view="sweep", sweep="sketch", sweep_values="0, 0.5, 3", **widgets))
    as_set = world.default_reliability()["sketch"]
    assert strip.labels == ("sketch 0", "sketch 0.5", f"sketch {as_set:g} (as set)", "sketch 3") and strip.marked == 2
    together = final(world, strip.requests)
    for k, r in enumerate((0.0, 0.5, as_set, 3.0)):
        one = final(world, [request(world, **widgets, r_sketch=r)])
        assert (together[k] - one[0]).abs().max() <= TOLERANCE, r
    assert (together[0] - together[3]).abs().max() > 0.1


def test_a_strip_makes_one_call_per_network_per_step_with_every_products_rows():
    experts = [Expert(m, DummyDenoiser((m,), seed=i + 1), (m,)) for i, m in enumerate(("seg", "sketch", "text"))]
    g = torch.Generator().manual_seed(0)
    cond = {k: torch.randn(1, 5, generator=g) for k in ("seg", "sketch", "text")}
    r = {"seg": 1.0, "sketch": 2.0, "text": 0.5}
    products = [ProductOfExperts(experts, {m: r[m]}, guidance=3.0, options=REMEDIES["interval"]) for m in r]
    products.append(ProductOfExperts(experts, r, guidance=3.0, options=REMEDIES["interval"]))
    x = torch.randn(4, 3, 8, 8, generator=g)
    ab = torch.tensor([0.2, 0.2, 0.2, 0.2])
    strip = ProductStrip(products, [cond] * 4)
    for e in experts:
        e.denoiser.calls.clear()
    together = strip(x, ab, {})
    assert [e.denoiser.calls for e in experts] == [[4], [4], [4]]  # cond + null of the expert alone and the product
    assert strip.calls == 3 and strip.rows == 12
    for b, p in enumerate(products):
        torch.testing.assert_close(together[b:b + 1], p(x[b:b + 1], ab[b:b + 1], cond), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="4 products denoises as many rows"):
        strip(x[:2], ab[:2], {})


def test_a_product_whose_inputs_differ_from_the_others_gets_null_rows_for_what_it_lacks():
    shared = DummyDenoiser(("seg", "text"), seed=3)
    experts = [Expert("seg", shared, ("seg",)), Expert("text", shared, ("text",))]
    g = torch.Generator().manual_seed(1)
    full = {k: torch.randn(1, 5, generator=g) for k in ("seg", "text")}
    seg_only = {"seg": full["seg"]}
    products = [ProductOfExperts(experts, {"seg": 1.0, "text": 1.0}, guidance=2.0) for _ in range(2)]
    x, ab = torch.randn(2, 3, 8, 8, generator=g), torch.full((2,), 0.5)
    together = ProductStrip(products, [seg_only, full])(x, ab)
    assert shared.calls == [2 + 3]  # seg's cond and null rows, then seg's, text's and the shared null row
    torch.testing.assert_close(together[:1], products[0](x[:1], ab[:1], seg_only), rtol=0, atol=1e-6)
    torch.testing.assert_close(together[1:], products[1](x[1:], ab[1:], full), rtol=0, atol=1e-6)


def test_a_strips_runs_must_share_seed_steps_and_sampler(world):
    a, b = request(world, text="a face", seed=1), request(world, text="a face", seed=2)
    with pytest.raises(ValueError, match="differ in \\['seed'\\]"):
        next(world.generate_strip([a, b]))


@pytest.mark.parametrize("view, sweep, values, words", [
    ("all", None, None, "view: unknown view 'all'; accepted: product, experts, sweep"),
    ("sweep", "class", None, "sweep: 'class' is not a modality this run has an input for"),
    ("sweep", "text", "0, 1, lots", "sweep value: expected a number from 0 to 3, got 'lots'"),
    ("sweep", "text", "0, inf", "sweep value: expected a number from 0 to 3, got 'inf'"),
    ("sweep", "text", ",".join(str(v / 4) for v in range(9)), "sweep values: at most 7 different values, got 9"),
    ("sweep", "text", 5, "sweep values: expected numbers like 0, 0.5, 1, 2, 3, got 5"),
])
def test_a_bad_view_modality_or_value_is_named(world, view, sweep, values, words):
    with pytest.raises(ConditionError) as e:
        build_strip(world, run_inputs(text="a face", view=view, sweep=sweep, sweep_values=values))
    assert words in str(e.value)


def test_views_with_fewer_experts_say_what_they_show(world):
    req = request(world, text="a face")
    assert make_strip(req).labels == ("product",)
    one = make_strip(req, "experts")
    assert one.labels == ("text alone", "product") and "only one expert is on" in one.notes[0]
    assert make_strip(request(world), "experts").notes[0].startswith("no expert is on")
    swept = make_strip(req, "sweep", "text", [2, 0.5])  # the value as set (2) is among them: not added twice
    assert swept.labels == ("text 0.5", "text 2 (as set)") and swept.caption() == "text 0.5 · [text 2 (as set)]"
    assert swept.notes == ()


def test_sweep_values_out_of_range_are_swept_at_the_nearest_end_and_said_once(world):
    strip = build_strip(world, run_inputs(text="a face", view="sweep", sweep="text", sweep_values="0, 9, 9, -1"))
    assert strip.labels == ("text 0", "text 2 (as set)", "text 3")
    assert strip.notes == ("sweep value: 9 is over the maximum 3; 3 is used",
                           "sweep value: -1 is under the minimum 0; 0 is used")


def test_the_strip_image_puts_each_image_over_its_label_and_frames_the_run_as_set():
    images = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (0, 80, 160)])
    img = np.asarray(strip_image(images, ("a", "b", "product"), 2, 64))
    assert img.shape == (64 + 22, 3 * 64 + 2 * 6, 3)
    x2 = 2 * (64 + 6)
    assert (img[30, 30] == 0).all() and (img[30, 70 + 30] == 80).all() and (img[30, x2 + 30] == 160).all()
    assert (img[0, x2 + 30] == MARK).all() and not (img[0, 30] == MARK).all()  # only the run as set is framed
    label_rows = img[64:]
    orange = (label_rows[..., 0] > 200) & (label_rows[..., 2] < 120)
    assert orange[:, x2:].any() and not orange[:, :x2].any()  # the run as set's label in the frame's colour
    assert (label_rows[:, :64] < 100).all(-1).any() and (label_rows[:, 70:134] < 100).all(-1).any()  # the others dark


def test_an_explain_run_streams_strips_caches_them_and_saves_png_and_gif(world, tmp_path):
    cache, saved = results.ResultCache(), results.SavedRuns(tmp_path / "saved")
    widgets = example_widgets(2, steps=4, view="experts")
    studio = Studio(WORLDS, cache, saved=saved)
    first = list(studio.run(run_inputs(**widgets)))
    assert [u.step for u in first] == [1, 2, 3, 4, 4] and first[-1].done
    strips = [u.strip for u in first]
    assert all(s.size == (4 * limits.PREVIEW_SIZE + 3 * 6, limits.PREVIEW_SIZE + 22) for s in strips[:-1])
    assert strips[-1].size == (4 * limits.RESULT_SIZE + 3 * 6, limits.RESULT_SIZE + 22)
    assert len({s.tobytes() for s in strips[:-1]}) >= 3
    assert first[0].strip_caption == "segmentation alone · sketch alone · text alone · [product]"
    product = np.asarray(strips[-1])[:limits.RESULT_SIZE, 3 * (limits.RESULT_SIZE + 6):][4:-4, 4:-4]
    assert np.abs(product.astype(int) - np.asarray(first[-1].image)[4:-4, 4:-4]).max() <= 1  # result = the product
    png, gif = first[-1].files
    assert Image.open(png).size == strips[-1].size
    with Image.open(gif) as anim:
        assert anim.n_frames == 5 and anim.size == strips[0].size
    outputs = [u.outputs() for u in first]
    assert all(tuple(o) == runs.outputs() for o in outputs) and (outputs[-1]["save_png"], outputs[-1]["save_gif"]) == (png, gif)
    assert all(o["save_png"] is runs.UNCHANGED for o in outputs[:-1])
    again = list(studio.run(run_inputs(**widgets)))
    assert len(again) == 1 and again[0].cached and again[0].strip.tobytes() == strips[-1].tobytes()
    assert again[0].files == (png, gif) and again[0].strip_caption == first[0].strip_caption
    product_view = list(studio.run(run_inputs(**{**widgets, "view": "product"})))
    assert product_view[-1].strip is None and product_view[0].outputs()["strip"] is None  # clears a strip shown before
    assert product_view[1].outputs()["strip"] is runs.UNCHANGED


def test_saved_runs_keep_the_newest_and_the_cache_is_bounded_in_bytes(tmp_path, world):
    saved = results.SavedRuns(tmp_path, keep=2)
    strip = make_strip(request(world, text="a face"))
    frames = (np.zeros((1, 32, 32, 3), np.uint8),) * 2
    for key in ("k1", "k2", "k3"):
        saved.save(key, frames, strip)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k2", "k3"]
    cache = results.ResultCache(max_items=10, max_bytes=3000)
    for key in "abc":
        cache.put(key, [np.zeros(1000, np.uint8)])
    cache.put("d", [np.zeros(1000, np.uint8)])
    assert cache.get("a") is None and len(cache) == 3 and cache.bytes == 3000
    cache.put("big", [np.zeros(5000, np.uint8)])  # larger than the budget: kept alone, the others go
    assert len(cache) == 1 and cache.get("big") is not None
