"""The pretrained worlds, in Stable Diffusion's VAE latent space.

- `sd15`: Stable Diffusion 1.5's UNet with its CLIP text encoder is the text expert, ControlNet
  scribble the sketch expert, ControlNet seg (ADE20K palette) the segmentation expert. The three
  share one UNet, so a step is one batched call over N + 1 rows (one shared null row).
- `sd15-dit`: the same, plus DiT-XL/2-512 as an ImageNet-class expert. DiT was trained on another
  noise schedule (linear betas) than SD (scaled linear); it is asked at the timestep whose alpha_bar
  matches the master (SD's) alpha_bar (experts.NoiseSchedule).

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

import functools
import gc
import os
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .combine import ProductOfExperts
from .conditions import Request, make_request
from .experts import Expert, NoiseSchedule, check_reads
from .labels import ADE20K_NAMES, ADE20K_RGB, imagenet_classes
from .sampler import SAMPLERS, Frame, sample
from .world import DEFAULTS, World

WORLDS = ("sd15", "sd15-dit")
SPATIAL = ("sketch", "seg")  # the ControlNet experts, in the order of their networks

# Least-squares map from SD 1.x latents (as the UNet sees them, i.e. VAE latents x 0.18215) to RGB
# in [-1, 1], one 4x3 matrix applied per latent pixel (Kevin Turner's fit, 2022, which most SD
# front-ends use for step previews). Cheap enough for every step; colours are approximate.
SD_LATENT_RGB = torch.tensor([
    #   R       G       B
    [0.298, 0.207, 0.208],  # latent channel 0
    [0.187, 0.286, 0.173],  # latent channel 1
    [-0.158, 0.189, 0.264],  # latent channel 2
    [-0.184, -0.271, -0.473],  # latent channel 3
])

# Sampling defaults of these worlds where they differ from the built-in world's (world.DEFAULTS):
# three guidance terms add up, so s is lower than SD's usual 7.5 for a single prompt.
SD_DEFAULTS = {"guidance": 5.0, "steps": 25}

_ENV = {  # field -> (environment variable, default)
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
    "stable-diffusion-v1-5/stable-diffusion-v1-5 --include 'unet/*' 'text_encoder/*' 'tokenizer/*' 'vae/*' "
    "'scheduler/*' --local-dir DIR`, and point UNITE_SD15 (likewise UNITE_CONTROLNET_SCRIBBLE, "
    "UNITE_CONTROLNET_SEG, UNITE_DIT) at the folder; see the README, 'Pretrained worlds'.")


class WeightsMissing(FileNotFoundError):
    """A pretrained world's weights are neither in a configured folder nor in the local cache."""


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class PretrainedConfig:
    """Where the pretrained worlds' weights come from and how they run (see the module docstring)."""

    sd15: str = _ENV["sd15"][1]
    scribble: str = _ENV["scribble"][1]
    seg: str = _ENV["seg"][1]
    dit: str = _ENV["dit"][1]
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
        raw = {name: env.get(var, default).strip() for name, (var, default) in _ENV.items()}
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
            out[_ENV[f.name][0]] = ("1" if value else "0") if isinstance(value, bool) else str(value)
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


def _needs(name: str, config: PretrainedConfig) -> list[tuple[str, str, str]]:
    """(environment variable, spec, file that must exist) for every part of world `name`."""
    needs = [("UNITE_SD15", config.sd15, f"{sub}/{probe}") for sub, probe in
             (("unet", "config.json"), ("text_encoder", "config.json"), ("tokenizer", "vocab.json"),
              ("vae", "config.json"), ("scheduler", "scheduler_config.json"))]
    needs += [("UNITE_CONTROLNET_SCRIBBLE", config.scribble, "config.json"),
              ("UNITE_CONTROLNET_SEG", config.seg, "config.json")]
    if name == "sd15-dit":
        needs.append(("UNITE_DIT", config.dit, "transformer/config.json"))
    if config.preview_decoder:
        needs.append(("UNITE_PREVIEW_DECODER", config.preview_decoder, "config.json"))
    return needs


def missing(name: str, config: PretrainedConfig | None = None) -> list[str]:
    """What world `name` lacks, one line per part; [] when it can be loaded."""
    if name not in WORLDS:
        raise ValueError(f"unknown pretrained world {name!r}; accepted: {', '.join(WORLDS)}")
    config = config or PretrainedConfig.from_env()
    out = []
    for var, spec, probe in _needs(name, config):
        problem = _source_problem(spec, probe, config.download)
        if problem:
            out.append(f"{var}={spec} ({probe}): {problem}")
    return out


