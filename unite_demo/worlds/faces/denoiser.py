"""The cartoon-faces network behind the one denoiser signature (unite_demo.method.experts)."""

from __future__ import annotations

import functools

import torch

from unite_demo.method.engines import serve
from unite_demo.method.experts import NoiseSchedule, check_reads, to_eps
from unite_demo.worlds.faces.data import NUM_CLASSES
from unite_demo.worlds.faces.model import TEXT_DIM, FaceUNet


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
