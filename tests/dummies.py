"""Deterministic dummy experts for the math tests (smalldiffusion's DummyModel idea)."""

from __future__ import annotations

import torch

from unite_demo.method.experts import NoiseSchedule, to_eps

SPACE = "pixel 3x8x8"


class DummyDenoiser:
    """eps = tanh(mix(x_t) * alpha_bar + sum_k c_k @ P_k): fixed random weights per seed.
    Conditions are (B, D) vectors; a zero row is the null condition and adds nothing."""

    def __init__(self, reads: tuple[str, ...], seed: int, space: str = SPACE, dim: int = 5):
        g = torch.Generator().manual_seed(seed)
        self.reads, self.space = reads, space
        self.mix = torch.randn(3, 3, generator=g) * 0.5
        self.proj = {k: torch.randn(dim, 3, generator=g) for k in reads}
        self.calls: list[int] = []  # batch size of each call

    def __call__(self, x_t, alpha_bar, cond):
        self.calls.append(x_t.shape[0])
        out = torch.einsum("oc,bchw->bohw", self.mix, x_t) * alpha_bar.view(-1, 1, 1, 1)
        for k, c in cond.items():
            out = out + (c @ self.proj[k]).view(-1, 3, 1, 1)  # (B, 3, 1, 1)
        return torch.tanh(out)


def true_eps(x_t, alpha_bar):
    """A ground-truth eps(x_t, alpha_bar) that scheduled experts below reproduce."""
    return torch.sin(x_t * 3 + alpha_bar.view(-1, 1, 1, 1) * 5)


class ScheduledDummy:
    """Knows only its own integer-timestep schedule and predicts `prediction_type`; a correct
    alignment + conversion recovers true_eps at any master alpha_bar."""

    def __init__(self, alphas_cumprod, prediction_type: str, space: str = SPACE):
        self.schedule = NoiseSchedule(alphas_cumprod)
        self.prediction_type, self.space, self.reads = prediction_type, space, ()

    def network(self, x_t, t):
        """What the trained network would output at its own (fractional) timestep t."""
        ac = self.schedule.alphas_cumprod
        lo = t.floor().long().clamp(0, len(ac) - 2)
        frac = (t - lo).double()
        ab = torch.exp(ac[lo].log() * (1 - frac) + ac[lo + 1].log() * frac).float()  # (B,)
        eps = true_eps(x_t, ab)
        a = ab.view(-1, 1, 1, 1)
        x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
        return {"epsilon": eps, "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * x0, "sample": x0}[self.prediction_type]

    def __call__(self, x_t, alpha_bar, cond):
        t = self.schedule.timestep_for(alpha_bar)
        return to_eps(self.network(x_t, t), x_t, alpha_bar, self.prediction_type)


class FieldDummy:
    """eps = 0.1 x_t + sum_k cond_k: each condition is a (B,3,H,W) field added where it is non-zero,
    so an expert's guidance term eps(c) - eps(null) is its field, pixel by pixel."""

    def __init__(self, reads: tuple[str, ...], space: str = SPACE):
        self.reads, self.space = reads, space

    def __call__(self, x_t, alpha_bar, cond):
        out = 0.1 * x_t
        for c in cond.values():
            out = out + c
        return out