def configured_worlds(config: PretrainedConfig | None = None) -> list[str]:
    """The pretrained worlds whose weights are at hand (or may be downloaded); a bad setting hides
    them with a warning here (get_world then raises it), so the built-in world always works."""
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


def _load_net(cls, spec: str, subfolder: str | None, config: PretrainedConfig, device: torch.device,
              dtype: torch.dtype):
    key = (cls.__name__, spec, subfolder, str(device), str(dtype))
    net = _NETS.get(key)
    if net is None:
        kwargs: dict[str, Any] = {"local_files_only": not config.download, "use_safetensors": True}  # no pickles
        if subfolder:
            kwargs["subfolder"] = subfolder
        kwargs["dtype" if cls.__module__.startswith("transformers") else "torch_dtype"] = dtype
        net = cls.from_pretrained(spec, **kwargs).to(device).eval().requires_grad_(False)
        if device.type == "cuda" and hasattr(net, "conv_in"):
            net = net.to(memory_format=torch.channels_last)  # cuDNN's fastest convolutions take NHWC
        _NETS[key] = net
    return net


# ---------------------------------------------------------------------------------------------
# The fast path: a network call captured once per layout as a CUDA graph

class CapturedCalls:
    """CUDA graphs of a call, one per layout key (input shapes, which rows carry which control),
    replayed with the inputs copied into static buffers. An eager SD step is bound by launching
    several hundred kernels one by one; a replay launches them all at once. The first call of a
    layout captures it (after two eager warm-up runs); a capture failure falls back to eager."""

    def __init__(self, max_graphs: int = 4):  # each graph keeps its activations' memory: a few GiB at 512x512
        self.max_graphs = max_graphs
        self.graphs: OrderedDict[Any, tuple] = OrderedDict()
        self.failed: str | None = None

    def __call__(self, key, fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return fn(*inputs)
        entry = self.graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(fn, inputs)
            except Exception as e:  # an op that cannot be captured: say so once, stay eager
                self.failed = f"{type(e).__name__}: {e}"
                warnings.warn(f"CUDA graph capture failed, running eagerly: {self.failed}")
                return fn(*inputs)
            self.graphs[key] = entry
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        self.graphs.move_to_end(key)
        graph, static_in, static_out = entry
        for buf, x in zip(static_in, inputs):
            buf.copy_(x)
        graph.replay()
        return static_out.clone()

    @staticmethod
    def _capture(fn, inputs):
        static_in = [x.clone() for x in inputs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # kernels chosen, lazy state (and torch.compile) settled before capture
                fn(*static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = fn(*static_in)
        return graph, static_in, static_out

    def clear(self) -> None:
        self.graphs.clear()


def _fast_calls(fast: str, device: torch.device) -> CapturedCalls | None:
    return CapturedCalls() if fast in ("graph", "compile") and device.type == "cuda" else None


def _maybe_compile(net, fast: str, device: torch.device):
    return torch.compile(net, dynamic=False) if fast == "compile" and device.type == "cuda" else net


def _rows_given(c: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B,) bool: the rows that carry a condition (an all-zero row is the null)."""
    return c.flatten(1).ne(0).any(1)


def latent_space(latent_size: int, channels: int = 4) -> str:
    return f"sd-vae latent {channels}x{latent_size}x{latent_size}"


# ---------------------------------------------------------------------------------------------
# Experts

class SD15Denoiser:
    """Stable Diffusion 1.5 (Rombach et al. 2022) with ControlNets (Zhang et al. 2023) behind the
    one denoiser signature. Each row carries its own modalities:

        text    (B, L, D)     CLIP embedding of the prompt; a zero row -> the empty prompt's embedding
        sketch  (B, 3, H, W)  scribble, white strokes on black, in [0, 1]; a zero row -> no ControlNet
        seg     (B, 3, H, W)  ADE20K colour map in [0, 1]; a zero row -> no ControlNet

    The UNet runs once over all rows; each ControlNet only over the rows whose control is given, its
    residuals added to those rows (a row with both controls gets both, as in a MultiControlNet).
    A ControlNet row uses that row's text: the empty prompt unless the expert also reads the prompt."""

    def __init__(self, unet, controlnets: Mapping[str, Any], null_text: torch.Tensor, alphas_cumprod,
                 latent_size: int, fast: str = "none"):
        self.unet, self.controlnets = unet, dict(controlnets)
        self.null_text = null_text  # (1, L, D), the empty prompt's embedding
        self.schedule = NoiseSchedule(alphas_cumprod)
        self.space = latent_space(latent_size, unet.config.in_channels)
        self.reads = ("text", *self.controlnets)
        self.device, self.dtype = null_text.device, null_text.dtype
        self.fast = fast
        self._unet = _maybe_compile(unet, fast, self.device)
        self._controlnets = {k: _maybe_compile(c, fast, self.device) for k, c in self.controlnets.items()}
        self._graphs = _fast_calls(fast, self.device)
        self._index: dict[tuple[int, ...], torch.Tensor] = {}

    @torch.inference_mode()
    def __call__(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.unet is None:
            raise RuntimeError("this world was unloaded; load it again with get_world")
        check_reads(self.reads, cond)
        b = x_t.shape[0]
        cond = {k: v.to(self.device, self.dtype) for k, v in cond.items()}
        keys = list(cond)
        given = dict(zip(keys, torch.stack([_rows_given(cond[k]) for k in keys]).cpu())) if keys else {}  # one sync
        x = x_t.to(self.device, self.dtype)
        t = self.schedule.timestep_for(alpha_bar.detach().cpu()).to(self.device)  # (B,) SD's fractional timesteps
        text = self.null_text.expand(b, -1, -1)  # (B, L, D)
        if "text" in given and bool(given["text"].any()):
            text = torch.where(given["text"].to(self.device)[:, None, None], cond["text"], text)
        controls = tuple((k, tuple(given[k].nonzero().flatten().tolist())) for k in self.controlnets
                         if k in given and bool(given[k].any()))
        images = [cond[k][list(rows)] for k, rows in controls]  # (rows_k, 3, H, W) each
        if self._graphs is not None:
            eps = self._graphs((controls, tuple(x.shape)), functools.partial(self._forward, controls), x, t, text,
                               *images)
        else:
            eps = self._forward(controls, x, t, text, *images)
        return eps.to(x_t.device, x_t.dtype)

    def _rows(self, rows: tuple[int, ...]) -> torch.Tensor:
        # Made before any capture (the warm-up runs come first): a graph cannot copy from the host.
        if rows not in self._index:
            self._index[rows] = torch.tensor(rows, device=self.device)
        return self._index[rows]

    def _forward(self, controls, x, t, text, *images) -> torch.Tensor:
        """eps for all rows: the ControlNets on their rows, then the UNet once with their residuals."""
        down = mid = None
        for (key, rows), image in zip(controls, images):
            idx = self._rows(rows)
            d, m = self._controlnets[key](x[idx], t[idx], encoder_hidden_states=text[idx], controlnet_cond=image,
                                          return_dict=False)
            if down is None:
                down = [x.new_zeros((x.shape[0], *r.shape[1:])) for r in d]  # (B, C_i, H_i, W_i) each
                mid = x.new_zeros((x.shape[0], *m.shape[1:]))
            down = [acc.index_add(0, idx, r) for acc, r in zip(down, d)]
            mid = mid.index_add(0, idx, m)
        return self._unet(x, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid, return_dict=False)[0]

    def release(self) -> None:
        if self._graphs is not None:
            self._graphs.clear()
        self.unet = self._unet = self.null_text = None
        self.controlnets, self._controlnets, self._index = {}, {}, {}


class DiTDenoiser:
    """DiT (Peebles & Xie 2023), class-conditional, behind the one denoiser signature:
    cond["class"] is (B, K) one-hot; an all-zero row is null and uses DiT's own null class (id K,
    what label dropout trained it with). DiT also learns the variance: of its 2C output channels
    the first C are eps."""

    def __init__(self, transformer, alphas_cumprod, latent_size: int, fast: str = "none"):
        self.transformer = transformer
        self.schedule = NoiseSchedule(alphas_cumprod)
        self.channels = transformer.config.in_channels
        self.null_class = transformer.config.num_embeds_ada_norm  # 1000 for ImageNet
        self.space = latent_space(latent_size, self.channels)
        self.reads = ("class",)
        self.device = next(transformer.parameters()).device
        self.dtype = next(transformer.parameters()).dtype
        self._transformer = _maybe_compile(transformer, fast, self.device)
        self._graphs = _fast_calls(fast, self.device)

    @torch.inference_mode()
    def __call__(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.transformer is None:
            raise RuntimeError("this world was unloaded; load it again with get_world")
        check_reads(self.reads, cond)
        b = x_t.shape[0]
        x = x_t.to(self.device, self.dtype)
        t = self.schedule.timestep_for(alpha_bar.detach().cpu()).to(self.device)  # (B,) DiT's fractional timesteps
        labels = torch.full((b,), self.null_class, dtype=torch.long, device=self.device)
        if "class" in cond:
            onehot = cond["class"].to(self.device)
            labels = torch.where(_rows_given(onehot), onehot.argmax(1), labels)
        if self._graphs is not None:
            out = self._graphs(tuple(x.shape), self._forward, x, t, labels)
        else:
            out = self._forward(x, t, labels)
        return out[:, : self.channels].to(x_t.device, x_t.dtype)  # learned sigma: first C channels are eps

    def _forward(self, x, t, labels) -> torch.Tensor:
        return self._transformer(x, timestep=t, class_labels=labels, return_dict=False)[0]

    def release(self) -> None:
        if self._graphs is not None:
            self._graphs.clear()
        self.transformer = self._transformer = None


# ---------------------------------------------------------------------------------------------
# Conditions as these experts read them

def scribble_image(sketch: np.ndarray) -> torch.Tensor:
    """(S,S) uint8, 255 = stroke -> (1,3,S,S) in [0,1]: white strokes on black, as ControlNet scribble reads."""
    strokes = torch.from_numpy((np.asarray(sketch) > 127).astype(np.float32))
    return strokes[None, None].expand(1, 3, *strokes.shape).contiguous()  # (1, 3, S, S)


def seg_image(seg: np.ndarray) -> torch.Tensor:
    """(S,S) ADE20K class ids -> (1,3,S,S) in [0,1]: the colour map ControlNet seg reads."""
    rgb = torch.from_numpy(ADE20K_RGB[np.asarray(seg)].astype(np.float32) / 255.0)  # (S, S, 3)
    return rgb.permute(2, 0, 1)[None].contiguous()  # (1, 3, S, S)


def class_onehot(class_id: int, num_classes: int) -> torch.Tensor:
    """A class id -> (1, K) one-hot; an all-zero row would be DiT's null class."""
    return torch.nn.functional.one_hot(torch.tensor([class_id]), num_classes).float()  # (1, K)


@torch.inference_mode()
def latent_to_rgb(x0: torch.Tensor) -> torch.Tensor:
    """x0 latents (B,4,h,w) -> approximate RGB (B,3,h,w) in [-1,1], by SD_LATENT_RGB."""
    return torch.einsum("bchw,cr->brhw", x0.float().cpu(), SD_LATENT_RGB).clamp(-1, 1)


# ---------------------------------------------------------------------------------------------
# The world

@dataclass
class LatentWorld(World):
    """A world in SD's VAE latent space (x_t: (B, 4, S/8, S/8)) with its own condition encoders
    (CLIP for the prompt, the ADE20K colours for seg, one-hot for the ImageNet class), previews
    through a linear latent -> RGB projection (or a tiny decoder when configured), and the full
    VAE for the final image only."""

    vae: Any = None
    tokenizer: Any = None
    text_encoder: Any = None
    preview_decoder: Any = None
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    beta_start: float = 0.00085
    beta_end: float = 0.012
    spatial_prompt: bool = False
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[str, ...], np.ndarray] = (ADE20K_NAMES, ADE20K_RGB)
    defaults: dict = field(default_factory=lambda: dict(SD_DEFAULTS))

    def request(self, **inputs) -> Request:
        """Validate raw inputs for this world (see conditions.make_request); `class_id` takes an
        ImageNet class id or name in sd15-dit."""
        inputs = {"seed": DEFAULTS["seed"], "sampler": DEFAULTS["sampler"], **self.defaults, **inputs}
        return make_request(self.image_size, self.modalities, samplers=SAMPLERS,
                            default_reliability=DEFAULTS["reliability"], palette=self.palette,
                            class_names=self.class_names, subject="image", **inputs)

    @torch.inference_mode()
    def encode_prompt(self, text: str) -> torch.Tensor:
        """A prompt -> CLIP's last hidden states (1, L, D), as SD 1.5 reads them."""
        ids = self.tokenizer([text], padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids  # (1, L)
        return self.text_encoder(ids.to(self.device))[0]

    def conditions(self, req: Request) -> dict[str, torch.Tensor]:
        """The request's conditions as the experts read them, batch 1, on the world's device."""
        cond = {}
        if req.text is not None:
            cond["text"] = self.encode_prompt(req.text)
        if req.sketch is not None:
            cond["sketch"] = scribble_image(req.sketch)
        if req.seg is not None:
            cond["seg"] = seg_image(req.seg)
        if req.class_id is not None:
            cond["class"] = class_onehot(req.class_id, len(self.class_names))
        return {k: v.to(self.device, self.dtype) for k, v in cond.items()}

    def mixture(self, req: Request, batched: bool = True) -> ProductOfExperts:
        experts = self.experts
        if self.spatial_prompt and req.text is not None:
            # Option: the spatial experts' rows carry the prompt too (their null row stays shared).
            experts = [Expert(e.name, e.denoiser, (*e.reads, "text")) if e.name in SPATIAL else e for e in experts]
        return ProductOfExperts(experts, req.reliability, req.guidance, batched=batched)

    def generate(self, req: Request, batched: bool = True) -> Iterator[Frame]:
        """Frames of one run: a cheap x0 preview per step, then the VAE-decoded image (batch 1)."""
        if not self.experts:
            raise RuntimeError(f"the {self.name} world was unloaded; load it again with get_world({self.name!r})")
        gen = torch.Generator().manual_seed(req.seed)
        side = self.image_size // self.vae_factor
        shape = (1, self.vae.config.latent_channels, side, side)
        yield from sample(self.mixture(req, batched), self.conditions(req), shape, steps=req.steps,
                          sampler=req.sampler, generator=gen, num_train_timesteps=self.num_train_timesteps,
                          beta_schedule=self.beta_schedule, beta_start=self.beta_start, beta_end=self.beta_end,
                          device=self.device, preview=self.decode_preview, final=self.decode_final)

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @torch.inference_mode()
    def decode_preview(self, x0: torch.Tensor) -> torch.Tensor:
        """x0 latents -> RGB in [-1,1] on the CPU: (B,3,h,w) by the linear projection, or (B,3,H,W)
        through the tiny decoder (which reads the UNet's scaled latents as they are)."""
        if self.preview_decoder is None:
            return latent_to_rgb(x0)
        return self.preview_decoder.decode(x0.to(self.device, self.dtype)).sample.float().clamp(-1, 1).cpu()

    @torch.inference_mode()
    def decode_final(self, x: torch.Tensor) -> torch.Tensor:
        """The last latents -> (B,3,H,W) RGB in [-1,1] on the CPU, through the full VAE."""
        latents = x.to(self.device, self.dtype) / self.vae.config.scaling_factor
        return self.vae.decode(latents).sample.float().clamp(-1, 1).cpu()

    def warm_up(self) -> None:
        """A one-step run with every modality given (the row layout of a full request), so kernels
        are loaded and, on CUDA, that layout's graph is captured before the first user comes."""
        s = self.image_size
        yy, xx = np.mgrid[:s, :s]
        ring = np.abs(np.hypot(yy - s / 2, xx - s / 2) - s / 4) < max(1.0, s / 64)
        sketch = np.where(ring, 255, 0).astype(np.uint8)
        seg = ADE20K_RGB[np.where(yy < s // 2, ADE20K_NAMES.index("sky"), ADE20K_NAMES.index("grass"))]
        inputs: dict[str, Any] = {"text": "a photo", "sketch": sketch, "seg": seg, "steps": 1}
        if "class" in self.modalities:
            inputs["class_id"] = 0
        for _ in self.generate(self.request(**inputs)):
            pass

    def read_caption(self, text: str | None) -> None:
        """None: CLIP reads the whole prompt; there is no attribute head to report (the page shows no reading)."""
        return None

    def unload(self) -> None:
        """Drop this world's networks and captured graphs; memory is freed once no other loaded
        world shares them (sd15 and sd15-dit share SD's networks)."""
        for e in self.experts:
            e.denoiser.release()
        self.experts, self.baselines = [], {}
        self.vae = self.text_encoder = self.tokenizer = self.preview_decoder = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


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
    from diffusers import (AutoencoderKL, AutoencoderTiny, ControlNetModel, DiTTransformer2DModel,
                           UNet2DConditionModel)
    from transformers import CLIPTextModel, CLIPTokenizer

    device, dtype = resolve_device_dtype(config)
    fast = config.fast or "graph"
    if device.type != "cuda":
        fast = "none"  # graphs and compilation are the CUDA fast path only
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    def net(cls, spec, subfolder=None):
        return _load_net(cls, spec, subfolder, config, device, dtype)

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
    if device.type == "cuda":
        world.warm_up()
    return world
