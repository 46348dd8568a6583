"""A world (a bundle of experts in one image space) and the built-in cartoon-faces world: the one
generation entry point of the CLI, the page and the benchmark, request -> conditions -> product of
experts -> sampler -> frames. unite_demo.worlds lists and loads every world."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .combine import PLAIN, REMEDIES, GuidanceOptions, ProductOfExperts, ProductStrip
from .conditions import Request, make_request
from .experts import Expert, FaceDenoiser
from .faces import FACES_PALETTE
from .limits import DEFAULTS
from .model import MODALITIES, load_face_unet, read_metadata
from .sampler import SAMPLERS, Frame, make_sampler, sample
from .superres import SUPERRES_FILE
from .superres import load_stage as load_superres
from .text import encode_captions

ROOT = Path(__file__).resolve().parent.parent
BUILTIN = "cartoon-faces"
FACES_DIR = Path(os.environ.get("UNITE_FACES_DIR", ROOT / "assets" / "experts"))


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
    palette: tuple[tuple[str, ...], np.ndarray] = FACES_PALETTE  # the seg expert's (class names, (K,3) colours)
    class_names: tuple[str, ...] = ()  # the "class" expert's classes, by id (worlds with one)
    defaults: dict = field(default_factory=dict)  # sampling defaults where they differ from limits.DEFAULTS
    subject: str = "face"  # what it draws, for the notes
    final_stage: Callable[[torch.Tensor], torch.Tensor] | None = None  # final image -> a larger, cleaner one
    guidance_options: GuidanceOptions = PLAIN  # how the guidance term acts (combine.REMEDIES)
    device: torch.device = torch.device("cpu")  # where the networks and x_t live (the noise is drawn on the CPU)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.experts)

    def sampling_defaults(self) -> dict:
        """Steps, guidance, seed and sampler when a request does not say: limits.DEFAULTS, with this world's own."""
        return {k: v for k, v in {**DEFAULTS, **self.defaults}.items() if k not in ("reliability", "remedy")}

    def default_reliability(self) -> dict[str, float]:
        """Each modality's reliability when a request does not say: limits.DEFAULTS, or this world's own."""
        return dict(self.defaults.get("reliability", DEFAULTS["reliability"]))

    def request(self, **inputs) -> Request:
        """Validate raw inputs for this world (see conditions.make_request); `class_id` takes a class
        id or name in worlds with a class expert."""
        return make_request(self.image_size, self.modalities, samplers=SAMPLERS,
                            default_reliability=self.default_reliability(), palette=self.palette,
                            class_names=self.class_names, subject=self.subject,
                            **{**self.sampling_defaults(), **inputs})

    def read_caption(self, text: str | None) -> dict[str, tuple[str, float]]:
        """What the text expert takes from a caption: {attribute: (value, probability)} for the
        attributes it reads as mentioned; {} without a caption or a caption head."""
        expert = next((e for e in self.experts if e.name == "text"), None)
        if not text or expert is None or not hasattr(expert.denoiser, "read_caption"):
            return {}
        return expert.denoiser.read_caption(encode_captions([text]))

    def unload(self) -> None:
        """Drop the networks (the pretrained worlds free GPU memory here); the world cannot generate after."""
        self.experts, self.baselines = [], {}

    def warm_up(self) -> None:
        """Two short generations with every expert taking part, so that the first user request pays no
        start-up costs (the networks are exported or traced on their first call and settle on their second)."""
        s, (_, colours) = self.image_size, self.palette
        seg = np.broadcast_to(colours[0], (s, s, 3)).copy()
        seg[s // 4:3 * s // 4, s // 4:3 * s // 4] = colours[1]
        sketch = np.zeros((s, s), np.uint8)
        sketch[s // 2, s // 4:3 * s // 4] = 255
        inputs = {m: v for m, v in (("seg", seg), ("sketch", sketch), ("text", "a face")) if m in self.modalities}
        for _ in range(2):
            for _ in self.generate(self.request(steps=2, **inputs)):
                pass

    def mixture(self, req: Request, batched: bool = True) -> ProductOfExperts:
        """The product of this world's experts with the request's reliabilities and guidance."""
        return ProductOfExperts(self.experts, req.reliability, req.guidance, batched=batched,
                                options=self.guidance_options)

    def generate(self, req: Request, batched: bool = True) -> Iterator[Frame]:
        """Frames of one run: an x0 preview per step, then the final image (batch 1), through the
        world's final-image stage when it has one and the request wants it."""
        return self.generate_strip([req], batched)

    def generate_strip(self, reqs: Sequence[Request], batched: bool = True) -> Iterator[Frame]:
        """Frames of several runs side by side, one batch row per request, every row from the same
        starting noise (the explain view's strips): row b equals the run of reqs[b] alone. The requests
        may differ in conditions, reliabilities and guidance, not in seed, steps, sampler or superres."""
        if not self.experts:
            raise RuntimeError(f"the {self.name} world was unloaded; load it again")
        first = reqs[0]
        shared = ("seed", "steps", "sampler", "superres")
        differ = [k for k in shared if any(getattr(r, k) != getattr(first, k) for r in reqs)]
        if differ:
            raise ValueError(f"the runs of a strip must share {', '.join(shared)}; they differ in {differ}")
        mixtures = [self.mixture(r, batched) for r in reqs]
        denoiser = mixtures[0] if len(reqs) == 1 else ProductStrip(mixtures, [self.conditions(r) for r in reqs])
        cond = self.conditions(first) if len(reqs) == 1 else {}
        gen = torch.Generator().manual_seed(first.seed)
        for frame in sample(denoiser, cond, (1, *self.sample_shape), steps=first.steps, sampler=first.sampler,
                            generator=gen, copies=len(reqs), device=self.device, **self.schedule()):
            if frame.done and first.superres and self.final_stage is not None:
                with torch.inference_mode():  # one image at a time: its uint8 filters would turn the float
                    # differences of another batch size into a level or two at a few pixels
                    frame = replace(frame, image=torch.cat([self.final_stage(x[None]) for x in frame.image]))
            yield frame

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One x_t's shape: (C, H, W)."""
        return 3, self.image_size, self.image_size

    def conditions(self, req: Request) -> dict[str, torch.Tensor]:
        """The request's conditions as the experts read them, batch 1, on the world's device."""
        return {k: v.to(self.device) for k, v in req.tensors().items()}

    def schedule(self) -> dict:
        """sample()'s noise schedule and image-making arguments for this world."""
        return {"num_train_timesteps": self.num_train_timesteps, "beta_schedule": self.beta_schedule}


def faces_device() -> torch.device:
    """Where the built-in world runs: UNITE_DEVICE, else CUDA where there is a GPU, else the CPU (the
    pretrained worlds' rule)."""
    return torch.device(os.environ.get("UNITE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))


def _faces_expert(path: Path, name: str, engine: str | None = None, device: torch.device = torch.device("cpu")
                  ) -> tuple[Expert, dict]:
    net = load_face_unet(path).to(device)
    c = net.config
    sched = make_sampler("ddim", c.num_train_timesteps, c.beta_schedule)
    return Expert(name, FaceDenoiser(net, sched.alphas_cumprod, engine), tuple(c.modalities)), dict(c.extra)


def faces_world_files(folder: Path = FACES_DIR) -> dict[str, Path]:
    return {name: folder / f"{name}.safetensors" for name in (*MODALITIES, "joint")}


def load_faces_world(folder: Path | str = FACES_DIR, engine: str | None = None,
                     superres_file: Path | str | None = SUPERRES_FILE, device: torch.device | str | None = None
                     ) -> World:
    """The built-in cartoon-faces world from self-describing safetensors files in `folder`; its
    networks run under `engine` (engines.ENGINES; default engines.default_engine()) on `device`
    (default faces_device(): a GPU where there is one; there ONNX Runtime's CPU engine gives way to
    the trace). Its final-image stage:
    the super-resolution network in superres_file (32 -> 128 px), where that file is (None: none)."""
    folder, device = Path(folder), torch.device(device or faces_device())
    files = faces_world_files(folder)
    missing = [str(p) for n, p in files.items() if n in MODALITIES and not p.exists()]
    if missing:
        raise FileNotFoundError(f"the {BUILTIN} world is missing its weights: {', '.join(missing)}; "
                                f"train them with `python -m unite_demo.train` (see README)")
    experts, cards = [], {}
    for name in MODALITIES:
        expert, cards[name] = _faces_expert(files[name], name, engine, device)
        experts.append(expert)
    baselines = {}
    if files["joint"].exists():
        baselines["joint"], cards["joint"] = _faces_expert(files["joint"], "joint", engine, device)
    first = json.loads(read_metadata(files[MODALITIES[0]])["config"])
    final_stage = None
    if superres_file is not None and Path(superres_file).exists():
        final_stage = load_superres(superres_file).to(device)
        cards["superres"] = final_stage.config.extra
    return World(BUILTIN, experts, first["image_size"], first["num_train_timesteps"], first["beta_schedule"],
                 baselines, cards, final_stage=final_stage, guidance_options=REMEDIES[DEFAULTS["remedy"]],
                 device=device)
