"""The pretrained worlds in Stable Diffusion's VAE latent space: the conditions as these experts read
them, previews through a latent -> RGB projection, the full VAE for the final image."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unite_demo.limits import SD_DEFAULTS
from unite_demo.method.combine import ProductOfExperts
from unite_demo.method.experts import Expert
from unite_demo.worlds.conditions import Request
from unite_demo.worlds.pretrained.labels import ADE20K_NAMES, ADE20K_RGB
from unite_demo.worlds.world import World

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


# How these experts read each modality (the class: a one-hot row, the modality's own tensor).
ENCODERS = {"text": lambda text, world: world.encode_prompt(text),
            "sketch": lambda strokes, world: scribble_image(strokes),
            "seg": lambda ids, world: seg_image(ids)}


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
    encoders: dict = field(default_factory=lambda: dict(ENCODERS))
    palette: tuple[tuple[str, ...], np.ndarray] = (ADE20K_NAMES, ADE20K_RGB)
    defaults: dict = field(default_factory=lambda: dict(SD_DEFAULTS))
    subject: str = "image"

    @torch.inference_mode()
    def encode_prompt(self, text: str) -> torch.Tensor:
        """A prompt -> CLIP's last hidden states (1, L, D), as SD 1.5 reads them."""
        ids = self.tokenizer([text], padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids  # (1, L)
        return self.text_encoder(ids.to(self.device))[0]

    def conditions(self, req: Request) -> dict[str, torch.Tensor]:
        """The request's conditions as the experts read them (ENCODERS), batch 1, on the world's device."""
        return {k: v.to(self.device, self.dtype) for k, v in super().conditions(req).items()}

    def mixture(self, req: Request, batched: bool = True) -> ProductOfExperts:
        experts = self.experts
        if self.spatial_prompt and "text" in req.values:
            # Option: the spatial experts' rows carry the prompt too (their null row stays shared).
            experts = [Expert(e.name, e.denoiser, (*e.reads, "text")) if e.name in SPATIAL else e for e in experts]
        return ProductOfExperts(experts, batched=batched, **self.product_settings(req))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        side = self.image_size // self.vae_factor
        return self.vae.config.latent_channels, side, side

    def schedule(self) -> dict:
        """SD's scaled-linear schedule; a cheap x0 preview per step, the VAE-decoded image at the end."""
        return {"num_train_timesteps": self.num_train_timesteps, "beta_schedule": self.beta_schedule,
                "beta_start": self.beta_start, "beta_end": self.beta_end, "preview": self.decode_preview,
                "final": self.decode_final}

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
        inputs: dict[str, Any] = {"text": "a photo", "sketch": sketch, "seg": seg, "class": 0}
        for _ in self.generate(self.request({m: v for m, v in inputs.items() if m in self.modalities}, steps=1)):
            pass

    def read_caption(self, text: str | None) -> None:
        """None: CLIP reads the whole prompt; there is no attribute head to report (the page shows no reading)."""
        return None

    def unload(self) -> None:
        """Drop this world's networks and captured graphs; memory is freed once no other loaded
        world shares them (sd15 and sd15-dit share SD's networks)."""
        for e in self.experts:
            e.denoiser.release()
        self.unloaded, self.experts, self.baselines = self.modalities, [], {}
        self.vae = self.text_encoder = self.tokenizer = self.preview_decoder = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
