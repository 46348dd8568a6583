"""The pretrained experts behind the one denoiser signature: Stable Diffusion 1.5 with ControlNets,
and DiT; on CUDA, each network call captured once per layout as a CUDA graph."""

from __future__ import annotations

import functools
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch

from unite_demo.method.experts import NoiseSchedule, check_reads

# ---------------------------------------------------------------------------------------------
# The fast path: a network call captured once per layout as a CUDA graph

class CapturedCalls:
    """CUDA graphs of a call, one per layout key (input shapes, which rows carry which control),
    replayed with the inputs copied into static buffers. An eager SD step is bound by launching
    several hundred kernels one by one; a replay launches them all at once. The first call of a
    layout captures it (after two eager warm-up runs); a capture failure falls back to eager.
    A graph's buffers are shared by every caller, and the page runs two generations at once in two
    threads: one lock per network makes each copy-in, replay and copy-out one run's alone."""

    def __init__(self, max_graphs: int = 4):  # each graph keeps its activations' memory: a few GiB at 512x512
        self.max_graphs = max_graphs
        self.graphs: OrderedDict[Any, tuple] = OrderedDict()
        self.failed: str | None = None
        self.lock = threading.Lock()

    def __call__(self, key, fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return fn(*inputs)
        with self.lock:
            return self._replay(key, fn, inputs)

    def _replay(self, key, fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
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

class LatentDenoiser:
    """What every pretrained expert does first: refuse after release(), check the condition keys, and
    bring x_t and the master alpha_bar to its own device, dtype and (fractional) timesteps."""

    device: torch.device
    dtype: torch.dtype
    schedule: NoiseSchedule
    reads: tuple[str, ...]
    released = False

    def prepare(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Mapping[str, torch.Tensor]):
        """-> x (B, C, h, w) and t (B,) on this network's device."""
        if self.released:
            raise RuntimeError("this world was unloaded; load it again")
        check_reads(self.reads, cond)
        x = x_t.to(self.device, self.dtype)
        return x, self.schedule.timestep_for(alpha_bar.detach().cpu()).to(self.device)


class SD15Denoiser(LatentDenoiser):
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
        x, t = self.prepare(x_t, alpha_bar, cond)
        b = x_t.shape[0]
        cond = {k: v.to(self.device, self.dtype) for k, v in cond.items()}
        keys = list(cond)
        given = dict(zip(keys, torch.stack([_rows_given(cond[k]) for k in keys]).cpu())) if keys else {}  # one sync
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
        self.released = True
        self.unet = self._unet = self.null_text = None
        self.controlnets, self._controlnets, self._index = {}, {}, {}


class DiTDenoiser(LatentDenoiser):
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
        x, t = self.prepare(x_t, alpha_bar, cond)
        b = x_t.shape[0]
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
        self.released = True
        self.transformer = self._transformer = None
