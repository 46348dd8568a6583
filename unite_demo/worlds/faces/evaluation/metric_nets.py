"""The evaluation's judges: a segmenter (image -> class map) and an attribute classifier (image ->
every caption attribute, plus a feature vector for Fréchet distance and diversity), trained on the
faces.SPLITS["metrics"] split, which no expert sees.

    python -m unite_demo.worlds.faces.evaluation.metric_nets --net segmenter --minutes 10
    python -m unite_demo.worlds.faces.evaluation.metric_nets --net classifier --minutes 10

Light augmentation (noise, slight blur, small colour jitter) so that they judge generated images,
which are never as clean as the rendered ones, fairly. Weights: fp16 safetensors in assets/metrics/
with the config, the training record and the held-out accuracy in the metadata, plus a card .md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from unite_demo import ROOT
from unite_demo.worlds.conditions import image_tensor
from unite_demo.worlds.faces.data import ATTRIBUTES, CLASS_NAMES, DATA_VERSION, NUM_CLASSES, SPLITS, make_face
from unite_demo.worlds.faces.evaluation.metrics import attribute_accuracy, miou

METRICS_DIR = ROOT / "assets" / "metrics"
NETS = ("segmenter", "classifier")
HELDOUT_FACES = 1000  # first faces of the held-out split, the same ones the evaluation uses


@dataclass
class MetricNetConfig:
    """Architecture of one metric network (rebuilt from the saved dict)."""

    net: str = "segmenter"
    image_size: int = 32
    channels: tuple[int, ...] = (16, 32, 64)
    feature_dim: int = 64  # classifier only: the feature vector for Fréchet distance and diversity
    extra: dict = field(default_factory=dict)  # training record and held-out accuracy

    @classmethod
    def from_dict(cls, d: dict) -> "MetricNetConfig":
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with GroupNorm and SiLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class Segmenter(nn.Module):
    """A small U-Net: image (B,3,H,W) in [-1,1] -> class logits (B,K,H,W)."""

    def __init__(self, config: MetricNetConfig):
        super().__init__()
        self.config = config
        c1, c2, c3 = config.channels
        self.enc1, self.enc2, self.enc3 = conv_block(3, c1), conv_block(c1, c2), conv_block(c2, c3)
        self.dec2, self.dec1 = conv_block(c3 + c2, c2), conv_block(c2 + c1, c1)
        self.head = nn.Conv2d(c1, NUM_CLASSES, 1)

    def forward(self, x):
        h1 = self.enc1(x)  # (B, c1, H, W)
        h2 = self.enc2(F.avg_pool2d(h1, 2))  # (B, c2, H/2, W/2)
        h3 = self.enc3(F.avg_pool2d(h2, 2))  # (B, c3, H/4, W/4)
        u2 = self.dec2(torch.cat([F.interpolate(h3, scale_factor=2.0), h2], 1))  # (B, c2, H/2, W/2)
        u1 = self.dec1(torch.cat([F.interpolate(u2, scale_factor=2.0), h1], 1))  # (B, c1, H, W)
        return self.head(u1)


ATTRIBUTE_NAMES = tuple(ATTRIBUTES)
ATTRIBUTE_SIZES = tuple(len(v) for v in ATTRIBUTES.values())


class AttributeClassifier(nn.Module):
    """A small CNN: image (B,3,H,W) -> (features (B,D), logits of every attribute (B, sum of values))."""

    def __init__(self, config: MetricNetConfig):
        super().__init__()
        self.config = config
        c1, c2, c3 = config.channels
        self.body = nn.Sequential(conv_block(3, c1), nn.AvgPool2d(2), conv_block(c1, c2), nn.AvgPool2d(2),
                                  conv_block(c2, c3), nn.AdaptiveAvgPool2d(4))
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(c3 * 16, config.feature_dim), nn.SiLU())
        self.head = nn.Linear(config.feature_dim, sum(ATTRIBUTE_SIZES))

    def forward(self, x):
        feats = self.features(self.body(x))  # (B, D)
        return feats, self.head(feats)  # (B, D), (B, sum of values)


def split_logits(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, sum of values) -> one (B, values) block per attribute."""
    return dict(zip(ATTRIBUTE_NAMES, logits.split(ATTRIBUTE_SIZES, dim=1)))


def attribute_labels(faces) -> torch.Tensor:
    """(B, attributes) value indices of each face's true attributes."""
    return torch.tensor([[ATTRIBUTES[a].index(f.attributes[a]) for a in ATTRIBUTE_NAMES] for f in faces])


def build(config: MetricNetConfig) -> nn.Module:
    if config.net == "segmenter":
        return Segmenter(config)
    if config.net == "classifier":
        return AttributeClassifier(config)
    raise ValueError(f"unknown metric net {config.net!r}; accepted: {', '.join(NETS)}")


