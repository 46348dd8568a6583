"""The pretrained worlds' configuration and loading.

Configuration, from the environment (hub ids or local folders; nothing is downloaded at import, and
a hub id is downloaded only with UNITE_DOWNLOAD=1):

    UNITE_SD15                 SD 1.5 in diffusers layout (unet/ text_encoder/ tokenizer/ vae/ scheduler/)
                               [stable-diffusion-v1-5/stable-diffusion-v1-5]
    UNITE_CONTROLNET_SCRIBBLE  [lllyasviel/control_v11p_sd15_scribble]
    UNITE_CONTROLNET_SEG       [lllyasviel/control_v11p_sd15_seg]
    UNITE_DIT                  DiT in diffusers layout (transformer/ [scheduler/]) [facebook/DiT-XL-2-512]
    UNITE_PREVIEW_DECODER      optional AutoencoderTiny for previews, e.g. madebyollin/taesd [none]
    UNITE_DOWNLOAD             1: download hub ids missing from the local Hugging Face cache [0]
    UNITE_SD15_SIZE            image side in pixels, a multiple of 64 [512]
    UNITE_DEVICE               [cuda when available, else cpu]
    UNITE_DTYPE                float16 | bfloat16 | float32 [bfloat16 on cuda (float16 without bf16), float32 on cpu]
    UNITE_FAST                 graph | compile | none: the step captured in a CUDA graph, also compiled
                               with torch.compile, or eager; CUDA only [graph on cuda]
    UNITE_SPATIAL_PROMPT       1: the sketch and seg experts also read the prompt [0]
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from unite_demo.limits import SD_SPATIAL_PROMPT_RELIABILITY
from unite_demo.method.experts import Expert
from unite_demo.worlds.conditions import without_paths
from unite_demo.worlds.pretrained.denoisers import DiTDenoiser, SD15Denoiser
from unite_demo.worlds.pretrained.labels import imagenet_classes
from unite_demo.worlds.pretrained.latent import LatentWorld

WORLDS = ("sd15", "sd15-dit")
TITLES = {"sd15": "Stable Diffusion 1.5 + ControlNets", "sd15-dit": "Stable Diffusion 1.5 + ControlNets + DiT"}

ENV = {  # field -> (environment variable, default)
    "sd15": ("UNITE_SD15", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
    "scribble": ("UNITE_CONTROLNET_SCRIBBLE", "lllyasviel/control_v11p_sd15_scribble"),
    "seg": ("UNITE_CONTROLNET_SEG", "lllyasviel/control_v11p_sd15_seg"),
    "dit": ("UNITE_DIT", "facebook/DiT-XL-2-512"),
    "preview_decoder": ("UNITE_PREVIEW_DECODER", ""),
    "download": ("UNITE_DOWNLOAD", "0"),
    "image_size": ("UNITE_SD15_SIZE", "512"),
    "device": ("UNITE_DEVICE", ""),
    "dtype": ("UNITE_DTYPE", ""),
    "fast": ("UNITE_FAST", ""),
    "spatial_prompt": ("UNITE_SPATIAL_PROMPT", "0"),
}
FAST_MODES = ("graph", "compile", "none")
DTYPES = ("float16", "bfloat16", "float32")

HOW_TO_GET = (
    "Get them on a machine with internet: set UNITE_DOWNLOAD=1 and the hub ids download on first use "
    "(about 6 GB for sd15, 3 GB more for sd15-dit), or fetch each once, e.g. `hf download "
    "stable-diffusion-v1-5/stable-diffusion-v1-5 --include 'unet/*' --include 'text_encoder/*' --include "
    "'tokenizer/*' --include 'vae/*' --include 'scheduler/*' --local-dir DIR`, and point UNITE_SD15 (likewise "
    "UNITE_CONTROLNET_SCRIBBLE, UNITE_CONTROLNET_SEG, UNITE_DIT) at the folder; see docs/pretrained-worlds.md.")


class WeightsMissing(FileNotFoundError):
    """A pretrained world's weights are neither in a configured folder nor in the local cache."""


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class PretrainedConfig:
    """Where the pretrained worlds' weights come from and how they run (see the module docstring)."""

    sd15: str = ENV["sd15"][1]
    scribble: str = ENV["scribble"][1]
    seg: str = ENV["seg"][1]
    dit: str = ENV["dit"][1]
    preview_decoder: str = ""
    download: bool = False
    image_size: int = 512
    device: str = ""
    dtype: str = ""
    fast: str = ""
    spatial_prompt: bool = False

    def __post_init__(self):
        if not isinstance(self.image_size, int) or self.image_size < 64 or self.image_size % 64:
            raise ValueError(f"UNITE_SD15_SIZE must be a multiple of 64 (e.g. 512), got {self.image_size!r}")
        if self.fast not in ("", *FAST_MODES):
            raise ValueError(f"UNITE_FAST must be one of {', '.join(FAST_MODES)}, got {self.fast!r}")
        if self.dtype not in ("", *DTYPES):
            raise ValueError(f"UNITE_DTYPE must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PretrainedConfig:
        env = os.environ if env is None else env
        raw = {name: env.get(var, default).strip() for name, (var, default) in ENV.items()}
        try:
            size = int(raw["image_size"])
        except ValueError:
            raise ValueError(f"UNITE_SD15_SIZE must be a whole number of pixels, got {raw['image_size']!r}") from None
        return cls(**{**raw, "download": _flag(raw["download"]), "spatial_prompt": _flag(raw["spatial_prompt"]),
                      "image_size": size})

    def env(self) -> dict[str, str]:
        """This configuration as environment variables (e.g. for a subprocess)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[ENV[f.name][0]] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out


# ---------------------------------------------------------------------------------------------
# Where the weights are

def _looks_like_hub_id(spec: str) -> bool:
    return spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and "\\" not in spec


def _source_problem(spec: str, probe: str, download: bool) -> str | None:
    """Why `probe` of `spec` (a local folder or a hub id) cannot be loaded now, or None."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return None if (path / probe).is_file() else f"the folder has no {probe}"
    if not _looks_like_hub_id(spec):
        return "no such folder"
    from huggingface_hub import constants, try_to_load_from_cache

    if download and not constants.HF_HUB_OFFLINE:
        return None
    if isinstance(try_to_load_from_cache(spec, probe), str):
        return None
    why = "HF_HUB_OFFLINE is set" if download else "downloads are off"
    return f"no such folder here, and not in the local Hugging Face cache ({why})"


def _needs(name: str, config: PretrainedConfig) -> list[tuple[str, str, str, str | None]]:
    """(environment variable, spec, file that must exist, weights file of a network or None) for
    every part of world `name`."""
    unet, text = "diffusion_pytorch_model.safetensors", "model.safetensors"  # diffusers' and transformers' names
    needs = [("UNITE_SD15", config.sd15, f"{sub}/{probe}", weights and f"{sub}/{weights}") for sub, probe, weights in
             (("unet", "config.json", unet), ("text_encoder", "config.json", text), ("tokenizer", "vocab.json", None),
              ("vae", "config.json", unet), ("scheduler", "scheduler_config.json", None))]
    needs += [("UNITE_CONTROLNET_SCRIBBLE", config.scribble, "config.json", unet),
              ("UNITE_CONTROLNET_SEG", config.seg, "config.json", unet)]
    if name == "sd15-dit":
        needs.append(("UNITE_DIT", config.dit, "transformer/config.json", f"transformer/{unet}"))
    if config.preview_decoder:
        needs.append(("UNITE_PREVIEW_DECODER", config.preview_decoder, "config.json", unet))
    return needs


CONVERT = "python scripts/convert_to_safetensors.py"


def _weights_problem(spec: str, weights: str, download: bool) -> str | None:
    """Why a network's safetensors weights (whole or sharded) are not at hand, or None: named
    apart where only pickled .bin weights are, with the one-time conversion that fixes it."""
    if any(_source_problem(spec, f, download) is None for f in (weights, weights + ".index.json")):
        return None
    pickled = weights.replace(".safetensors", ".bin")
    if any(_source_problem(spec, f, download) is None for f in (pickled, pickled + ".index.json")):
        return (f"only pickled weights ({pickled}); the studio loads safetensors only: convert them once with "
                f"`{CONVERT} {spec} --out FOLDER` and point the variable at FOLDER")
    return f"no {weights}"


def missing(name: str, config: PretrainedConfig | None = None) -> list[str]:
    """What world `name` lacks, one line per part; [] when it can be loaded."""
    if name not in WORLDS:
        raise ValueError(f"unknown pretrained world {name!r}; accepted: {', '.join(WORLDS)}")
    config = config or PretrainedConfig.from_env()
    out = []
    for var, spec, probe, weights in _needs(name, config):
        problem = _source_problem(spec, probe, config.download)
        if problem is None and weights:
            problem, probe = _weights_problem(spec, weights, config.download), weights
        if problem:
            out.append(f"{var}={spec} ({probe}): {problem}")
    return out


SD15_VARS = ("UNITE_SD15", "UNITE_CONTROLNET_SCRIBBLE", "UNITE_CONTROLNET_SEG")  # the parts sd15-dit shares
GUIDE = "docs/pretrained-worlds.md"


def how_to_enable(name: str, config: PretrainedConfig | None = None) -> str:
    """What brings world `name` here, in one line, from the variables whose parts missing() finds
    lacking now; a variable set to other than its default also says what is wrong with it (paths
    shortened to their last name: a visitor may read this)."""
    try:
        config = config or PretrainedConfig.from_env()
    except ValueError as e:
        return f"fix the setting: {e}"
    lacking: dict[str, str] = {}  # variable -> its first problem
    for line in missing(name, config):
        var, rest = line.split("=", 1)
        lacking.setdefault(var, rest.split(": ", 1)[-1])
    defaults = {var: default for var, default in ENV.values()}
    specs = {var: spec for var, spec, _, _ in _needs(name, config)}
    ways = []
    sd = [var for var in SD15_VARS if var in lacking]
    if sd:
        offline = any("HF_HUB_OFFLINE" in lacking[var] for var in sd)
        download = ("unset HF_HUB_OFFLINE (UNITE_DOWNLOAD=1 cannot download while it is set) or " if offline else
                    "" if config.download else "set UNITE_DOWNLOAD=1 (about 6 GB, downloaded on first use) or ")
        ways.append(f"{download}point {', '.join(sd)} at local folders")
    if "UNITE_DIT" in lacking:
        ways.append(f"point UNITE_DIT at {defaults['UNITE_DIT']} converted once to safetensors by `{CONVERT}`")
    if "UNITE_PREVIEW_DECODER" in lacking:
        ways.append("point UNITE_PREVIEW_DECODER at a tiny autoencoder, or unset it")
    wrong = [f"{var}: {without_paths(problem)}" for var, problem in lacking.items() if specs[var] != defaults[var]]
    return "; and ".join(ways) + f" ({GUIDE})" + (f"; now {'; '.join(wrong)}" if wrong else "")


def configured_worlds(config: PretrainedConfig | None = None) -> list[str]:
    """The pretrained worlds whose weights are at hand (or may be downloaded); a bad setting hides
    them with a warning here (loading then raises it), so the built-in world always works."""
    try:
        config = config or PretrainedConfig.from_env()
    except ValueError as e:
        warnings.warn(f"pretrained worlds hidden: {e}")
        return []
    return [name for name in WORLDS if not missing(name, config)]


def resolve_device_dtype(config: PretrainedConfig) -> tuple[torch.device, torch.dtype]:
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if config.dtype:
        return device, getattr(torch, config.dtype)
    if device.type == "cuda":
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, torch.float32


# Networks loaded once and shared by the worlds holding them (sd15 and sd15-dit share SD's UNet and
# ControlNets); weak references, so a network is freed when the last world holding it unloads.
_NETS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def load_net(cls, spec: str, subfolder: str | None, config: PretrainedConfig, device: torch.device,
              dtype: torch.dtype):
    key = (cls.__name__, spec, subfolder, str(device), str(dtype))
    net = _NETS.get(key)
    if net is None:
        kwargs: dict[str, Any] = {"local_files_only": not config.download, "use_safetensors": True}  # no pickles
        if subfolder:
            kwargs["subfolder"] = subfolder
        kwargs["dtype" if cls.__module__.startswith("transformers") else "torch_dtype"] = dtype
        try:
            net = cls.from_pretrained(spec, **kwargs).to(device).eval().requires_grad_(False)
        except OSError as e:  # e.g. a hub repository with pickled weights only (DiT-XL-2-512's main branch)
            raise OSError(f"{e}\nIf its weights exist only as pickles (.bin), convert them once: "
                          f"{CONVERT} {spec} --out FOLDER") from e
        if device.type == "cuda" and hasattr(net, "conv_in"):
            net = net.to(memory_format=torch.channels_last)  # cuDNN's fastest convolutions take NHWC
        _NETS[key] = net
    return net



def _scheduler(spec: str, config: PretrainedConfig, required: bool, **fallback):
    """The training noise schedule stored with the weights (scheduler/scheduler_config.json)."""
    from diffusers import DDPMScheduler

    try:
        return DDPMScheduler.from_pretrained(spec, subfolder="scheduler", local_files_only=not config.download)
    except (OSError, ValueError):
        if required:
            raise
        return DDPMScheduler(**fallback)


def load_world(name: str, config: PretrainedConfig | None = None) -> LatentWorld:
    """Load `sd15` or `sd15-dit` as configured (see the module docstring)."""
    if name not in WORLDS:
        raise ValueError(f"unknown pretrained world {name!r}; accepted: {', '.join(WORLDS)}")
    config = config or PretrainedConfig.from_env()
    problems = missing(name, config)
    if problems:
        raise WeightsMissing(f"the {name} world needs pretrained weights that are not here:\n  "
                             + "\n  ".join(problems) + f"\n{HOW_TO_GET}")
    from diffusers import AutoencoderKL, AutoencoderTiny, ControlNetModel, DiTTransformer2DModel, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    device, dtype = resolve_device_dtype(config)
    fast = config.fast or "graph"
    if device.type != "cuda":
        fast = "none"  # graphs and compilation are the CUDA fast path only
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    def net(cls, spec, subfolder=None):
        return load_net(cls, spec, subfolder, config, device, dtype)

    unet = net(UNet2DConditionModel, config.sd15, "unet")
    vae = net(AutoencoderKL, config.sd15, "vae")
    text_encoder = net(CLIPTextModel, config.sd15, "text_encoder")
    tokenizer = CLIPTokenizer.from_pretrained(config.sd15, subfolder="tokenizer", local_files_only=not config.download)
    controlnets = {"sketch": net(ControlNetModel, config.scribble), "seg": net(ControlNetModel, config.seg)}
    sched = _scheduler(config.sd15, config, required=True)
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latent = config.image_size // vae_factor
    if unet.config.in_channels != vae.config.latent_channels:
        raise ValueError(f"the UNet at {config.sd15} takes {unet.config.in_channels} channels, its VAE makes "
                         f"{vae.config.latent_channels}")

    world = LatentWorld(name, [], config.image_size, sched.config.num_train_timesteps, sched.config.beta_schedule,
                        vae=vae, tokenizer=tokenizer, text_encoder=text_encoder, device=device, dtype=dtype,
                        beta_start=sched.config.beta_start, beta_end=sched.config.beta_end,
                        spatial_prompt=config.spatial_prompt)
    if config.spatial_prompt:
        world.defaults["reliability"] = dict(SD_SPATIAL_PROMPT_RELIABILITY)
    null_text = world.encode_prompt("")  # (1, L, D): SD's unconditional input is the empty prompt
    sd = SD15Denoiser(unet, controlnets, null_text, sched.alphas_cumprod, latent, fast)
    world.experts = [Expert("text", sd, ("text",)), Expert("sketch", sd, ("sketch",)), Expert("seg", sd, ("seg",))]
    if name == "sd15-dit":
        dit = net(DiTTransformer2DModel, config.dit, "transformer")
        if dit.config.sample_size != latent:
            raise ValueError(f"the DiT at {config.dit} works at {dit.config.sample_size * vae_factor} px; "
                             f"set UNITE_SD15_SIZE={dit.config.sample_size * vae_factor}")
        # DiT's published schedule, used when its folder has no scheduler/ of its own.
        dit_sched = _scheduler(config.dit, config, required=False, num_train_timesteps=1000,
                               beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
        names = imagenet_classes()
        if dit.config.num_embeds_ada_norm != len(names):
            raise ValueError(f"the DiT at {config.dit} has {dit.config.num_embeds_ada_norm} classes, not ImageNet's "
                             f"{len(names)}")
        world.experts.append(Expert("class", DiTDenoiser(dit, dit_sched.alphas_cumprod, latent, fast), ("class",)))
        world.class_names = names
    if config.preview_decoder:
        world.preview_decoder = net(AutoencoderTiny, config.preview_decoder)
    return world

