"""The built-in world's network: a diffusers UNet2DModel on 2x2 pixel patches, with its
condition inputs, and self-describing safetensors files (config in the metadata)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file, save_file
from torch import nn

from .faces import NUM_CLASSES

MODALITIES = ("seg", "sketch", "text")
TEXT_DIM = 384  # all-MiniLM-L6-v2, mean-pooled


@dataclass
class FaceUNetConfig:
    """Architecture and schedule of one cartoon-faces network (rebuilt from the saved dict)."""

    modalities: tuple[str, ...] = ()  # which conditions this network reads; () = unconditional
    image_size: int = 32
    patch: int = 2
    channels: tuple[int, ...] = (64, 128, 128)
    layers_per_block: int = 1
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    extra: dict = field(default_factory=dict)  # free-form notes (split, steps, ...) kept with the weights

    @classmethod
    def from_dict(cls, d: dict) -> "FaceUNetConfig":
        d = dict(d)
        for key in ("modalities", "channels"):
            d[key] = tuple(d[key])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def cond_channels() -> int:
    """Input channels for the spatial conditions: seg one-hot (K) + sketch (stroke, present)."""
    return NUM_CLASSES + 2


class FaceUNet(nn.Module):
    """v/eps-prediction network: (x_t, t, seg, sketch, text) -> prediction, all at image size.

    Shapes: x_t (B,3,H,W); t (B,) float timesteps of this network's own schedule;
    seg (B,K,H,W) one-hot or zeros (null); sketch (B,2,H,W) [stroke, present] or zeros (null);
    text (B,384) embedding or zeros (null). Every network has every input; a network only ever
    gets non-null values for its own modalities, so one architecture serves every expert.
    """

    def __init__(self, config: FaceUNetConfig):
        super().__init__()
        self.config = config
        p, ch = config.patch, config.channels
        n = len(ch)
        self.unet = UNet2DModel(
            sample_size=config.image_size // p,
            in_channels=(3 + cond_channels()) * p * p,
            out_channels=3 * p * p,
            block_out_channels=ch,
            layers_per_block=config.layers_per_block,
            down_block_types=("DownBlock2D",) * (n - 1) + ("AttnDownBlock2D",),
            up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
            norm_num_groups=16,
            attention_head_dim=32,
            resnet_time_scale_shift="scale_shift",
            class_embed_type="identity",
        )
        # No bias: a null (all-zero) text embedding adds exactly nothing to the time embedding.
        self.text_proj = nn.Linear(TEXT_DIM, ch[0] * 4, bias=False)
        self.unshuffle = nn.PixelUnshuffle(p)
        self.shuffle = nn.PixelShuffle(p)

    def forward(self, x_t, t, seg, sketch, text):
        h = torch.cat([x_t, seg, sketch], dim=1)  # (B, 3+K+2, H, W)
        h = self.unshuffle(h)  # (B, (3+K+2)*p*p, H/p, W/p)
        out = self.unet(h, t, class_labels=self.text_proj(text)).sample  # (B, 3*p*p, H/p, W/p)
        return self.shuffle(out)  # (B, 3, H, W)


def save_face_unet(model: FaceUNet, path: str | Path, dtype: torch.dtype = torch.float16) -> None:
    """Write weights (fp16 by default) with the config as JSON in the safetensors metadata."""
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "pt", "kind": "face_unet", "config": json.dumps(asdict(model.config))}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)


def read_metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def load_face_unet(path: str | Path) -> FaceUNet:
    """Rebuild a FaceUNet from a self-describing safetensors file (float32, eval mode)."""
    meta = read_metadata(path)
    if meta.get("kind") != "face_unet" or "config" not in meta:
        raise ValueError(f"{path} is not a cartoon-faces network file (no face_unet config in its metadata)")
    model = FaceUNet(FaceUNetConfig.from_dict(json.loads(meta["config"])))
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.eval()
