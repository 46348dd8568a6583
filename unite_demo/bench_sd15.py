"""Per-step speed of the sd15 world's 3-modality step (text + scribble ControlNet + seg ControlNet)
with Stable Diffusion 1.5-sized networks and random weights (timing does not depend on the weights;
they are built from the architecture, nothing is downloaded), against

- the naive loop: the same experts evaluated one at a time (ProductOfExperts(batched=False): one
  network call per expert plus one for the shared null row), eager;
- diffusers' StableDiffusionControlNetPipeline step: a MultiControlNetModel of the same two
  ControlNets and the UNet over [unconditional, conditional] rows, then classifier-free guidance.

    python -m unite_demo.bench_sd15 [--device cuda] [--size 512] [--iters 30] [--compile] [--dit]

Defaults: CUDA at 512x512, 30 timed steps; on a CPU 128x128 and 2 timed steps (a few minutes).
--compile adds our step compiled by torch.compile inside the CUDA graph (minutes to compile);
--dit adds the sd15-dit step (the same + a DiT-XL/2 class expert). Prints what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time

import numpy as np
import torch

from unite_demo.method.combine import ProductOfExperts
from unite_demo.method.experts import Expert
from unite_demo.method.sampler import make_sampler
from unite_demo.worlds.pretrained import DiTDenoiser, SD15Denoiser
from unite_demo.worlds.pretrained.labels import ADE20K_RGB

# Stable Diffusion 1.5's UNet (its published config); its ControlNets copy the encoder half.
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
SD15_CONTROL_EMBEDDING = (16, 32, 96, 256)
DIT_XL_2 = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
                patch_size=2, num_embeds_ada_norm=1000)  # DiT-XL/2; sample_size = the latent side
TEXT_LEN = 77
# Tiny versions of the same classes, to test this script quickly.
TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
                 cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
TINY_CONTROL_EMBEDDING = (4, 4, 8, 8)
TINY_DIT = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
                patch_size=2, num_embeds_ada_norm=1000)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(fn, device: torch.device, iters: int, warmup: int) -> tuple[float, list[float]]:
    """Median milliseconds of fn() over `iters` runs after `warmup` runs, each run synchronised (a
    sampler waits for every step: it checks the step's eps for NaNs)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), times


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def build_networks(arch: str, device: torch.device, dtype: torch.dtype, latent: int, with_dit: bool):
    """UNet, two ControlNets (and DiT) of the given architecture, randomly initialised on `device`."""
    from diffusers import ControlNetModel, DiTTransformer2DModel, UNet2DConditionModel

    unet_cfg, embed, dit_cfg = ((SD15_UNET, SD15_CONTROL_EMBEDDING, DIT_XL_2) if arch == "sd15"
                                else (TINY_UNET, TINY_CONTROL_EMBEDDING, TINY_DIT))
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**unet_cfg)
        controlnets = {k: ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=embed)
                       for k in ("sketch", "seg")}
        dit = DiTTransformer2DModel(**dit_cfg, sample_size=latent) if with_dit else None
    nets = [unet, *controlnets.values()] + ([dit] if dit is not None else [])
    for net in nets:
        net.to(dtype=dtype).eval().requires_grad_(False)
        if device.type == "cuda" and hasattr(net, "conv_in"):
            net.to(memory_format=torch.channels_last)
    return unet, controlnets, dit