# ---------------------------------------------------------------------------------------------
# Inference helpers used by the evaluation.

def _batched(net: nn.Module, images: np.ndarray, batch: int = 256):
    """Run net on (B,H,W,3) uint8 images in chunks, yielding its outputs."""
    for i in range(0, len(images), batch):
        yield net(image_tensor(list(images[i:i + batch])))


@torch.inference_mode()
def segment(net: Segmenter, images: np.ndarray) -> np.ndarray:
    """(B,H,W,3) uint8 -> (B,H,W) uint8 class ids."""
    return np.concatenate([out.argmax(1).to(torch.uint8).numpy() for out in _batched(net, images)])


@torch.inference_mode()
def classify(net: AttributeClassifier, images: np.ndarray) -> tuple[np.ndarray, list[dict[str, str]]]:
    """(B,H,W,3) uint8 -> features (B,D) float64 and the predicted value of every attribute per image."""
    feats, preds = [], []
    for f, logits in _batched(net, images):
        feats.append(f.double().numpy())
        idx = {a: block.argmax(1).tolist() for a, block in split_logits(logits).items()}
        preds += [{a: ATTRIBUTES[a][idx[a][k]] for a in ATTRIBUTE_NAMES} for k in range(len(f))]
    return np.concatenate(feats), preds


# ---------------------------------------------------------------------------------------------
# Files: fp16 safetensors with the config (and the held-out accuracy) in the metadata.

def save_net(net: nn.Module, path: Path) -> None:
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    meta = {"format": "pt", "kind": "metric_net", "config": json.dumps(asdict(net.config))}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)


def read_config(path: Path) -> MetricNetConfig:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("kind") != "metric_net" or "config" not in meta:
        raise ValueError(f"{path} is not a metric network file (no metric_net config in its metadata)")
    return MetricNetConfig.from_dict(json.loads(meta["config"]))


def load_net(name: str, folder: Path | str = METRICS_DIR) -> nn.Module:
    """The segmenter or classifier from folder/<name>.safetensors (float32, eval mode)."""
    path = Path(folder) / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"metric network {path} is missing; train it with "
                                f"`python -m unite_demo.worlds.faces.evaluation.metric_nets --net {name} --minutes 10`")
    config = read_config(path)
    if config.net != name:
        raise ValueError(f"{path} holds a {config.net}, not a {name}")
    net = build(config)
    net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return net.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# Training.

