"""The pretrained worlds, in Stable Diffusion's VAE latent space.

- `sd15`: Stable Diffusion 1.5's UNet with its CLIP text encoder is the text expert, ControlNet
  scribble the sketch expert, ControlNet seg (ADE20K palette) the segmentation expert. The three
  share one UNet, so a step is one batched call over N + 1 rows (one shared null row).
- `sd15-dit`: the same, plus DiT-XL/2-512 as an ImageNet-class expert. DiT was trained on another
  noise schedule (linear betas) than SD (scaled linear); it is asked at the timestep whose alpha_bar
  matches the master (SD's) alpha_bar (experts.NoiseSchedule).

loading.py: configuration (the UNITE_* variables) and loading; denoisers.py: the experts behind the
one denoiser signature; latent.py: the latent world (conditions, previews, VAE decoding).
"""

from unite_demo.limits import SD_DEFAULTS
from unite_demo.worlds.pretrained.denoisers import CapturedCalls, DiTDenoiser, SD15Denoiser
from unite_demo.worlds.pretrained.latent import LatentWorld, latent_to_rgb
from unite_demo.worlds.pretrained.loading import (ENV, TITLES, WORLDS, PretrainedConfig, WeightsMissing,
                                                  configured_worlds, how_to_enable, load_net, load_world, missing)

__all__ = ["ENV", "SD_DEFAULTS", "TITLES", "WORLDS", "CapturedCalls", "DiTDenoiser", "LatentWorld", "PretrainedConfig",
           "SD15Denoiser", "WeightsMissing", "configured_worlds", "how_to_enable", "latent_to_rgb", "load_net",
           "load_world", "missing"]
