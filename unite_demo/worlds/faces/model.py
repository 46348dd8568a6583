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

from unite_demo.worlds.faces.data import ATTRIBUTES, NUM_CLASSES

MODALITIES = ("seg", "sketch", "text")
TEXT_DIM = 384  # all-MiniLM-L6-v2, mean-pooled
# What the caption head reads out of a caption: for each attribute, one of its values or None
# ("the caption does not say").
CAPTION_SLOTS: tuple[tuple[str, tuple], ...] = tuple((name, values + (None,)) for name, values in ATTRIBUTES.items())
CAPTION_DIM = sum(len(options) for _, options in CAPTION_SLOTS)


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
    # How the caption reaches the UNet. "attributes": through the caption head (below), its read-out
    # added to the time embedding and given as constant input planes. "embedding": the sentence
    # embedding projected straight into the time embedding (networks trained before the head).
    text_reader: str = "attributes"
    extra: dict = field(default_factory=dict)  # free-form notes (split, steps, ...) kept with the weights

    @classmethod
    def from_dict(cls, d: dict) -> "FaceUNetConfig":
        d = dict(d)
        d.setdefault("text_reader", "embedding")  # files written before the field existed
        for key in ("modalities", "channels"):
            d[key] = tuple(d[key])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def cond_channels() -> int:
    """Input channels for the spatial conditions: seg one-hot (K) + sketch (stroke, present)."""
    return NUM_CLASSES + 2


class CaptionHead(nn.Module):
    """Caption embedding (B, 384) -> what the caption says about each attribute (B, CAPTION_DIM):
    per attribute a probability over its values and "not said", concatenated in CAPTION_SLOTS
    order. A null caption (all-zero embedding) reads as all zeros, so it adds nothing.

    Trained by cross-entropy on the captions of the expert's own split (train.fit_caption_head),
    then frozen: the UNet learns from a clean, fixed read-out instead of discovering in a 384-d
    sentence embedding, one diffusion step at a time, which direction means "red hair"."""

    def __init__(self, hidden: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(TEXT_DIM, hidden), nn.GELU(), nn.Linear(hidden, CAPTION_DIM))

    def logits(self, text: torch.Tensor) -> list[torch.Tensor]:
        """(B, 384) -> one (B, len(options)) logit tensor per attribute."""
        return list(self.mlp(text).split([len(options) for _, options in CAPTION_SLOTS], dim=1))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        probs = torch.cat([g.softmax(dim=1) for g in self.logits(text)], dim=1)  # (B, CAPTION_DIM)
        present = (text.abs().sum(dim=1, keepdim=True) > 0).to(probs.dtype)  # (B, 1)
        return probs * present

    @torch.no_grad()
    def read(self, text: torch.Tensor) -> list[dict[str, tuple[str, float]]]:
        """What each caption says, for people: {attribute: (value, probability)} for the
        attributes the head is sure enough were mentioned (the most likely option is not None)."""
        out = [dict() for _ in range(text.shape[0])]
        for (name, options), logit in zip(CAPTION_SLOTS, self.logits(text)):
            p, k = logit.softmax(dim=1).max(dim=1)
            for row, (pi, ki) in enumerate(zip(p.tolist(), k.tolist())):
                if options[ki] is not None:
                    out[row][name] = (options[ki], pi)
        return out


class FaceUNet(nn.Module):
    """v/eps-prediction network: (x_t, t, seg, sketch, text) -> prediction, all at image size.

    Shapes: x_t (B,3,H,W); t (B,) float timesteps of this network's own schedule;
    seg (B,K,H,W) one-hot or zeros (null); sketch (B,2,H,W) [stroke, present] or zeros (null);
    text (B,384) embedding or zeros (null), read through the caption head into (B,CAPTION_DIM)
    when config.text_reader == "attributes". Every network has every input; a network only ever
    gets non-null values for its own modalities, so one architecture serves every expert.
    """

    def __init__(self, config: FaceUNetConfig):
        super().__init__()
        self.config = config
        p, ch = config.patch, config.channels
        n = len(ch)
        if config.text_reader not in ("attributes", "embedding"):
            raise ValueError(f"unknown text_reader {config.text_reader!r}; accepted: attributes, embedding")
        by_head = config.text_reader == "attributes"
        self.unet = UNet2DModel(
            sample_size=config.image_size // p,
            in_channels=(3 + cond_channels()) * p * p + (CAPTION_DIM if by_head else 0),
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
        # No bias: a null (all-zero) caption adds exactly nothing to the time embedding.
        self.caption_head = CaptionHead() if by_head else None
        self.text_proj = nn.Linear(CAPTION_DIM if by_head else TEXT_DIM, ch[0] * 4, bias=False)
        self.unshuffle = nn.PixelUnshuffle(p)
        self.shuffle = nn.PixelShuffle(p)

    def forward(self, x_t, t, seg, sketch, text):
        caption = text if self.caption_head is None else self.caption_head(text)  # (B, CAPTION_DIM)
        return self.forward_read(x_t, t, seg, sketch, caption)

    def forward_read(self, x_t, t, seg, sketch, caption):
        """forward() with the caption already read: the caption head's output (B, CAPTION_DIM), or the
        embedding itself for text_reader "embedding". Training on carried read-outs uses it."""
        h = torch.cat([x_t, seg, sketch], dim=1)  # (B, 3+K+2, H, W)
        h = self.unshuffle(h)  # (B, (3+K+2)*p*p, H/p, W/p)
        if self.caption_head is not None:
            planes = caption[:, :, None, None].expand(-1, -1, *h.shape[2:])  # (B, CAPTION_DIM, H/p, W/p)
            h = torch.cat([h, planes.to(h.dtype)], dim=1)
        out = self.unet(h, t, class_labels=self.text_proj(caption)).sample  # (B, 3*p*p, H/p, W/p)
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
