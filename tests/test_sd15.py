"""The pretrained worlds (sd15, sd15-dit) through tiny randomly initialised networks of the same
diffusers/transformers classes, written to a local folder by the test and loaded by the real
loading code: the combination's invariants, batched = one expert at a time, row routing of the
ControlNets, SD <-> DiT schedule alignment, configuration, previews, unloading, the benchmark."""

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from unite_demo.method.combine import ProductOfExperts
from unite_demo.method.experts import Expert
from unite_demo.worlds import pretrained as sd15
from unite_demo.worlds.conditions import ConditionError
from unite_demo.worlds.pretrained import PretrainedConfig, WeightsMissing
from unite_demo.worlds.pretrained.labels import (ADE20K, ADE20K_COMMON, ADE20K_NAMES, ADE20K_RGB, ade20k_painter_order,
                                                 imagenet_classes)

from tiny_sd15 import SIZE
from tiny_sd15 import seg_rgb as _seg_rgb

ROOT = Path(__file__).resolve().parent.parent
ENV_VARS = [var for var, _ in sd15.ENV.values()]


@pytest.fixture(scope="module")
def folders(sd15_folders):
    return sd15_folders


@pytest.fixture(scope="module")
def config(folders):
    return PretrainedConfig(sd15=str(folders["sd15"]), scribble=str(folders["scribble"]), seg=str(folders["seg"]),
                            dit=str(folders["dit"]), image_size=SIZE, device="cpu")


@pytest.fixture(scope="module")
def world(config):
    return sd15.load_world("sd15-dit", config)


@pytest.fixture
def clean_env(monkeypatch):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _sketch(s=SIZE):
    yy, xx = np.mgrid[:s, :s]
    return np.where(np.abs(np.hypot(yy - s / 2, xx - s / 2) - s / 4) < 2, 255, 0).astype(np.uint8)


def _inputs(**extra):
    return {"text": "a cat", "sketch": _sketch(), "seg": _seg_rgb(), "class_name": "goldfish", **extra}


def _x(seed=0):
    return torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(seed))


AB = torch.tensor([0.4])


# ---------------------------------------------------------------------------------------------
# Labels

def test_ade20k_palette_and_imagenet_names():
    assert len(ADE20K) == 150 and ADE20K_RGB.shape == (150, 3)
    assert ADE20K[0] == ("wall", (120, 120, 120)) and ADE20K[2] == ("sky", (6, 230, 230))
    assert ADE20K[149] == ("flag", (92, 0, 255))
    order = ade20k_painter_order()
    assert sorted(order) == list(range(150))
    assert [ADE20K_NAMES[i] for i in order[:len(ADE20K_COMMON)]] == list(ADE20K_COMMON)
    names = imagenet_classes()
    assert len(names) == 1000 and names[1] == "goldfish" and len(set(names)) == 1000


# ---------------------------------------------------------------------------------------------
# Configuration and loading

def test_world_is_hidden_and_explained_when_weights_are_missing(tmp_path, clean_env):
    from unite_demo.worlds import registry as worlds

    clean_env.setenv("UNITE_SD15", str(tmp_path / "nowhere"))
    clean_env.setenv("UNITE_CONTROLNET_SCRIBBLE", "unite-test/not-a-cached-repo")
    assert sd15.configured_worlds() == []
    assert worlds.available() == ["cartoon-faces"]
    with pytest.raises(WeightsMissing) as e:  # worlds.NeedsWeights: also a ConditionError
        worlds.load("sd15")
    msg = str(e.value)
    assert msg.startswith("world 'sd15' needs weights: set UNITE_DOWNLOAD=1") and msg.endswith("available here: "
                                                                                                 "cartoon-faces")
    assert "UNITE_SD15: no such folder" in msg and "UNITE_CONTROLNET_SCRIBBLE: no such folder here" in msg
    assert "docs/pretrained-worlds.md" in msg and str(tmp_path) not in msg  # a visitor may read it
    # The loader's own message lists every missing part and how to fetch them.
    with pytest.raises(WeightsMissing) as e:
        sd15.load_world("sd15")
    msg = str(e.value)
    assert "UNITE_SD15=" in msg and "no such folder" in msg and "UNITE_CONTROLNET_SCRIBBLE=" in msg
    assert "UNITE_DOWNLOAD=1" in msg and "hf download" in msg and "docs/pretrained-worlds.md" in msg
    # A bad setting hides the worlds (the built-in world keeps working) and is named on loading.
    clean_env.setenv("UNITE_SD15_SIZE", "500")
    with pytest.warns(UserWarning, match="multiple of 64"):
        assert worlds.available() == ["cartoon-faces"]
    with pytest.raises(ConditionError, match="world 'sd15' cannot be loaded: fix the setting: UNITE_SD15_SIZE must "
                                             "be a multiple of 64"):
        worlds.load("sd15")


