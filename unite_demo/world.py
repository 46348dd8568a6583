"""Worlds (expert bundles) and the one generation entry point used by the CLI, the page and the
benchmark: request -> conditions -> product of experts -> sampler -> frames."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .combine import ProductOfExperts
from .conditions import Request, make_request
from .experts import Expert, FaceDenoiser
from .model import MODALITIES, load_face_unet, read_metadata
from .sampler import SAMPLERS, Frame, make_sampler, sample

ROOT = Path(__file__).resolve().parent.parent
BUILTIN = "cartoon-faces"
FACES_DIR = Path(os.environ.get("UNITE_FACES_DIR", ROOT / "assets" / "experts"))

# Defaults of the page, the CLI and the API (one place).
DEFAULTS = {"guidance": 2.0, "steps": 16, "seed": 0, "sampler": "dpmpp",
            "reliability": {"seg": 1.0, "sketch": 1.0, "text": 1.0}}


@dataclass
class World:
    """A set of experts in one image space, with the master noise schedule they are sampled on."""

    name: str
    experts: list[Expert]  # the product's experts, one per modality
    image_size: int
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    baselines: dict[str, Expert] = field(default_factory=dict)  # e.g. the jointly trained model
    cards: dict[str, dict] = field(default_factory=dict)  # training records from the weights' metadata

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.experts)

    def request(self, **inputs) -> Request:
        """Validate raw inputs for this world (see conditions.make_request)."""
        inputs = {"guidance": DEFAULTS["guidance"], "steps": DEFAULTS["steps"], "seed": DEFAULTS["seed"],
                  "sampler": DEFAULTS["sampler"], **inputs}
        return make_request(self.image_size, self.modalities, samplers=SAMPLERS,
                            default_reliability=DEFAULTS["reliability"], **inputs)

    def warm_up(self) -> None:
        """One tiny generation so the first user request pays no start-up costs."""
        for _ in self.generate(self.request(text="a face", steps=2)):
            pass

    def mixture(self, req: Request, batched: bool = True) -> ProductOfExperts:
        """The product of this world's experts with the request's reliabilities and guidance."""
        return ProductOfExperts(self.experts, req.reliability, req.guidance, batched=batched)

    def generate(self, req: Request, batched: bool = True) -> Iterator[Frame]:
        """Frames of one run: an x0 preview per step, then the final image (batch 1)."""
        gen = torch.Generator().manual_seed(req.seed)
        shape = (1, 3, self.image_size, self.image_size)
        yield from sample(self.mixture(req, batched), req.tensors(), shape, steps=req.steps, sampler=req.sampler,
                          generator=gen, num_train_timesteps=self.num_train_timesteps, beta_schedule=self.beta_schedule)


def _faces_expert(path: Path, name: str) -> tuple[Expert, dict]:
    net = load_face_unet(path)
    c = net.config
    sched = make_sampler("ddim", c.num_train_timesteps, c.beta_schedule)
    return Expert(name, FaceDenoiser(net, sched.alphas_cumprod), tuple(c.modalities)), dict(c.extra)


def faces_world_files(folder: Path = FACES_DIR) -> dict[str, Path]:
    return {name: folder / f"{name}.safetensors" for name in (*MODALITIES, "joint")}


def load_faces_world(folder: Path | str = FACES_DIR) -> World:
    """The built-in cartoon-faces world from self-describing safetensors files in `folder`."""
    folder = Path(folder)
    files = faces_world_files(folder)
    missing = [str(p) for n, p in files.items() if n in MODALITIES and not p.exists()]
    if missing:
        raise FileNotFoundError(f"the {BUILTIN} world is missing its weights: {', '.join(missing)}; "
                                f"train them with `python -m unite_demo.train` (see README)")
    experts, cards = [], {}
    for name in MODALITIES:
        expert, cards[name] = _faces_expert(files[name], name)
        experts.append(expert)
    baselines = {}
    if files["joint"].exists():
        baselines["joint"], cards["joint"] = _faces_expert(files["joint"], "joint")
    first = json.loads(read_metadata(files[MODALITIES[0]])["config"])
    return World(BUILTIN, experts, first["image_size"], first["num_train_timesteps"], first["beta_schedule"],
                 baselines, cards)


@functools.lru_cache(maxsize=4)
def get_world(name: str = BUILTIN) -> World:
    """A world, loaded once per process."""
    if name == BUILTIN:
        return load_faces_world()
    raise ValueError(f"unknown world {name!r}; accepted: {BUILTIN}")
