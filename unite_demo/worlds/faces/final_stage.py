"""The final-image stage: a small network of ours that maps a 32 px face to 128 px, sharpening and
cleaning at once, run inside FinalStage: its output is back-projected onto the sample and flattened by
mean shift (FINISH). Trained by unite_demo.worlds.faces.training.superres."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from unite_demo import ROOT
from unite_demo.worlds.conditions import image_tensor, to_uint8

SUPERRES_DIR = ROOT / "assets" / "superres"
SUPERRES_FILE = SUPERRES_DIR / "superres.safetensors"


@dataclass
class SRConfig:
    scale: int = 4
    channels: int = 48
    blocks: int = 6
    extra: dict = field(default_factory=dict)  # training record


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class SuperRes(nn.Module):
    """(B,3,h,w) in [-1,1] -> (B,3,4h,4w) in [-1,1]: bicubic upscaling plus a learned correction
    (residual blocks at the input size, then two x2 pixel-shuffle stages)."""

    def __init__(self, config: SRConfig):
        super().__init__()
        if config.scale != 4:
            raise ValueError(f"superres: scale 4 only, got {config.scale}")
        self.config = config
        c = config.channels
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(c) for _ in range(config.blocks)], nn.Conv2d(c, c, 3, padding=1))
        self.up = nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(),
                                nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.ReLU())
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        h = self.up(h + self.body(h))
        base = F.interpolate(x, scale_factor=self.config.scale, mode="bicubic", align_corners=False)
        return (base + self.tail(h)).clamp(-1, 1)


# The finish around the network (chosen by scripts/choose_final_stage.py on validation slices the
# evaluation never uses; docs/final-stage.md): the 32 px target is the sample denoised by
# an edge-preserving bilateral filter (diameter, colour sigma, space sigma, in 32 px pixels); one
# back-projection step moves the network's output so that its 4x4 block means are that target
# (Irani & Peleg 1991: the large image must come back to the small one); mean-shift filtering
# (OpenCV's pyrMeanShiftFiltering: spatial radius, colour radius, in 128 px pixels) then flattens
# the colours inside regions and keeps their edges. None switches a part off.
FINISH = {"bilateral": (5, 30, 3), "backproject": True, "meanshift": (12, 25)}


class FinalStage(nn.Module):
    """The final-image stage: (B,3,h,w) in [-1,1] -> (B,3,4h,4w) in [-1,1], the network's output
    finished as FINISH says (its filters run on the CPU, in uint8)."""

    def __init__(self, net: SuperRes, finish: dict | None = None):
        super().__init__()
        self.net, self.finish = net, dict(FINISH if finish is None else finish)

    @property
    def config(self) -> SRConfig:
        return self.net.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, f = self.config.scale, self.finish
        y = self.net(x)
        if f.get("backproject"):
            target = x
            if f.get("bilateral"):
                d, sc, ss = f["bilateral"]
                target = image_tensor(np.stack([cv2.bilateralFilter(i, d, sc, ss) for i in to_uint8(x)])).to(x)
            residual = target - F.avg_pool2d(y, s)
            y = (y + F.interpolate(residual, scale_factor=s, mode="nearest")).clamp(-1, 1)
        if f.get("meanshift"):
            sp, sr = f["meanshift"]
            y = image_tensor(np.stack([cv2.pyrMeanShiftFiltering(i, sp, sr) for i in to_uint8(y)])).to(x)
        return y


def save_net(net: SuperRes, path: Path) -> None:
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt", "kind": "superres", "config": json.dumps(asdict(net.config))})


def load_stage(path: Path | str = SUPERRES_FILE, finish: dict | None = None) -> FinalStage:
    """The final-image stage: the network in `path` with its finish (default FINISH)."""
    return FinalStage(load_net(path), finish).eval()


def load_net(path: Path | str = SUPERRES_FILE) -> SuperRes:
    """The super-resolution network (float32, eval mode)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"super-resolution weights {path} are missing; train them with "
                                "`python -m unite_demo.worlds.faces.training.superres --minutes 60`")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("kind") != "superres":
        raise ValueError(f"{path} is not a super-resolution file (no superres config in its metadata)")
    net = SuperRes(SRConfig(**json.loads(meta["config"])))
    net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return net.eval().requires_grad_(False)