def test_page_lists_the_worlds_when_configured(config, clean_env):
    from unite_demo.worlds import registry as worlds

    for var, value in config.env().items():
        clean_env.setenv(var, value)
    assert worlds.available() == ["cartoon-faces", "sd15", "sd15-dit"]
    clean_env.setenv("UNITE_DIT", str(Path(config.dit) / "transformer"))  # wrong layout: sd15-dit hidden
    assert worlds.available() == ["cartoon-faces", "sd15"]


def test_world_loads_from_local_folders_and_generates(world):
    assert world.name == "sd15-dit" and world.modalities == ("text", "sketch", "seg", "class")
    sd = world.experts[0].denoiser
    assert all(e.denoiser is sd for e in world.experts[:3])  # one UNet shared by three experts
    assert world.experts[3].denoiser.null_class == 1000
    assert sd.unet.dtype == torch.float32 and sd.space == "sd-vae latent 4x8x8" == world.experts[3].denoiser.space
    assert (world.beta_schedule, world.beta_start, world.beta_end) == ("scaled_linear", 0.00085, 0.012)
    req = world.request(**_inputs(), steps=2)
    assert req.values.get("class") == 1 and req.guidance == sd15.SD_DEFAULTS["guidance"]
    frames = list(world.generate(req))
    assert len(frames) == 3 and frames[-1].done
    assert frames[0].image.shape == (1, 3, 8, 8)  # the linear latent -> RGB preview
    assert frames[-1].image.shape == (1, 3, SIZE, SIZE)  # the VAE's image
    for f in frames:
        assert torch.isfinite(f.image).all() and f.image.abs().max() <= 1
    again = list(world.generate(world.request(**_inputs(), steps=2)))
    assert torch.equal(again[-1].image, frames[-1].image)  # deterministic for a seed


def test_requests_validate_world_inputs(world):
    from unite_demo.worlds.conditions import ConditionError

    assert world.request(class_name=207).values.get("class") == 207
    assert world.request(class_name="Goldfish").values.get("class") == 1
    with pytest.raises(ConditionError, match="unknown class name 'goldfsh'"):
        world.request(class_name="goldfsh")
    with pytest.raises(ConditionError, match="from 0 to 999"):
        world.request(class_name=1000)
    seg = world.request(seg=_seg_rgb("sea", "sand")).values.get("seg")
    assert set(np.unique(seg)) == {ADE20K_NAMES.index("sea"), ADE20K_NAMES.index("sand")}
    with pytest.raises(ConditionError, match="not palette colours"):
        world.request(seg=np.full((SIZE, SIZE, 3), (3, 3, 3), np.uint8))
    assert "unconditional image" in " ".join(world.request().notes)


def test_sd15_world_has_no_class_expert(config):
    w = sd15.load_world("sd15", config)
    assert w.modalities == ("text", "sketch", "seg")
    from unite_demo.worlds.conditions import ConditionError
    with pytest.raises(ConditionError, match="no class expert"):
        w.request(class_name=3)


# ---------------------------------------------------------------------------------------------
# The product of experts through these networks

def _cond(world, **inputs):
    return world.conditions(world.request(**_inputs(**inputs)))


def test_single_expert_with_r1_s1_is_that_expert(world):
    cond = _cond(world)
    x = _x()
    for e in world.experts:
        alone = ProductOfExperts(world.experts, {e.name: 1.0}, guidance=1.0)(x, AB, {k: cond[k] for k in e.reads})
        direct = e.denoiser(x, AB, {k: cond[k] for k in e.reads})
        assert torch.allclose(alone, direct, atol=1e-5), e.name


