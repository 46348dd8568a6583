"""The one denoiser signature, noise-schedule alignment, and an expert (a modality and its denoiser).

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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch


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


@dataclass
class Expert:
    """One modality's expert: a name (the slider it answers to), its denoiser, and the
    condition keys it is given. Experts that share one denoiser object share its null row."""

    name: str
    denoiser: Denoiser
    reads: tuple[str, ...]
