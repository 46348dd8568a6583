"""Sampling any denoiser with diffusers' schedulers, yielding the predicted x0 after every step."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

from unite_demo.limits import DEFAULTS, MAX_SAMPLER_STEPS, STEPS
from unite_demo.method.experts import Denoiser, eps_to_x0

SAMPLERS = ("dpmpp", "unipc", "ddim")
MIN_STEPS, MAX_STEPS = int(STEPS.low), MAX_SAMPLER_STEPS


@dataclass
class Frame:
    """One sampler step: the x0 preview (B,C,H,W), or the final sample when done."""

    step: int  # 1-based
    total: int
    image: torch.Tensor
    done: bool = False
    conflict: torch.Tensor | None = None  # (B, h, w) in [0, 1], where the experts disagreed (World.generate_strip)


def make_sampler(name: str, num_train_timesteps: int, beta_schedule: str, beta_start: float = 0.0001,
                 beta_end: float = 0.02):
    """A diffusers scheduler on the master schedule; the mixture always predicts epsilon.
    beta_start/beta_end matter for the "linear" and "scaled_linear" schedules (SD 1.5: 0.00085, 0.012)."""
    common = dict(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule, prediction_type="epsilon",
                  timestep_spacing="trailing", beta_start=beta_start, beta_end=beta_end)
    if name == "dpmpp":
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **common)
    if name == "unipc":  # UniPC (Zhao et al., NeurIPS 2023): order-2 predictor-corrector, diffusers' defaults
        return UniPCMultistepScheduler(solver_order=2, predict_x0=True, solver_type="bh2", **common)
    if name == "ddim":
        return DDIMScheduler(clip_sample=False, **common)
    raise ValueError(f"unknown sampler {name!r}; accepted: {', '.join(SAMPLERS)}")


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or not MIN_STEPS <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be a whole number from {MIN_STEPS} to {MAX_STEPS}, got {steps!r}")
    return steps


def step_alpha_bars(steps: int, sampler: str = DEFAULTS["sampler"], num_train_timesteps: int = 1000,
                    beta_schedule: str = "squaredcos_cap_v2", beta_start: float = 0.0001, beta_end: float = 0.02
                    ) -> torch.Tensor:
    """(steps,) the master alpha_bar at which sample() asks the denoiser at each step, increasing."""
    sched = make_sampler(sampler, num_train_timesteps, beta_schedule, beta_start, beta_end)
    sched.set_timesteps(check_steps(steps))
    return torch.stack([sched.alphas_cumprod[int(t)].float() for t in sched.timesteps])


def heard_steps(window: tuple[float, float], steps: int) -> list[int]:
    """The steps (1-based) of a run of `steps` in which an expert with this window over the denoising
    (start, end), fractions from 0 to 1, is heard: those whose middle, (k - 1/2) / steps, lies in
    [start, end). (0, 0.6) over 10 steps: steps 1 to 6; (0.5, 1) over 4 steps: steps 3 and 4."""
    start, end = window
    return [k for k in range(1, steps + 1) if start <= (k - 0.5) / steps < end]


def alpha_bar_window(window: tuple[float, float], alpha_bars: torch.Tensor) -> tuple[float, float] | None:
    """A window over the denoising (start, end) -> the alpha_bar interval (lo, hi) that holds exactly
    its heard steps (heard_steps) among a run's step_alpha_bars: each end halfway between the alpha_bar
    of a heard step and that of its unheard neighbour, 0 and 1 at the run's ends; None when no step is
    heard. The product of experts reads windows in this form (combine.ProductOfExperts), so the one
    denoiser signature (x_t, alpha_bar, cond) carries them."""
    a = [float(v) for v in alpha_bars]
    heard = heard_steps(window, len(a))
    if not heard:
        return None
    first, last = heard[0] - 1, heard[-1] - 1  # 0-based
    lo = 0.0 if first == 0 else (a[first - 1] + a[first]) / 2
    hi = 1.0 if last == len(a) - 1 else (a[last] + a[last + 1]) / 2
    return lo, hi


@torch.inference_mode()
def sample(denoiser: Denoiser, cond: Mapping[str, torch.Tensor], shape: tuple[int, ...], *, steps: int,
           sampler: str = DEFAULTS["sampler"], generator: torch.Generator, num_train_timesteps: int = 1000,
           beta_schedule: str = "squaredcos_cap_v2", beta_start: float = 0.0001, beta_end: float = 0.02,
           device: torch.device | str | None = None, preview: Callable[[torch.Tensor], torch.Tensor] | None = None,
           final: Callable[[torch.Tensor], torch.Tensor] | None = None, copies: int = 1) -> Iterator[Frame]:
    """Yield a Frame with the x0 preview after each of the `steps` steps, then the final sample
    (done=True).
    Deterministic for a given generator state. device: where x_t lives (the noise is drawn on the
    CPU, so a seed gives the same start everywhere). preview / final: x0 / the last x_t -> the
    image shown; default clamp to [-1, 1] (pixel worlds), a latent world decodes here. copies: the
    starting noise, drawn at `shape`, repeated this many times along the batch (a strip: every image
    from the same noise as the run alone)."""
    check_steps(steps)
    sched = make_sampler(sampler, num_train_timesteps, beta_schedule, beta_start, beta_end)
    sched.set_timesteps(steps)
    alphas_cumprod = sched.alphas_cumprod
    x = torch.randn(shape, generator=generator)
    if copies > 1:
        x = x.repeat(copies, *([1] * (len(shape) - 1)))
    if device is not None:
        x = x.to(device)
    timesteps = list(sched.timesteps)
    for k, t in enumerate(timesteps, start=1):
        alpha_bar = alphas_cumprod[int(t)].float().expand(x.shape[0]).to(x.device)  # (B,)
        eps = denoiser(x, alpha_bar, cond)
        if not torch.isfinite(eps).all():
            raise FloatingPointError(f"the model produced non-finite values at step {k} of {len(timesteps)}")
        x0 = eps_to_x0(eps, x, alpha_bar)
        x = sched.step(eps, t, x).prev_sample  # all three are deterministic
        yield Frame(k, len(timesteps), preview(x0) if preview is not None else x0.clamp(-1, 1))
    yield Frame(len(timesteps), len(timesteps), final(x) if final is not None else x.clamp(-1, 1), done=True)
