"""The one denoiser signature, noise-schedule alignment, and the cartoon-faces expert.

Every denoiser in this package is called as

    eps = denoiser(x_t, alpha_bar, cond)

    x_t        (B, C, H, W)  noisy image (pixels in [-1, 1], or latents)
    alpha_bar  (B,)          noise level as the master schedule's cumulative alpha, in (0, 1)
    cond       dict[str, Tensor]: one entry per modality the denoiser reads, batch B first;
               an all-zero row is that modality's null (unconditional) input; a missing key
               means null for every row
    eps        (B, C, H, W)  predicted noise, with x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps

The noise level is given as alpha_bar, not as a timestep, so experts trained with different
schedules can be asked about the same x_t: each maps alpha_bar to its own (fractional) timestep.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

from .engines import serve
from .faces import NUM_CLASSES
from .model import TEXT_DIM, FaceUNet


class Denoiser(Protocol):
    space: str  # image space, e.g. "pixel 3x32x32"; only denoisers of one space can be combined
    reads: tuple[str, ...]  # condition keys this denoiser understands

    def __call__(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        ...


def check_reads(reads: tuple[str, ...], cond: Mapping[str, torch.Tensor]) -> None:
    """Refuse condition keys a denoiser does not understand (a caller bug, not user input)."""
    unknown = set(cond) - set(reads)
    if unknown:
        raise ValueError(f"this network reads {reads}, not {sorted(unknown)}")


class NoiseSchedule:
    """A network's own alpha_bar table, and the map from any alpha_bar to its timestep."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        if ac.dim() != 1 or len(ac) < 2 or not bool((ac[1:] < ac[:-1]).all()):
            raise ValueError("alphas_cumprod must be a strictly decreasing 1-D table")
        self.alphas_cumprod = ac
        self._log_ac = ac.log()

    def timestep_for(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        """Fractional timestep t with alphas_cumprod(t) == alpha_bar, interpolating log alpha_bar
        between integer timesteps; clamped to the table's range."""
        la = torch.as_tensor(alpha_bar, dtype=torch.float64).log()
        table = (-self._log_ac).to(la.device)  # increasing in t
        q = (-la).clamp(table[0], table[-1])
        hi = torch.searchsorted(table, q).clamp(1, len(table) - 1)
        lo = hi - 1
        frac = (q - table[lo]) / (table[hi] - table[lo])
        return (lo + frac).float()


def to_eps(pred: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """Convert an epsilon / v / x0 ("sample") prediction to epsilon."""
    a = alpha_bar.view(-1, 1, 1, 1).to(x_t.dtype)
    if prediction_type == "epsilon":
        return pred
    if prediction_type == "v_prediction":
        return a.sqrt() * pred + (1 - a).sqrt() * x_t
    if prediction_type == "sample":
        return (x_t - a.sqrt() * pred) / (1 - a).sqrt()
    raise ValueError(f"unknown prediction_type {prediction_type!r}; accepted: epsilon, v_prediction, sample")


def eps_to_x0(eps: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    a = alpha_bar.view(-1, 1, 1, 1).to(x_t.dtype)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def x0_to_eps(x0: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    a = alpha_bar.view(-1, 1, 1, 1).to(x_t.dtype)
    return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


def example_inputs(c) -> tuple[torch.Tensor, ...]:
    """Inputs of a FaceUNet's forward at batch 1 (for tracing and exporting): x_t, t, seg, sketch, text."""
    return (torch.zeros(1, 3, c.image_size, c.image_size), torch.full((1,), c.num_train_timesteps / 2),
            torch.zeros(1, NUM_CLASSES, c.image_size, c.image_size), torch.zeros(1, 2, c.image_size, c.image_size),
            torch.zeros(1, TEXT_DIM))


FORWARD_NAMES = ("x_t", "t", "seg", "sketch", "text")


class FaceDenoiser:
    """A cartoon-faces network behind the one denoiser signature, its forward run by `engine`
    (engines.ENGINES; default engines.default_engine())."""

    def __init__(self, net: FaceUNet, alphas_cumprod: torch.Tensor, engine: str | None = None):
        self.net = net.eval().requires_grad_(False)
        self.engine = engine
        c = net.config
        self.schedule = NoiseSchedule(alphas_cumprod)
        self.space = f"pixel 3x{c.image_size}x{c.image_size}"
        self.reads = tuple(c.modalities)
        self.prediction_type = c.prediction_type

    @functools.cached_property
    def forward(self):
        """The served forward, made on first use: a network the page never calls (the joint
        baseline) is never exported."""
        return serve(self.net, example_inputs(self.net.config), FORWARD_NAMES, self.engine)

    @torch.inference_mode()
    def __call__(self, x_t, alpha_bar, cond):
        check_reads(self.reads, cond)
        b, size = x_t.shape[0], x_t.shape[-1]
        seg = cond.get("seg", x_t.new_zeros(b, NUM_CLASSES, size, size))
        sketch = cond.get("sketch", x_t.new_zeros(b, 2, size, size))
        text = cond.get("text", x_t.new_zeros(b, TEXT_DIM))
        t = self.schedule.timestep_for(alpha_bar)
        pred = self.forward(x_t, t, seg, sketch, text)
        return to_eps(pred, x_t, alpha_bar, self.prediction_type)

    def read_caption(self, text: torch.Tensor) -> dict[str, tuple[str, float]]:
        """What this network takes from one caption embedding (1, 384): {attribute: (value,
        probability)}; {} for a network without a caption head."""
        head = self.net.caption_head
        return head.read(text)[0] if head is not None else {}


@dataclass
class Expert:
    """One modality's expert: a name (the slider it answers to), its denoiser, and the
    condition keys it is given. Experts that share one denoiser object share its null row."""

    name: str
    denoiser: Denoiser
    reads: tuple[str, ...]