def conditions(size: int, text_dim: int, device, dtype) -> dict[str, torch.Tensor]:
    """A prompt embedding, a scribble and an ADE20K map, as the sd15 world hands them to its experts."""
    g = torch.Generator().manual_seed(1)
    text = torch.randn(1, TEXT_LEN, text_dim, generator=g)
    sketch = (torch.rand(1, 1, size, size, generator=g) > 0.97).float().expand(1, 3, size, size)
    blocks = torch.randint(0, 150, (1, size // 16 or 1, size // 16 or 1), generator=g)
    ids = torch.nn.functional.interpolate(blocks[None].float(), size=(size, size), mode="nearest")[0, 0].long()
    seg = torch.from_numpy(ADE20K_RGB[ids.numpy()].astype(np.float32) / 255).permute(2, 0, 1)[None]
    return {k: v.to(device, dtype) for k, v in {"text": text, "sketch": sketch, "seg": seg}.items()}


def flops_per_call(fn) -> float:
    """Floating-point operations of one call, counted by torch's FlopCounterMode (matmuls, convs,
    attention; elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", type=int, default=None, help="image side in pixels (latents are size/8)")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--dtype", default=None, choices=("float16", "bfloat16", "float32"))
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--compile", action="store_true", help="also torch.compile + CUDA graph (CUDA only; slow to build)")
    ap.add_argument("--dit", action="store_true", help="also the sd15-dit step (a DiT-XL/2 class expert added)")
    ap.add_argument("--arch", default="sd15", choices=("sd15", "tiny"), help="tiny: small networks, for tests")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    size = args.size or (512 if cuda else (128 if args.arch == "sd15" else 64))
    iters = args.iters or (30 if cuda else 2)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if cuda else torch.float32)
    if size % 64:
        raise SystemExit(f"--size must be a multiple of 64, got {size}")
    latent = size // 8
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # not the dtype-cast notices of random-weight networks
    name = torch.cuda.get_device_name(device) if cuda else f"{platform.processor() or platform.machine()} CPU"
    print(f"device: {name}; torch {torch.__version__}, diffusers {diffusers.__version__}, {dtype}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"networks: {args.arch} architecture, random weights; image {size}x{size} (latents {latent}x{latent}); "
          f"3 modalities (text + scribble ControlNet + seg ControlNet), guidance {args.guidance}")
    t0 = time.perf_counter()
    unet, controlnets, dit = build_networks(args.arch, device, dtype, latent, args.dit)
    weights_gib = peak_gib(device)
    params = {k: sum(p.numel() for p in n.parameters()) / 1e6
              for k, n in (("unet", unet), ("controlnet", controlnets["sketch"])) + ((("dit", dit),) if dit else ())}
    print(f"built in {time.perf_counter() - t0:.1f} s; parameters (M): "
          + ", ".join(f"{k} {v:.0f}" for k, v in params.items())
          + (f"; weights on the GPU {weights_gib:.2f} GiB" if weights_gib is not None else ""))

    sd_sched = make_sampler("ddim", 1000, "scaled_linear", 0.00085, 0.012)
    text_dim = unet.config.cross_attention_dim
    cond = conditions(size, text_dim, device, dtype)
    null_text = torch.randn(1, TEXT_LEN, text_dim, generator=torch.Generator().manual_seed(2)).to(device, dtype)
    x = torch.randn(1, 4, latent, latent, generator=torch.Generator().manual_seed(3)).to(device)
    alpha_bar = sd_sched.alphas_cumprod[500].float().expand(1).to(device)
    reliability = {"text": 1.0, "sketch": 1.0, "seg": 1.0}

    def experts(fast: str) -> list[Expert]:
        den = SD15Denoiser(unet, controlnets, null_text, sd_sched.alphas_cumprod, latent, fast)
        return [Expert("text", den, ("text",)), Expert("sketch", den, ("sketch",)), Expert("seg", den, ("seg",))]

    results: dict = {"device": name, "dtype": str(dtype), "size": size, "iters": iters, "arch": args.arch}
    rows = []

    def measure(key: str, label: str, fn, shape: str):
        reset_peak(device)
        t0 = time.perf_counter()
        ms, times = time_step(fn, device, iters, warmup)
        setup = time.perf_counter() - t0 - sum(times) / 1000
        out = fn()
        sync(device)
        results[key] = {"ms": ms, "min_ms": min(times), "peak_gib": peak_gib(device), "warmup_s": setup}
        rows.append((key, label, shape))
        mem = f"{results[key]['peak_gib']:.2f}" if cuda else "-"
        print(f"  {label:<46}{ms:>10.1f}{min(times):>10.1f}{mem:>10}   {shape}  (warm-up {setup:.1f} s)", flush=True)
        return out

    def note_graph_failure(key: str, mix: ProductOfExperts):
        failed = mix.experts[0].denoiser._graphs.failed
        results[key]["graph_failed"] = failed
        if failed:
            print(f"  NOTE: the CUDA graph capture failed, so '{key}' ran eagerly: {failed}")

    print(f"\n  {'per denoising step':<46}{'median ms':>10}{'min ms':>10}{'peak GiB':>10}   network rows per step")
    eager = ProductOfExperts(experts("none"), reliability, args.guidance)
    eps_eager = measure("ours_eager", "ours: batched, eager", lambda: eager(x, alpha_bar, cond),
                        "UNet 4 rows in 1 call, each ControlNet 1 row")
    if cuda:
        graphed = ProductOfExperts(experts("graph"), reliability, args.guidance)
        eps_graph = measure("ours_graph", "ours: batched, one CUDA graph", lambda: graphed(x, alpha_bar, cond),
                            "same, replayed")
        note_graph_failure("ours_graph", graphed)
        results["max_abs_diff_graph_vs_eager"] = (eps_graph - eps_eager).abs().max().item()
    naive = ProductOfExperts(experts("none"), reliability, args.guidance, batched=False)
    eps_naive = measure("naive", "naive: one expert at a time, eager", lambda: naive(x, alpha_bar, cond),
                        "UNet 4 calls of 1 row, each ControlNet 1 row")
    results["max_abs_diff_batched_vs_naive"] = (eps_eager - eps_naive).abs().max().item()

    from diffusers import MultiControlNetModel

    multi = MultiControlNetModel([controlnets["sketch"], controlnets["seg"]])
    t_int = torch.tensor(500, device=device)  # the pipeline passes the scheduler's integer timestep
    prompt = torch.cat([null_text, cond["text"]])  # (2, L, D): [unconditional, conditional]
    images = [cond["sketch"].repeat(2, 1, 1, 1), cond["seg"].repeat(2, 1, 1, 1)]

    @torch.inference_mode()
    def diffusers_step():
        latent_in = torch.cat([x] * 2).to(dtype)  # (2, 4, h, w)
        down, mid = multi(latent_in, t_int, encoder_hidden_states=prompt, controlnet_cond=images,
                          conditioning_scale=[1.0, 1.0], guess_mode=False, return_dict=False)
        pred = unet(latent_in, t_int, encoder_hidden_states=prompt, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid, return_dict=False)[0]
        uncond, text = pred.chunk(2)
        return uncond + args.guidance * (text - uncond)

    measure("diffusers", "diffusers: MultiControlNet + CFG, eager", diffusers_step,
            "UNet 2 rows, each ControlNet 2 rows")

    def summary():
        best = min((k for k in ("ours_eager", "ours_graph", "ours_compile") if k in results),
                   key=lambda k: results[k]["ms"])
        ours = results[best]["ms"]
        results["best"] = best
        results["naive_over_ours"] = results["naive"]["ms"] / ours
        results["diffusers_over_ours"] = results["diffusers"]["ms"] / ours
        print(f"\n  naive / ours = {results['naive_over_ours']:.2f}x, diffusers / ours = "
              f"{results['diffusers_over_ours']:.2f}x (ours = {best}, {ours:.1f} ms per step)")
        if "flops" in results:
            print(f"  compute: {results['flops'] / 1e12:.3g} TFLOP per step (torch FlopCounterMode) -> "
                  f"{results['flops'] / ours / 1e9:.3g} TFLOP/s achieved by ours")
        if cuda and args.arch == "sd15" and size == 512:
            print(f"  issue 5 targets: ours <= 12 ms: {'yes' if ours <= 12 else 'NO'}; naive / ours >= 4: "
                  f"{'yes' if results['naive_over_ours'] >= 4 else 'NO'}")
        if args.json:  # after every summary, so a run cut short still leaves its figures
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)

    results["flops"] = flops_per_call(lambda: eager(x, alpha_bar, cond))
    print(f"\n  max |batched - naive| of eps: {results['max_abs_diff_batched_vs_naive']:.2e}"
          + (f"; max |graph - eager|: {results['max_abs_diff_graph_vs_eager']:.2e}" if cuda else ""))
    summary()

    if args.compile and cuda:
        print("\n  compiling (torch.compile, then captured in a CUDA graph) ...", flush=True)
        compiled = ProductOfExperts(experts("compile"), reliability, args.guidance)
        measure("ours_compile", "ours: batched, compiled + CUDA graph", lambda: compiled(x, alpha_bar, cond),
                "same, compiled")
        note_graph_failure("ours_compile", compiled)
        summary()

    if args.dit:
        print("\n  sd15-dit: the same + a DiT class expert (its own call of 2 rows, its own schedule)")
        dit_sched = make_sampler("ddim", 1000, "linear", 0.0001, 0.02)
        onehot = torch.nn.functional.one_hot(torch.tensor([207]), 1000).to(device, dtype)
        fast = "graph" if cuda else "none"
        dit_experts = experts(fast) + [Expert("class", DiTDenoiser(dit, dit_sched.alphas_cumprod, latent, fast),
                                              ("class",))]
        with_dit = ProductOfExperts(dit_experts, {**reliability, "class": 1.0}, args.guidance)
        measure("ours_dit", f"ours + DiT class expert ({fast})",
                lambda: with_dit(x, alpha_bar, {**cond, "class": onehot}), "+ DiT 2 rows in 1 call")

    results["process_peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\n  process peak resident memory: {results['process_peak_rss_gib']:.1f} GiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
