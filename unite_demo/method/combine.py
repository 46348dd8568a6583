"""Unite and Conquer's generalized product of experts (Nair, Bandara, Patel, CVPR 2023),
as one denoiser, so the sampler never knows there are several experts.

    eps_hat(x_t) = sum_i beta_i eps_i(x_t, null) + s * sum_i r_i [eps_i(x_t, c_i) - eps_i(x_t, null)]

With guidance options (GuidanceOptions) the guidance term is applied in one of three established
ways that keep strong guidance from burning the colours; each reduces to the formula at s = 1.

Reliability in space and time. r_i may act per pixel and per step:

- Space: a reliability map m_i (H,W) in [0, 1] multiplies r_i, r_i(x) = r_i m_i(x) (0: expert i is not
  heard there, its prior included; an all-1 map is the number itself). The map is resampled (area) to
  the grid the experts predict on (x_t's H x W: pixels, or the latent grid). The prior weights follow
  per pixel, beta_i(x) = r_i(x) / sum_j r_j(x); where no active expert is heard (the sum is 0) the prior
  there is the equal mix of the active experts' nulls (prior_weights' rule, per pixel). Per-image
  quantities of the guidance options (interval's s, rescale's std, APG's projection and norm) stay
  per image, so with rescale or APG a map's region is coupled to the rest of its image.
- Time: a window (start, end), the fraction of the denoising during which expert i is heard, reaches
  the product as an interval of noise levels: sampler.alpha_bar_window turns it into the alpha_bar
  interval [lo, hi] of the run's own steps when the run is built (World.product_settings), and the product
  hears expert i only at calls whose alpha_bar lies in it (outside: r_i = 0, prior included). The
  denoiser signature stays (x_t, alpha_bar, cond) and the product keeps no state between steps.

conflict_map measures where the experts' guidance terms g_i = r_i(x) [eps_i(c_i) - eps_i(null)] point
different ways; ProductOfExperts(keep_conflict=True) keeps it from every call in `last_conflict`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from unite_demo.method.experts import Denoiser, Expert, eps_to_x0, x0_to_eps


@dataclass(frozen=True)
class GuidanceOptions:
    """How the guidance scale s acts on the guidance term G = sum_i r_i [eps_i(c_i) - eps_i(null)].
    Writing eps_1 = prior + G (the product at s = 1), the guided eps is eps_1 + (s - 1) G, and:

    interval: (lo, hi): s acts only where the noise level sigma = sqrt((1 - alpha_bar) / alpha_bar)
        is in (lo, hi], elsewhere s = 1 (guidance in a limited interval, Kynkaanniemi et al.,
        NeurIPS 2024).
    rescale: phi in [0, 1]: the guided eps is rescaled to eps_1's standard deviation (per image)
        and mixed back, phi * rescaled + (1 - phi) * guided (Lin et al., WACV 2024; diffusers'
        guidance_rescale, which rescales to the conditional prediction's std).
    apg: eta >= 0: adaptive projected guidance (Sadat et al., ICLR 2025) in x0 space: the extra
        (s - 1) G, as an x0 update, is clipped to norm apg_norm (per image; 0: no clip) and split
        into its parts parallel and orthogonal to eps_1's x0; the parallel part, which mostly
        raises saturation, is kept with weight eta only."""

    interval: tuple[float, float] | None = None
    rescale: float = 0.0
    apg: float | None = None
    apg_norm: float = 0.0

    @property
    def plain(self) -> bool:
        return self.interval is None and self.rescale == 0 and self.apg is None


PLAIN = GuidanceOptions()
# The three remedies at their papers' settings: EDM2's interval for ImageNet-512 (sigma in (0.28, 5.42]),
# Lin et al.'s phi = 0.7, APG with the parallel part dropped (eta = 0) and no norm clip; and none.
REMEDIES = {"plain": PLAIN, "interval": GuidanceOptions(interval=(0.28, 5.42)), "rescale": GuidanceOptions(rescale=0.7),
            "apg": GuidanceOptions(apg=0.0)}


def _per_image(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))


# A reliability or prior weight: one number, or per pixel a tensor (B or 1, 1, H, W) on eps's grid.
Weight = float | torch.Tensor


def guidance_terms(eps_null: Sequence[torch.Tensor], eps_cond: Sequence[torch.Tensor], reliability: Sequence[Weight]
                   ) -> list[torch.Tensor]:
    """Each expert's guidance term g_i = r_i [eps_i(x_t, c_i) - eps_i(x_t, null)]."""
    return [r * (ec - en) for r, ec, en in zip(reliability, eps_cond, eps_null)]


def combine_eps(eps_null: Sequence[torch.Tensor], eps_cond: Sequence[torch.Tensor], reliability: Sequence[Weight],
                beta: Sequence[Weight], guidance: float, options: GuidanceOptions = PLAIN,
                x_t: torch.Tensor | None = None, alpha_bar: torch.Tensor | None = None) -> torch.Tensor:
    """The formula, and the only place it is written: per-expert null and conditional eps,
    reliabilities r_i, prior weights beta_i (summing to 1; each a number or, per pixel, a tensor
    (B or 1, 1, H, W)) and the guidance scale s; with options, the guidance term as GuidanceOptions
    says (x_t and alpha_bar, per image, are needed then)."""
    prior = sum(b * e for b, e in zip(beta, eps_null))
    guide = sum(guidance_terms(eps_null, eps_cond, reliability))
    if options.plain:
        return prior + guidance * guide
    eps_1 = prior + guide
    s = torch.full((x_t.shape[0],), float(guidance), dtype=guide.dtype)
    sigma = ((1 - alpha_bar) / alpha_bar).sqrt().to(guide.dtype)
    if options.interval is not None:
        lo, hi = options.interval
        s = torch.where((sigma > lo) & (sigma <= hi), s, torch.ones_like(s))
    extra = _per_image(s - 1, guide) * guide
    if options.apg is not None:
        c = _per_image(sigma, guide)  # x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab): an eps change d moves x0 by -sigma d
        update = -c * extra
        if options.apg_norm > 0:
            norm = update.flatten(1).norm(dim=1).clamp_min(1e-12)
            update = update * _per_image((options.apg_norm / norm).clamp(max=1.0), update)
        unit = eps_to_x0(eps_1, x_t, alpha_bar).flatten(1)
        unit = (unit / unit.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(update)
        parallel = _per_image((update * unit).flatten(1).sum(1), update) * unit
        extra = -((update - parallel) + options.apg * parallel) / c.clamp_min(1e-12)
    eps = eps_1 + extra
    if options.rescale > 0:
        std_1, std = eps_1.flatten(1).std(1), eps.flatten(1).std(1).clamp_min(1e-12)
        eps = options.rescale * eps * _per_image(std_1 / std, eps) + (1 - options.rescale) * eps
    return eps


def prior_weights(reliability: Mapping[str, Weight], beta: Mapping[str, float] | None = None) -> dict[str, Weight]:
    """beta_i = r_i / sum_j r_j by default; explicit beta is normalised to sum to 1.
    With every r_i = 0 (or no experts active) the prior is an equal mix of all experts.
    Per pixel (any r_i a tensor, r_i(x) = r_i m_i(x)): the same rule at every pixel, over the experts
    heard there (r_i(x) > 0; explicit beta: beta_i [r_i(x) > 0] normalised), and where none is heard
    the equal mix of all the experts given."""
    names = list(reliability)
    if beta is not None:
        missing = [n for n in names if n not in beta]
        if missing:
            raise ValueError(f"explicit beta has no weight for {missing}; give one for each of {names}")
        if any(not (beta[n] >= 0) for n in names) or sum(beta[n] for n in names) <= 0:
            raise ValueError(f"beta weights must be >= 0 with a positive sum, got {dict(beta)}")
    if any(isinstance(reliability[n], torch.Tensor) for n in names):
        weights = {n: beta[n] * (reliability[n] > 0) if beta is not None else reliability[n] for n in names}
        total = sum(weights.values())  # (B or 1, 1, H, W)
        heard = total > 0
        safe = torch.where(heard, total, torch.ones_like(total))
        return {n: torch.where(heard, weights[n] / safe, torch.full_like(total, 1.0 / len(names))) for n in names}
    if beta is not None:
        total = sum(beta[n] for n in names)
        return {n: beta[n] / total for n in names}
    total = sum(reliability.values())
    if total <= 0:
        return {n: 1.0 / len(names) for n in names}
    return {n: reliability[n] / total for n in names}


def conflict_map(terms: Sequence[torch.Tensor], neighbourhood: int = 1) -> torch.Tensor:
    """Where the experts' guidance terms g_i (B,C,H,W) point different ways: per pixel, with the
    terms as vectors over the channels, 0.5 (1 - c), c the mean cosine over the pairs of experts
    weighted by |g_i| |g_j|, i.e. c = sum_{i<j} g_i.g_j / sum_{i<j} |g_i| |g_j|. -> (B,H,W) in [0, 1]:
    0 where the experts agree (or fewer than 2 push there), 0.5 where they are orthogonal, 1 where
    they push opposite ways. neighbourhood k > 1: both sums are taken over each pixel's k x k
    neighbourhood, so that a grid of few channels (3 in pixel space) does not read as noise."""
    b, _, h, w = terms[0].shape
    dots = terms[0].new_zeros(b, h, w)
    weight = terms[0].new_zeros(b, h, w)
    norms = [g.norm(dim=1) for g in terms]  # (B, H, W) each
    for i in range(len(terms)):
        for j in range(i + 1, len(terms)):
            dots = dots + (terms[i] * terms[j]).sum(1)
            weight = weight + norms[i] * norms[j]
    if neighbourhood > 1:
        pool = torch.nn.functional.avg_pool2d
        dots, weight = (pool(t[:, None], neighbourhood, 1, neighbourhood // 2, count_include_pad=False)[:, 0]
                        for t in (dots, weight))
    pushed = weight > 1e-12
    cosine = torch.where(pushed, dots / torch.where(pushed, weight, torch.ones_like(weight)), torch.ones_like(weight))
    return (0.5 * (1 - cosine)).clamp(0, 1)


CONFLICT_NEIGHBOURHOOD = 3  # the conflict view's cosines are taken over 3 x 3 pixels of the experts' grid


def map_on_grid(reliability_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A reliability map (H,W) in [0, 1] -> (1,1,h,w) on the experts' grid, resampled by area."""
    m = reliability_map[None, None]  # (1, 1, H, W)
    if tuple(m.shape[-2:]) == tuple(size):
        return m
    return torch.nn.functional.interpolate(m, size=tuple(size), mode="area")


class ProductOfExperts:
    """The combined denoiser: eps = poe(x_t, alpha_bar, cond), same signature as each expert.

    reliability r_i >= 0 per expert name (0 removes the expert, prior included; a missing entry
    counts as 0). Experts whose condition is absent from `cond` are off. Experts that share one
    denoiser are evaluated in one batched call with one shared null row (N + 1 rows), others in one
    call each of [conditional, null] rows. With clamp_x0 (default for pixel spaces) the combined
    x0 is clamped to [-1, 1] and eps recomputed from it, as DDIM does. options: how the guidance
    scale acts (GuidanceOptions; plain by default).

    maps: per expert name, a reliability map (H,W) in [0, 1] at any size, r_i(x) = r_i m_i(x) on x_t's
    grid (an all-1 map is the number; an all-0 map turns the expert off). windows: per expert name,
    the alpha_bar interval (lo, hi) in which it is heard (sampler.alpha_bar_window); at a call whose
    alpha_bar lies outside, r_i = 0. keep_conflict: keep each call's conflict_map of the guidance
    terms over CONFLICT_NEIGHBOURHOOD, (B,H,W), in `last_conflict` (zeros where fewer than 2 experts are
    heard).
    """

    def __init__(self, experts: Sequence[Expert], reliability: Mapping[str, float], guidance: float = 1.0,
                 beta: Mapping[str, float] | None = None, clamp_x0: bool | None = None, batched: bool = True,
                 options: GuidanceOptions = PLAIN, maps: Mapping[str, torch.Tensor | np.ndarray] | None = None,
                 windows: Mapping[str, tuple[float, float]] | None = None, keep_conflict: bool = False):
        if not experts:
            raise ValueError("a product of experts needs at least one expert")
        names = [e.name for e in experts]
        if len(set(names)) != len(names):
            raise ValueError(f"expert names must be unique, got {names}")
        spaces = {e.denoiser.space for e in experts}
        if len(spaces) > 1:
            detail = ", ".join(f"{e.name}: {e.denoiser.space}" for e in experts)
            raise ValueError(f"these experts live in different image spaces and cannot be combined ({detail})")
        for what, given in (("reliability", reliability), ("reliability map", maps or {}), ("window", windows or {})):
            unknown = set(given) - set(names)
            if unknown:
                raise ValueError(f"{what} given for unknown expert(s) {sorted(unknown)}; experts are {sorted(names)}")
        for name, r in reliability.items():
            if not (r >= 0) or r == float("inf"):
                raise ValueError(f"reliability of {name} must be a finite number >= 0, got {r}")
        if not (guidance >= 0) or guidance == float("inf"):
            raise ValueError(f"guidance must be a finite number >= 0, got {guidance}")
        self.maps: dict[str, torch.Tensor] = {}
        for name, m in (maps or {}).items():
            m = torch.as_tensor(np.asarray(m) if not isinstance(m, torch.Tensor) else m).float().cpu()
            if m.dim() != 2 or m.numel() == 0 or not bool(((m >= 0) & (m <= 1)).all()):
                raise ValueError(f"reliability map of {name} must be (H,W) with values in [0, 1], got {tuple(m.shape)}")
            if not bool((m == 1).all()):  # all 1: the number itself
                self.maps[name] = m
        self.windows: dict[str, tuple[float, float]] = {}
        for name, (lo, hi) in (windows or {}).items():
            if not 0 <= lo < hi <= 1:
                raise ValueError(f"window of {name} must be an alpha_bar interval 0 <= lo < hi <= 1, got {(lo, hi)}")
            self.windows[name] = (float(lo), float(hi))
        self.experts = sorted(experts, key=lambda e: e.name)  # order-independent sums
        self.reliability = {e.name: float(reliability.get(e.name, 0.0)) for e in self.experts}
        self.guidance = float(guidance)
        self.beta = beta
        self.space = spaces.pop()
        self.reads = tuple(sorted({k for e in self.experts for k in e.reads}))
        self.clamp_x0 = self.space.startswith("pixel") if clamp_x0 is None else clamp_x0
        self.batched = batched
        self.options = options
        self.keep_conflict = keep_conflict
        self.last_conflict: torch.Tensor | None = None  # (B, H, W), the last call's conflict_map (keep_conflict)
        self._on_grid: dict[tuple, torch.Tensor] = {}  # (name, h, w, device, dtype) -> (1, 1, h, w)
        self.calls = 0  # network calls made so far (for benchmarks)
        self.rows = 0  # rows evaluated so far

    def _in_window(self, name: str, alpha_bar: torch.Tensor) -> torch.Tensor | None:
        """(B,) bool: the rows whose alpha_bar lies in the expert's window; None: it has none (always heard)."""
        if name not in self.windows:
            return None
        lo, hi = self.windows[name]
        return (alpha_bar >= lo) & (alpha_bar <= hi)

    def active(self, cond: Mapping[str, torch.Tensor], alpha_bar: torch.Tensor | None = None) -> list[Expert]:
        """Experts with r > 0 whose conditions are all present, whose map is not all 0 and (given
        alpha_bar) whose window holds the noise level of at least one row."""
        def heard(e: Expert) -> bool:
            if e.name in self.maps and not bool(self.maps[e.name].any()):
                return False
            rows = self._in_window(e.name, alpha_bar) if alpha_bar is not None else None
            return rows is None or bool(rows.any())
        return [e for e in self.experts if self.reliability[e.name] > 0 and all(k in cond for k in e.reads)
                and heard(e)]

    def grid_map(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """The expert's reliability map on the grid of `like` (B,C,h,w): (1,1,h,w), on its device and dtype."""
        key = (name, *like.shape[-2:], like.device, like.dtype)
        if key not in self._on_grid:
            self._on_grid[key] = map_on_grid(self.maps[name], tuple(like.shape[-2:])).to(like.device, like.dtype)
        return self._on_grid[key]

    def reliabilities(self, names: Sequence[str], x_t: torch.Tensor, alpha_bar: torch.Tensor) -> dict[str, Weight]:
        """r_i for these (active) experts at this call: the number, or per pixel and row
        r_i m_i(x) [alpha_bar in window_i] as a tensor (1 or B, 1, h, w)."""
        out: dict[str, Weight] = {}
        for n in names:
            r: Weight = self.reliability[n]
            if n in self.maps:
                r = r * self.grid_map(n, x_t)  # (1, 1, h, w)
            rows = self._in_window(n, alpha_bar)
            if rows is not None and not bool(rows.all()):
                r = r * rows.to(x_t.dtype).view(-1, 1, 1, 1)  # (B, 1, 1, 1) or (B, 1, h, w)
            out[n] = r
        return out

    def plan(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Mapping[str, torch.Tensor]
             ) -> tuple[list[NetworkCall], Callable[[Sequence[torch.Tensor]], torch.Tensor]]:
        """One step as the network calls it needs (rows sharing a denoiser batched in one call: one
        conditional row per expert and one shared null row; or, unbatched, a null and a conditional
        call each) and the function that makes eps from their outputs, in the calls' order. A
        ProductStrip merges the calls of several products into one call per network."""
        active = self.active(cond, alpha_bar)
        calls: list[NetworkCall] = []
        b = x_t.shape[0]
        if not active:  # no condition to follow: sample the mixed prior of all experts
            by_denoiser: dict[int, int] = {}
            for e in self.experts:
                if id(e.denoiser) not in by_denoiser:
                    by_denoiser[id(e.denoiser)] = len(calls)
                    calls.append(NetworkCall(e.denoiser, x_t, alpha_bar, {}))
            beta = prior_weights({e.name: 0.0 for e in self.experts}, self.beta)

            def finish_prior(out: Sequence[torch.Tensor]) -> torch.Tensor:
                if self.keep_conflict:
                    self.last_conflict = x_t.new_zeros(b, *x_t.shape[-2:])
                return self._clamp(sum(beta[e.name] * out[by_denoiser[id(e.denoiser)]] for e in self.experts),
                                   x_t, alpha_bar)
            return calls, finish_prior
        slots: dict[str, tuple[int, int, int, int]] = {}  # expert -> (cond call, its rows, null call, its rows)
        groups: dict[int, list[Expert]] = {}
        for e in active:
            groups.setdefault(id(e.denoiser), []).append(e)
        for group in groups.values():
            den = group[0].denoiser
            if not self.batched:
                null = len(calls)
                calls.append(NetworkCall(den, x_t, alpha_bar, {}))
                for e in group:
                    slots[e.name] = (len(calls), 0, null, 0)
                    calls.append(NetworkCall(den, x_t, alpha_bar, {k: cond[k] for k in e.reads}))
                continue
            n_rows = len(group) + 1  # one conditional row per expert, then the shared null row
            keys = sorted({k for e in group for k in e.reads})
            rows = {k: torch.cat([cond[k] if k in e.reads else torch.zeros_like(cond[k]) for e in group]
                                 + [torch.zeros_like(cond[k])]) for k in keys}  # (n_rows*B, ...)
            for j, e in enumerate(group):
                slots[e.name] = (len(calls), j, len(calls), len(group))
            calls.append(NetworkCall(den, x_t.repeat(n_rows, 1, 1, 1), alpha_bar.repeat(n_rows), rows))
        names = [e.name for e in active]
        r = self.reliabilities(names, x_t, alpha_bar)
        beta = prior_weights(r, self.beta)

        def finish(out: Sequence[torch.Tensor]) -> torch.Tensor:
            def chunk(call: int, j: int) -> torch.Tensor:
                return out[call][j * b:(j + 1) * b]
            eps_cond = [chunk(*slots[n][:2]) for n in names]
            eps_null = [chunk(*slots[n][2:]) for n in names]
            eps = combine_eps(eps_null, eps_cond, [r[n] for n in names], [beta[n] for n in names], self.guidance,
                              self.options, x_t, alpha_bar)
            if self.keep_conflict:
                self.last_conflict = conflict_map(guidance_terms(eps_null, eps_cond, [r[n] for n in names]),
                                                  CONFLICT_NEIGHBOURHOOD)
            return self._clamp(eps, x_t, alpha_bar)
        return calls, finish

    def _clamp(self, eps: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        if self.clamp_x0:
            eps = x0_to_eps(eps_to_x0(eps, x_t, alpha_bar).clamp(-1, 1), x_t, alpha_bar)
        return eps

    def count(self, call: NetworkCall) -> torch.Tensor:
        """Run one network call, counting it (for benchmarks)."""
        self.calls += 1
        self.rows += call.x_t.shape[0]
        return call.denoiser(call.x_t, call.alpha_bar, call.cond)

    @torch.inference_mode()
    def __call__(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Mapping[str, torch.Tensor]) -> torch.Tensor:
        calls, finish = self.plan(x_t, alpha_bar, cond)
        return finish([self.count(c) for c in calls])


@dataclass
class NetworkCall:
    """One call of one network in a step: its rows of x_t, alpha_bar and conditions."""

    denoiser: Denoiser
    x_t: torch.Tensor
    alpha_bar: torch.Tensor
    cond: Mapping[str, torch.Tensor]


def merge_calls(calls: Sequence[NetworkCall]) -> NetworkCall:
    """Calls of one network -> one call of all their rows; a condition a call lacks is given as null
    (all-zero) rows, as the denoiser signature reads a missing key."""
    keys = sorted({k for c in calls for k in c.cond})
    like = {k: next(c.cond[k] for c in calls if k in c.cond) for k in keys}
    cond = {k: torch.cat([c.cond[k] if k in c.cond else like[k].new_zeros(c.x_t.shape[0], *like[k].shape[1:])
                          for c in calls]) for k in keys}
    return NetworkCall(calls[0].denoiser, torch.cat([c.x_t for c in calls]),
                       torch.cat([c.alpha_bar for c in calls]), cond)


class ProductStrip:
    """Several products of experts sampled side by side, one image (batch row) each: row b of x_t is
    denoised by products[b] under conds[b]. Each step makes one call per network for all the rows
    every product needs of it (the explain view's strips: each expert alone beside the product, or one
    reliability swept). Same signature as a denoiser; the cond it is called with is ignored, as each
    row carries its own."""

    def __init__(self, products: Sequence[ProductOfExperts], conds: Sequence[Mapping[str, torch.Tensor]]):
        if not products or len(products) != len(conds):
            raise ValueError(f"a strip needs one condition set per product, got {len(products)} and {len(conds)}")
        self.products, self.conds = list(products), list(conds)
        self.space = products[0].space
        self.reads = ()
        self.calls = 0
        self.rows = 0

    @torch.inference_mode()
    def __call__(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Mapping[str, torch.Tensor] | None = None
                 ) -> torch.Tensor:
        if x_t.shape[0] != len(self.products):
            raise ValueError(f"a strip of {len(self.products)} products denoises as many rows, got {x_t.shape[0]}")
        plans = [p.plan(x_t[b:b + 1], alpha_bar[b:b + 1], c)
                 for b, (p, c) in enumerate(zip(self.products, self.conds))]
        by_network: dict[int, list[tuple[int, int]]] = {}  # network -> (product, its call)
        for b, (calls, _) in enumerate(plans):
            for j, call in enumerate(calls):
                by_network.setdefault(id(call.denoiser), []).append((b, j))
        outputs = [[None] * len(calls) for calls, _ in plans]
        for members in by_network.values():
            calls = [plans[b][0][j] for b, j in members]
            merged = merge_calls(calls)
            self.calls += 1
            self.rows += merged.x_t.shape[0]
            out = merged.denoiser(merged.x_t, merged.alpha_bar, merged.cond)
            for (b, j), part in zip(members, out.split([c.x_t.shape[0] for c in calls])):
                outputs[b][j] = part
        return torch.cat([finish(out) for (_, finish), out in zip(plans, outputs)])
