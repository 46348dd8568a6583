"""The built-in cartoon-faces world, loaded from its self-describing safetensors files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from unite_demo import ROOT
from unite_demo.limits import DEFAULTS
from unite_demo.method.combine import REMEDIES
from unite_demo.method.experts import Expert
from unite_demo.method.sampler import make_sampler
from unite_demo.worlds.faces.data import FACES_PALETTE
from unite_demo.worlds.faces.denoiser import FaceDenoiser
from unite_demo.worlds.faces.final_stage import SUPERRES_FILE
from unite_demo.worlds.faces.final_stage import load_stage as load_superres
from unite_demo.worlds.faces.model import MODALITIES, load_face_unet, read_metadata
from unite_demo.worlds.faces.text import caption_doubt, encode_captions
from unite_demo.worlds.world import World

BUILTIN = "cartoon-faces"
FACES_DIR = Path(os.environ.get("UNITE_FACES_DIR", ROOT / "assets" / "experts"))


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
                                f"train them with `python -m unite_demo.train` (see docs/training.md)")
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
                 device=device, encode_text=encode_captions, caption_doubt=caption_doubt,
                 palette=FACES_PALETTE)