def test_identical_experts_reproduce_one(world):
    sd = world.experts[0].denoiser
    cond = _cond(world)
    x = _x(1)
    one = ProductOfExperts([Expert("sketch", sd, ("sketch",))], {"sketch": 1.0}, guidance=3.0)(x, AB, cond)
    two = ProductOfExperts([Expert("a", sd, ("sketch",)), Expert("b", sd, ("sketch",))], {"a": 0.5, "b": 0.5},
                           guidance=3.0)(x, AB, cond)
    assert torch.allclose(one, two, atol=1e-5)


def test_zero_reliability_makes_the_output_independent_of_that_condition(world):
    x = _x(2)
    rel = {"text": 1.0, "sketch": 1.0, "seg": 0.0, "class": 1.0}
    mix = ProductOfExperts(world.experts, rel, guidance=4.0)
    a = mix(x, AB, _cond(world, seg=_seg_rgb("sea", "sand")))
    b = mix(x, AB, _cond(world, seg=_seg_rgb("building", "road")))
    c = ProductOfExperts(world.experts, {**rel, "seg": 1.0}, guidance=4.0)(x, AB, _cond(world, seg=_seg_rgb()))
    assert torch.equal(a, b) and not torch.allclose(a, c, atol=1e-4)
    rel = {"text": 0.0, "sketch": 1.0, "seg": 1.0, "class": 1.0}
    mix = ProductOfExperts(world.experts, rel, guidance=4.0)
    assert torch.equal(mix(x, AB, _cond(world, text="a cat")), mix(x, AB, _cond(world, text="a photo")))


def test_order_of_experts_does_not_matter(world):
    cond, x = _cond(world), _x(3)
    rel = {"text": 1.0, "sketch": 0.5, "seg": 2.0, "class": 1.5}
    a = ProductOfExperts(world.experts, rel, guidance=5.0)(x, AB, cond)
    b = ProductOfExperts(list(reversed(world.experts)), rel, guidance=5.0)(x, AB, cond)
    assert torch.equal(a, b)


def test_batched_step_equals_one_expert_at_a_time(world):
    cond, x = _cond(world), _x(4)
    rel = {"text": 1.0, "sketch": 0.7, "seg": 1.3, "class": 0.5}
    batched = ProductOfExperts(world.experts, rel, guidance=5.0)
    loop = ProductOfExperts(world.experts, rel, guidance=5.0, batched=False)
    a, b = batched(x, AB, cond), loop(x, AB, cond)
    assert (a - b).abs().max() <= 1e-4
    # The SD experts take one call of N + 1 = 4 rows, DiT one of 2 rows.
    assert (batched.calls, batched.rows) == (2, 6) and (loop.calls, loop.rows) == (6, 6)
    # And whole runs agree.
    req = world.request(**_inputs(), steps=3)
    fa = list(world.generate(req))[-1].image
    fb = list(world.generate(req, batched=False))[-1].image
    assert (fa - fb).abs().max() <= 1e-4


def test_controlnets_run_only_on_their_rows(world):
    """Rows [sketch, seg, prompt, null] in one call equal each row alone; the null row is the bare
    UNet on the empty prompt, a sketch row the UNet + scribble ControlNet on the empty prompt."""
    sd = world.experts[0].denoiser
    c = _cond(world)
    x = _x(5).repeat(4, 1, 1, 1)
    z = torch.zeros_like
    rows = {"sketch": torch.cat([c["sketch"], z(c["sketch"]), z(c["sketch"]), z(c["sketch"])]),
            "seg": torch.cat([z(c["seg"]), c["seg"], z(c["seg"]), z(c["seg"])]),
            "text": torch.cat([z(c["text"]), z(c["text"]), c["text"], z(c["text"])])}
    both = sd(x, AB.repeat(4), rows)
    alone = [sd(x[:1], AB, {"sketch": c["sketch"]}), sd(x[:1], AB, {"seg": c["seg"]}),
             sd(x[:1], AB, {"text": c["text"]}), sd(x[:1], AB, {})]
    assert torch.allclose(both, torch.cat(alone), atol=1e-5)
    t = sd.schedule.timestep_for(AB)
    with torch.inference_mode():
        bare = sd.unet(x[:1], t, encoder_hidden_states=sd.null_text).sample
        d, m = sd.controlnets["sketch"](x[:1], t, encoder_hidden_states=sd.null_text, controlnet_cond=c["sketch"],
                                        return_dict=False)
        sketched = sd.unet(x[:1], t, encoder_hidden_states=sd.null_text, down_block_additional_residuals=d,
                           mid_block_additional_residual=m).sample
    assert torch.allclose(alone[3], bare, atol=1e-5) and torch.allclose(alone[0], sketched, atol=1e-5)
    assert not torch.allclose(alone[0], bare, atol=1e-3)  # the ControlNet does act