def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per image: colour jitter (gain and offset per channel), a slight blur, Gaussian noise."""
    b = x.shape[0]
    gain = 1 + 0.06 * (torch.rand(b, 3, 1, 1, generator=gen) * 2 - 1)
    offset = 0.06 * (torch.rand(b, 3, 1, 1, generator=gen) * 2 - 1)
    x = x * gain + offset
    k = torch.tensor([1.0, 2.0, 1.0]) / 4
    kernel = (k[:, None] * k[None, :]).expand(3, 1, 3, 3)  # (3, 1, 3, 3) depthwise
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    amount = torch.rand(b, 1, 1, 1, generator=gen) * 0.7 * (torch.rand(b, 1, 1, 1, generator=gen) < 0.6)
    x = torch.lerp(x, blurred, amount)
    sigma = torch.rand(b, 1, 1, 1, generator=gen) * 0.08
    return x + sigma * torch.randn(x.shape, generator=gen)


def face_pool(count: int, size: int, start: int) -> list:
    """`count` faces from seed `start` on."""
    return [make_face(start + k, size) for k in range(count)]


def net_loss(net: nn.Module, x: torch.Tensor, faces) -> torch.Tensor:
    """Cross-entropy: per pixel for the segmenter, summed over attributes for the classifier."""
    if net.config.net == "segmenter":
        seg = torch.from_numpy(np.stack([f.seg for f in faces])).long()  # (B, H, W)
        return F.cross_entropy(net(x), seg)
    labels = attribute_labels(faces)  # (B, attributes)
    blocks = split_logits(net(x)[1])
    return sum(F.cross_entropy(blocks[a], labels[:, i]) for i, a in enumerate(ATTRIBUTE_NAMES))


@torch.inference_mode()
def heldout_accuracy(net: nn.Module, faces) -> dict:
    """Accuracy on clean held-out faces: pixel accuracy and mIoU (segmenter), or attribute
    accuracy over all attributes, over the attributes each caption mentions, and per attribute."""
    images = np.stack([f.image for f in faces])
    if net.config.net == "segmenter":
        pred = segment(net, images)
        target = np.stack([f.seg for f in faces])
        per_class = {name: round(float((pred[target == k] == k).mean()), 4) for k, name in enumerate(CLASS_NAMES)
                     if (target == k).any()}
        return {"pixel_accuracy": round(float((pred == target).mean()), 4),
                "miou": round(float(np.mean([miou(p, t) for p, t in zip(pred, target)])), 4),
                "class_recall": per_class}
    _, preds = classify(net, images)
    per_attr = {a: round(float(np.mean([p[a] == f.attributes[a] for p, f in zip(preds, faces)])), 4)
                for a in ATTRIBUTE_NAMES}
    return {"attribute_accuracy": round(float(np.mean(list(per_attr.values()))), 4),
            "mentioned_accuracy": round(attribute_accuracy(preds, faces), 4),
            "per_attribute": per_attr}


def train(args) -> Path:
    config = MetricNetConfig(net=args.net, image_size=args.size, channels=tuple(args.channels))
    with torch.random.fork_rng(devices=[]):  # reproducible initial weights, global RNG untouched
        torch.manual_seed(args.seed)
        net = build(config)
    t0 = time.time()
    pool = face_pool(args.faces, args.size, SPLITS["metrics"].start)
    pool_images = image_tensor([f.image for f in pool])  # (P, 3, H, W)
    print(f"{args.net}: {len(pool)} training faces in {time.time() - t0:.0f} s", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.time()
    budget = args.minutes * 60 if args.minutes else math.inf
    step, running = 0, []
    net.train()
    while (time.time() - start) < budget and (not args.steps or step < args.steps):
        progress = min(1.0, (time.time() - start) / budget) if args.minutes else step / args.steps
        lr = args.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, len(pool), (args.batch,), generator=gen)
        x = augment(pool_images[idx], gen)
        loss = net_loss(net, x, [pool[int(i)] for i in idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(loss.item())
        step += 1
        if step % args.log_every == 0:
            print(f"{args.net} step {step} loss {np.mean(running):.4f} {(time.time() - start) / step:.3f}s/step",
                  flush=True)
            running = []
    seconds = time.time() - t0
    net.eval()
    heldout = face_pool(args.heldout, args.size, SPLITS["heldout"].start)
    accuracy = heldout_accuracy(net, heldout)
    config.extra = {
        "command": args.command,
        "split": f"faces.SPLITS['metrics']: seeds {pool[0].seed}..{pool[-1].seed}",
        "data_version": DATA_VERSION,
        "steps": step, "batch": args.batch, "lr": args.lr, "seed": args.seed,
        "wall_minutes": round(seconds / 60, 1),
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "augmentation": "colour gain/offset +-0.06, 3x3 blur blend 0..0.7 (p=0.6), Gaussian noise sigma 0..0.08",
        "heldout": f"first {args.heldout} faces of faces.SPLITS['heldout'], clean",
        "heldout_accuracy": accuracy,
    }
    net.config = config
    dest = Path(args.out) / f"{args.net}.safetensors"
    save_net(net, dest)
    write_card(dest, config)
    print(f"saved {dest}: {json.dumps(accuracy)}")
    return dest


def card_rows(fields: dict) -> list[str]:
    """A model card's table of its training record: one row per field (dicts as JSON)."""
    return ["| field | value |", "| --- | --- |",
            *(f"| {key} | {json.dumps(value) if isinstance(value, dict) else value} |" for key, value in fields.items())]


def write_card(path: Path, config: MetricNetConfig) -> None:
    """A short card beside the weights."""
    what = {"segmenter": "image (3x32x32, [-1, 1]) -> class map over the palette's classes (small U-Net)",
            "classifier": f"image -> every attribute in faces.ATTRIBUTES, via a {config.feature_dim}-d feature "
                          "vector (used for Fréchet distance and diversity)"}[config.net]
    lines = [f"# {config.net} (metric network, cartoon-faces)", "", what + ".", "",
             f"Trained by `python -m unite_demo.worlds.faces.evaluation.metric_nets --net {config.net}` on the metrics split, which no "
             "expert sees. Judges the evaluation (`python -m unite_demo.evaluate`).", "",
             *card_rows(config.extra)]
    lines.append(f"| channels | {list(config.channels)} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", required=True, choices=NETS)
    ap.add_argument("--minutes", type=float, default=0, help="training wall time (0: use --steps)")
    ap.add_argument("--steps", type=int, default=0, help="training steps when --minutes is 0")
    ap.add_argument("--faces", type=int, default=10000, help="training faces drawn from the metrics split")
    ap.add_argument("--heldout", type=int, default=HELDOUT_FACES, help="held-out faces for the accuracy")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, nargs=3, default=[16, 32, 64])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--out", default=str(METRICS_DIR))
    args = ap.parse_args(argv)
    if not args.minutes and not args.steps:
        ap.error("give --minutes or --steps")
    args.command = "python -m unite_demo.worlds.faces.evaluation.metric_nets " + " ".join(argv if argv is not None else sys.argv[1:])
    train(args)


if __name__ == "__main__":
    main()