def test_option_lets_spatial_experts_read_the_prompt(world):
    req = world.request(**_inputs())
    assert [e.reads for e in world.mixture(req).experts] == [("class",), ("seg",), ("sketch",), ("text",)]
    world.spatial_prompt = True
    try:
        mix = world.mixture(req)
        assert [e.reads for e in mix.experts] == [("class",), ("seg", "text"), ("sketch", "text"), ("text",)]
        assert [e.reads for e in world.mixture(world.request(sketch=_sketch())).experts][2] == ("sketch",)
    finally:
        world.spatial_prompt = False
    sd = world.experts[0].denoiser
    c, x = _cond(world), _x(6)
    with_prompt = sd(x, AB, {"sketch": c["sketch"], "text": c["text"]})
    t = sd.schedule.timestep_for(AB)
    with torch.inference_mode():
        d, m = sd.controlnets["sketch"](x, t, encoder_hidden_states=c["text"], controlnet_cond=c["sketch"],
                                        return_dict=False)
        manual = sd.unet(x, t, encoder_hidden_states=c["text"], down_block_additional_residuals=d,
                         mid_block_additional_residual=m).sample
    assert torch.allclose(with_prompt, manual, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# DiT: its own schedule, its own null class, learned sigma

def test_schedule_alignment_between_sd_and_dit(world):
    sd, dit = world.experts[0].denoiser, world.experts[3].denoiser
    sd_ac, dit_ac = sd.schedule.alphas_cumprod, dit.schedule.alphas_cumprod
    assert dit_ac[-1] < sd_ac[-1] < sd_ac[0] < dit_ac[0]  # SD's range lies inside DiT's: no clamping
    ts = torch.tensor([0, 10, 100, 250, 500, 750, 999])
    ab = sd_ac[ts].float()
    assert torch.allclose(sd.schedule.timestep_for(ab), ts.float(), atol=1e-3)
    t_dit = dit.schedule.timestep_for(ab)
    lo, frac = t_dit.floor().long(), t_dit - t_dit.floor()
    hi = (lo + 1).clamp(max=999)
    log_ab = (1 - frac.double()) * dit_ac[lo].log() + frac.double() * dit_ac[hi].log()
    assert torch.allclose(log_ab.exp(), ab.double(), rtol=1e-4)  # DiT's alpha_bar at t_dit is the master's
    assert (t_dit[1:] > t_dit[:-1]).all()
    # SD's first step is already noisier than DiT's (t 0 -> 4.8), and DiT reaches SD's noisiest
    # level well before its own end (t 999 -> 727): the schedules really differ.
    assert 4 < t_dit[0] < 6 and 700 < t_dit[-1] < 750
    # And DiT is asked at exactly that timestep, with its null class for null rows.
    seen = {}

    def spy(module, args, kwargs):
        seen.update(t=kwargs["timestep"].clone(), labels=kwargs["class_labels"].clone())

    handle = dit.transformer.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        onehot = torch.zeros(3, 1000)
        onehot[0, 207] = 1
        dit(_x().repeat(3, 1, 1, 1), ab[[2, 4, 6]], {"class": onehot})
    finally:
        handle.remove()
    assert torch.allclose(seen["t"], t_dit[[2, 4, 6]]) and seen["labels"].tolist() == [207, 1000, 1000]


def test_dit_eps_is_the_first_half_of_its_output(world):
    dit = world.experts[3].denoiser
    x = _x(7)
    onehot = torch.nn.functional.one_hot(torch.tensor([5]), 1000).float()
    eps = dit(x, AB, {"class": onehot})
    with torch.inference_mode():
        out = dit.transformer(x, timestep=dit.schedule.timestep_for(AB), class_labels=torch.tensor([5])).sample
    assert out.shape[1] == 8 and torch.allclose(eps, out[:, :4], atol=1e-6)
    assert not torch.allclose(eps, dit(x, AB, {}), atol=1e-4)  # the class matters


def test_experts_of_different_spaces_are_refused(world):
    sd = world.experts[0].denoiser

    class Pixel:
        space, reads = "pixel 3x64x64", ("seg",)

    with pytest.raises(ValueError, match="different image spaces"):
        ProductOfExperts([Expert("text", sd, ("text",)), Expert("seg", Pixel(), ("seg",))], {"text": 1.0})


# ---------------------------------------------------------------------------------------------
# Previews, unloading, the module's promises

def test_linear_preview_matches_its_documented_matrix():
    x0 = torch.zeros(1, 4, 2, 2)
    x0[0, 3] = 1.0  # latent channel 3 alone
    rgb = sd15.latent_to_rgb(x0)
    assert rgb.shape == (1, 3, 2, 2) and torch.allclose(rgb[0, :, 0, 0], torch.tensor([-0.184, -0.271, -0.473]))


def test_tiny_preview_decoder_when_configured(config, folders):
    from dataclasses import replace

    w = sd15.load_world("sd15", replace(config, preview_decoder=str(folders["taesd"])))
    frames = list(w.generate(w.request(text="a cat", steps=1)))
    assert frames[0].image.shape == (1, 3, SIZE, SIZE) and frames[-1].image.shape == (1, 3, SIZE, SIZE)


def test_unloading_frees_the_networks(config, folders, world, clean_env, tmp_path):
    import shutil

    from unite_demo.studio.studio import LoadedWorlds

    loaded = LoadedWorlds()

    for var, value in config.env().items():
        clean_env.setenv(var, value)
    w = loaded.get("sd15")
    assert loaded.get("sd15") is w
    # sd15 and sd15-dit hold the same SD networks; unloading one leaves the other working.
    assert w.experts[0].denoiser.unet is world.experts[0].denoiser.unet
    loaded.unload("sd15")
    del w
    assert len(list(world.generate(world.request(text="a cat", steps=1)))) == 2
    # Weights no other world holds are freed.
    clean_env.setenv("UNITE_SD15", str(shutil.copytree(folders["sd15"], tmp_path / "sd15-copy")))
    w = loaded.get("sd15")
    ref = weakref.ref(w.experts[0].denoiser.unet)
    loaded.unload("sd15")
    with pytest.raises(RuntimeError, match="unloaded"):
        next(w.generate(w.request(text="a cat")))
    del w
    gc.collect()
    assert ref() is None
    w2 = loaded.get("sd15")  # loads again
    assert w2.experts[0].denoiser.unet is not None
    loaded.unload("sd15")


@pytest.mark.slow
def test_core_never_imports_gradio_and_lists_worlds_in_a_fresh_process(config):
    code = ("import sys; import unite_demo.studio.studio, unite_demo.worlds.pretrained; "
            "from unite_demo.worlds import registry; print(registry.available()); "
            "assert 'gradio' not in sys.modules, 'gradio imported'")
    env = {**os.environ, **config.env(), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "['cartoon-faces', 'sd15', 'sd15-dit']"


def test_benchmark_runs_on_tiny_networks(capsys):
    from unite_demo import bench_sd15

    result = bench_sd15.main(["--arch", "tiny", "--device", "cpu", "--iters", "1", "--warmup", "1", "--dit"])
    out = capsys.readouterr().out
    for label in ("ours: batched", "naive: one expert at a time", "diffusers: MultiControlNet + CFG", "naive / ours"):
        assert label in out
    assert result["ours_eager"]["ms"] > 0 and result["max_abs_diff_batched_vs_naive"] <= 1e-4


def test_two_threads_through_one_captured_graph_each_get_their_own_result(monkeypatch):
    """The CUDA-graph cache's logic on the CPU, with a stand-in capture whose replay reads the shared
    input buffer after a pause (as a real replay reads it on the GPU later): two runs at once in two
    threads must each get f(their own input), never the other's."""
    import threading
    import time

    from unite_demo.worlds.pretrained.denoisers import CapturedCalls

    class StandInGraph:
        def __init__(self, fn, static_in, static_out):
            self.fn, self.static_in, self.static_out = fn, static_in, static_out

        def replay(self):
            time.sleep(0.002)  # the other thread's copy-in lands here without a lock
            self.static_out.copy_(self.fn(*self.static_in))

    def capture(fn, inputs):
        static_in = [x.clone() for x in inputs]
        static_out = fn(*static_in).clone()
        return StandInGraph(fn, static_in, static_out), static_in, static_out

    monkeypatch.setattr(CapturedCalls, "_capture", staticmethod(capture))
    calls = CapturedCalls()
    fn = lambda x: x * 2 + 1  # noqa: E731
    wrong = []

    def run(offset):
        for k in range(30):
            x = torch.full((4,), float(offset + k))
            if not torch.equal(calls("layout", fn, x), fn(x)):
                wrong.append((offset, k))

    threads = [threading.Thread(target=run, args=(o,)) for o in (0, 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == [] and len(calls.graphs) == 1


def test_each_world_starts_from_its_own_reliabilities(config, world):
    """SD's prompt at s * r_text = 7.5 (its usual scale for one prompt), not the faces world's r_text
    times SD's s; with the prompt in the ControlNet rows too, 7.5 over the three; the page's
    sliders take the same values on a world change."""
    import dataclasses

    from unite_demo.studio.pages import world_page

    req = world.request(**_inputs())
    assert req.guidance * req.reliability["text"] == pytest.approx(7.5)
    assert {m: world_page(world).reliability[m] for m in req.reliability} == req.reliability
    spatial = sd15.load_world("sd15", dataclasses.replace(config, spatial_prompt=True))
    r = spatial.request(**{k: v for k, v in _inputs().items() if k != "class_name"})
    assert r.guidance * sum(r.reliability[m] for m in ("text", "seg", "sketch")) == pytest.approx(7.5)


def test_a_dit_with_pickled_weights_only_is_named_and_converts_once(config, folders, tmp_path):
    """DiT's hub weights are .bin files: missing() says so (not only that a config exists), with the
    conversion; scripts/convert_to_safetensors.py writes a folder that loads and gives the same eps."""
    import dataclasses
    import shutil

    from diffusers import DiTTransformer2DModel

    sys.path.insert(0, str(ROOT / "scripts"))
    import convert_to_safetensors

    pickled = tmp_path / "dit-bin"
    shutil.copytree(folders["dit"] / "scheduler", pickled / "scheduler")
    DiTTransformer2DModel.from_pretrained(folders["dit"], subfolder="transformer").save_pretrained(
        pickled / "transformer", safe_serialization=False)
    bin_config = dataclasses.replace(config, dit=str(pickled))
    problems = sd15.missing("sd15-dit", bin_config)
    assert len(problems) == 1 and "UNITE_DIT=" in problems[0] and "only pickled weights" in problems[0]
    assert "scripts/convert_to_safetensors.py" in problems[0] and sd15.configured_worlds(bin_config) == ["sd15"]
    assert convert_to_safetensors.main([str(pickled), "--out", str(tmp_path / "dit-safe")]) == 0
    safe_config = dataclasses.replace(config, dit=str(tmp_path / "dit-safe"))
    assert sd15.missing("sd15-dit", safe_config) == []
    converted = sd15.load_world("sd15-dit", safe_config)
    original = sd15.load_world("sd15-dit", config)
    cond = {"class": torch.nn.functional.one_hot(torch.tensor([3]), 1000).float()}
    torch.testing.assert_close(converted.experts[3].denoiser(_x(2), AB, cond),
                               original.experts[3].denoiser(_x(2), AB, cond), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Parity with diffusers' own pipelines (the same tiny weights, seed, scheduler and steps; fp32 CPU)

def _ddim(world):
    from unite_demo.method.sampler import make_sampler

    return make_sampler("ddim", world.num_train_timesteps, world.beta_schedule, world.beta_start, world.beta_end)


def _start_latents(world, seed):
    side = world.image_size // world.vae_factor
    return torch.randn((1, world.vae.config.latent_channels, side, side), generator=torch.Generator().manual_seed(seed))


def test_the_text_expert_alone_equals_stable_diffusion_pipeline_at_the_same_guidance(config):
    """One expert at r = 1 is classifier-free guidance: our sd15 world with only the prompt equals
    StableDiffusionPipeline (same scheduler, steps, starting latents, guidance 3), final images
    compared. Tolerance 1e-5 on [-1, 1] pixels (measured 6e-8): the two differ only in float order
    (our rows are [null, prompt] in one batch as theirs, the timestep reaches the UNet as a float);
    both decode the same latents scaled by 1 / scaling_factor (forgetting it: 1.4 apart)."""
    from diffusers import StableDiffusionPipeline

    world = sd15.load_world("sd15", config)
    steps, guidance, seed, prompt = 4, 3.0, 5, "a red house by a lake"
    req = world.request(text=prompt, reliability={"text": 1.0}, guidance=guidance, steps=steps, seed=seed,
                        sampler="ddim")
    ours = list(world.generate(req))[-1].image
    sd = world.experts[0].denoiser
    pipe = StableDiffusionPipeline(vae=world.vae, text_encoder=world.text_encoder, tokenizer=world.tokenizer,
                                   unet=sd.unet, scheduler=_ddim(world), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    theirs = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, latents=_start_latents(world, seed),
                  output_type="pt").images * 2 - 1
    assert ours.shape == theirs.shape and (ours - theirs).abs().max().item() <= 1e-5


def test_a_controlnet_expert_reading_the_prompt_equals_the_controlnet_pipeline_at_guidance_1(config):
    """With UNITE_SPATIAL_PROMPT=1, the sketch expert alone (r = 1, the text expert at r = 0) at
    guidance 1 is the conditional prediction, as StableDiffusionControlNetPipeline's at guidance 1:
    the same final image from the scribble given to it as a white-on-black picture (the polarity and
    [0, 1] range it was trained on). Tolerance 1e-5 (measured 1.4e-6; the scribble inverted: 1.3e-4,
    the tiny ControlNet's pull on the image being small). At guidance > 1 the two
    differ by design: diffusers' unconditional row keeps the control image (its guidance pushes
    along the prompt only), ours is the null of both (the expert's whole condition is guided)."""
    import dataclasses

    from diffusers import StableDiffusionControlNetPipeline
    from PIL import Image

    world = sd15.load_world("sd15", dataclasses.replace(config, spatial_prompt=True))
    sd = world.experts[0].denoiser
    pipe = StableDiffusionControlNetPipeline(vae=world.vae, text_encoder=world.text_encoder, tokenizer=world.tokenizer,
                                             unet=sd.unet, controlnet=sd.controlnets["sketch"], scheduler=_ddim(world),
                                             safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    steps, seed, prompt = 4, 2, "a cat on a sofa"

    def both(guidance):
        req = world.request(text=prompt, sketch=_sketch(), reliability={"text": 0.0, "sketch": 1.0}, guidance=guidance,
                            steps=steps, seed=seed, sampler="ddim")
        ours = list(world.generate(req))[-1].image
        scribble = Image.fromarray(req.values["sketch"]).convert("RGB")  # white strokes on black
        theirs = pipe(prompt, image=scribble, num_inference_steps=steps, guidance_scale=guidance, height=SIZE,
                      width=SIZE, latents=_start_latents(world, seed), output_type="pt").images * 2 - 1
        return (ours - theirs).abs().max().item()

    assert both(1.0) <= 1e-5
    assert both(3.0) > 0.1  # the documented difference


def test_the_dit_expert_alone_equals_dit_pipeline(world):
    """The DiT expert alone (r = 1) sampled on DiT's own schedule equals DiTPipeline, at guidance 1
    (the conditional prediction) and at guidance 4: both guide the first C output channels (eps) from
    DiT's null class (id 1000) and drop the learned-sigma channels. Tolerance 1e-5 (float order)."""
    from diffusers import DiTPipeline

    from unite_demo.method.sampler import make_sampler, sample

    dit = world.experts[3]
    schedule = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
    pipe = DiTPipeline(transformer=dit.denoiser.transformer, vae=world.vae, scheduler=make_sampler("ddim", **schedule))
    steps, seed, label = 4, 3, 207
    cond = {"class": torch.nn.functional.one_hot(torch.tensor([label]), 1000).float()}
    side = world.image_size // world.vae_factor
    for guidance in (1.0, 4.0):
        ours = list(sample(ProductOfExperts([dit], {"class": 1.0}, guidance), cond, (1, 4, side, side), steps=steps,
                           sampler="ddim", generator=torch.Generator().manual_seed(seed), final=world.decode_final,
                           **schedule))[-1].image
        theirs = pipe(class_labels=[label], guidance_scale=guidance, num_inference_steps=steps, output_type="pt",
                      generator=torch.Generator().manual_seed(seed)).images * 2 - 1
        assert (ours - theirs).abs().max().item() <= 1e-5, guidance
