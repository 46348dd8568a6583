"""Train a cartoon-faces network from scratch or from the shared base, on its own split.

    python -m unite_demo.train --expert base --minutes 40
    python -m unite_demo.train --expert seg --init checkpoints/base/last.safetensors --minutes 12
    python -m unite_demo.train --expert seg --export      # EMA weights -> assets/experts/seg.safetensors

Data is generated on the fly from the expert's own seed split (faces.SPLITS); nothing is
downloaded. v-prediction with min-SNR weighting, condition dropout, EMA, a loss log, and
resumable checkpoints (safetensors, no pickles) so training can go on across sittings. A network
that reads captions first fits its caption head (model.CaptionHead) on its split's captions,
then trains the UNet with the head frozen.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler
from safetensors.torch import load_file, save_file
from torch import nn

from unite_demo.worlds.conditions import image_tensor
from unite_demo.worlds.faces.conditions import face_conditions
from unite_demo.worlds.faces.data import DATA_VERSION, SPLITS, make_face
from unite_demo.worlds.faces.model import (CAPTION_SLOTS, CaptionHead, FaceUNet, FaceUNetConfig, read_metadata,
                                           save_face_unet)
from unite_demo.worlds.faces.text import encode_captions
from unite_demo.worlds.faces.training.augment import render_faces

EXPERT_MODALITIES = {"base": (), "seg": ("seg",), "sketch": ("sketch",), "text": ("text",),
                     "joint": ("seg", "sketch", "text")}
from unite_demo import ROOT

DEFAULT_ASSETS = ROOT / "assets" / "experts"


def make_scheduler(config: FaceUNetConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule,
                         prediction_type=config.prediction_type)


def batch_for_step(expert: str, seed: int, step: int, batch: int, size: int, p_drop: float, augment: bool = True):
    """The batch of step `step`: faces from the expert's split, each expert's own conditions as
    people make them (augment.rough_seg / drawn_sketch; captions vary in faces.caption_for), then
    condition dropout per row."""
    split = SPLITS["base" if expert == "base" else expert]
    rng = np.random.default_rng([seed, step])
    faces = render_faces(EXPERT_MODALITIES[expert], rng.integers(split.start, split.stop, batch), size, rng, augment)
    x0 = image_tensor([f.image for f in faces])
    cond = face_conditions(faces, EXPERT_MODALITIES[expert])
    for name in EXPERT_MODALITIES[expert]:
        keep = torch.from_numpy(rng.random(batch) >= p_drop).float()  # (B,)
        cond[name] = cond[name] * keep.view(-1, *([1] * (cond[name].dim() - 1)))
    return x0, cond


def training_loss(model: FaceUNet, sched: DDPMScheduler, x0, cond, gen: torch.Generator, snr_gamma=5.0,
                  caption_read: bool = False):
    """min-SNR-weighted v-prediction (or eps) loss at uniformly drawn timesteps. caption_read: cond["text"]
    holds the caption head's read-outs (model.forward_read), not embeddings."""
    b = x0.shape[0]
    t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=gen, device=x0.device)
    noise = torch.randn(x0.shape, generator=gen, device=x0.device)
    x_t = sched.add_noise(x0, noise, t)
    alpha_bar = sched.alphas_cumprod[t]
    snr = alpha_bar / (1 - alpha_bar)
    if model.config.prediction_type == "v_prediction":
        target = sched.get_velocity(x0, noise, t)
        weight = snr.clamp(max=snr_gamma) / (snr + 1)
    else:
        target = noise
        weight = snr.clamp(max=snr_gamma) / snr
    pred = (model.forward_read if caption_read else model)(x_t, t.float(), cond["seg"], cond["sketch"], cond["text"])
    per_row = (pred - target).pow(2).mean(dim=(1, 2, 3))  # (B,)
    return (weight * per_row).mean()


def _ckpt_path(out: Path) -> Path:
    return out / "last.safetensors"


def save_checkpoint(out: Path, model, ema, opt, state: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    for i, p in enumerate(model.parameters()):
        st = opt.state.get(p)
        if st:
            tensors[f"opt.{i}.exp_avg"] = st["exp_avg"]
            tensors[f"opt.{i}.exp_avg_sq"] = st["exp_avg_sq"]
            tensors[f"opt.{i}.step"] = torch.as_tensor(st["step"]).reshape(1).float()
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {"config": json.dumps(asdict(model.config)), "state": json.dumps(state)}
    tmp = out / "last.tmp"
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(_ckpt_path(out))


def load_checkpoint(path: Path, model, ema, opt) -> dict:
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    for i, p in enumerate(model.parameters()):
        if f"opt.{i}.exp_avg" in tensors:
            opt.state[p] = {"exp_avg": tensors[f"opt.{i}.exp_avg"].to(p.device),
                            "exp_avg_sq": tensors[f"opt.{i}.exp_avg_sq"].to(p.device),
                            "step": tensors[f"opt.{i}.step"].reshape(()).cpu()}
    return json.loads(read_metadata(path)["state"])


def load_ema(path: Path) -> tuple[FaceUNet, dict]:
    """A training checkpoint's EMA network (float32, its own config) and its run state."""
    meta = read_metadata(path)
    ema = FaceUNet(FaceUNetConfig.from_dict(json.loads(meta["config"])))
    ema.load_state_dict({k[4:]: v for k, v in load_file(str(path)).items() if k.startswith("ema.")})
    return ema, json.loads(meta["state"])


def hardware(device: torch.device) -> str:
    """The device a run trains on, for its record."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} {torch.get_num_threads()} threads"


def init_from(path: Path, model: FaceUNet) -> None:
    """Start from another network's weights (the shared base, or an earlier version of this
    expert), its EMA weights if present. Where this network is wider - input planes the source
    lacks, a text projection of another width - the new weights start at zero, so training
    begins exactly where the source network was; the caption head keeps its own weights."""
    tensors = load_file(str(path))
    key = "ema." if any(k.startswith("ema.") for k in tensors) else ""
    source = {k[len(key):]: v.float() for k, v in tensors.items() if k.startswith(key)}
    state = model.state_dict()
    for name, v in source.items():
        if name not in state:
            continue
        if v.shape == state[name].shape:
            state[name] = v
        elif name == "unet.conv_in.weight" and v.shape[1] < state[name].shape[1] and v.shape[2:] == state[name].shape[2:]:
            state[name] = torch.zeros_like(state[name])
            state[name][:, :v.shape[1]] = v  # the caption planes come after the source's inputs
        elif name == "text_proj.weight":
            state[name] = torch.zeros_like(state[name])
        else:
            raise ValueError(f"cannot start from {path}: {name} has shape {tuple(v.shape)}, "
                             f"this network needs {tuple(state[name].shape)}")
    model.load_state_dict(state)


def caption_targets(faces) -> torch.Tensor:
    """(B, attributes) class index per attribute: the face's value if its caption names it, else
    the last option ("not said")."""
    return torch.tensor([[options.index(f.attributes[name]) if name in f.mentioned else len(options) - 1
                          for name, options in CAPTION_SLOTS] for f in faces])


def caption_set(seeds) -> tuple[torch.Tensor, torch.Tensor]:
    """MiniLM embeddings (N, 384) and attribute targets of these faces' captions (size 8 renders
    fast; a face's caption does not depend on its size)."""
    faces = [make_face(int(s), 8) for s in seeds]
    emb = torch.cat([encode_captions([f.caption for f in faces[i:i + 512]]) for i in range(0, len(faces), 512)])
    return emb, caption_targets(faces)


def caption_accuracy(head: CaptionHead, emb: torch.Tensor, targets: torch.Tensor) -> dict:
    with torch.no_grad():
        hits = torch.stack([g.argmax(1) for g in head.logits(emb)], dim=1) == targets  # (N, attributes)
    return {"per_attribute": round(hits.float().mean().item(), 4), "whole_caption": round(hits.all(1).float().mean().item(), 4)}


def fit_caption_head(head: CaptionHead, split: range, seed: int, n_train: int = 6144, steps: int = 1500) -> dict:
    """Train the caption head on captions of the expert's own split (cross-entropy per attribute);
    returns its record, with accuracy on captions it did not see."""
    start = time.time()
    n_val = max(n_train // 6, 16)
    rng = np.random.default_rng([seed, 7])
    seeds = rng.choice(np.arange(split.start, split.stop), n_train + n_val, replace=False)
    emb, targets = caption_set(seeds)
    (tr_x, va_x), (tr_y, va_y) = emb.split([n_train, n_val]), targets.split([n_train, n_val])
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(steps):
        idx = torch.randint(0, n_train, (512,), generator=gen)
        loss = sum(nn.functional.cross_entropy(g, tr_y[idx, k]) for k, g in enumerate(head.logits(tr_x[idx])))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    head.eval()
    record = {"captions": n_train, "steps": steps, "seconds": round(time.time() - start, 1),
              "train_accuracy": caption_accuracy(head, tr_x, tr_y), "val_accuracy": caption_accuracy(head, va_x, va_y)}
    print(f"caption head: {json.dumps(record)}", flush=True)
    return record


def train(args) -> Path:
    out = Path(args.out or ROOT / "checkpoints" / args.expert)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = FaceUNetConfig(modalities=EXPERT_MODALITIES[args.expert], image_size=args.size,
                            channels=tuple(args.channels))
    with torch.random.fork_rng(devices=[]):  # reproducible initial weights, global RNG untouched
        torch.manual_seed(args.seed)
        model = FaceUNet(config).to(device)
    ema = FaceUNet(config).to(device)
    state = {"step": 0, "seconds": 0.0, "init": None, "expert": args.expert, "batch": args.batch,
             "lr": args.lr, "seed": args.seed, "device_history": [], "data_version": DATA_VERSION,
             "augment": not args.no_augment}
    resume = _ckpt_path(out).exists()
    if not resume:
        if args.init:
            init_from(Path(args.init), model)
            state["init"] = str(args.init)
        if model.caption_head is not None and "text" in config.modalities:
            state["caption_head"] = fit_caption_head(model.caption_head.cpu(), SPLITS[args.expert], args.seed,
                                                     args.caption_set, args.caption_steps)
            model.to(device)
    if model.caption_head is not None:
        model.caption_head.requires_grad_(False)  # fitted once, then frozen (see CaptionHead)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    if resume:
        state = load_checkpoint(_ckpt_path(out), model, ema, opt)
        for flag in ("batch", "lr"):  # a run goes on as it started, whatever the flags say
            if getattr(args, flag) != state[flag]:
                print(f"warning: --{flag} {getattr(args, flag):g} ignored: this run resumes with {state[flag]:g}, "
                      f"as it started (delete {out} to start afresh)", file=sys.stderr)
            setattr(args, flag, state[flag])
        print(f"resumed {args.expert} at step {state['step']} ({state['seconds'] / 60:.1f} min so far; "
              f"batch {args.batch}, lr {args.lr:g})")
    else:
        ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    sched = make_scheduler(config)
    sched.alphas_cumprod = sched.alphas_cumprod.to(device)
    p_drop = 0.0 if args.expert == "base" else args.p_drop
    log_path = out / "loss.csv"
    new_log = not log_path.exists()
    log = open(log_path, "a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "loss", "lr", "seconds"])
    start, start_step, running = time.time(), state["step"], []
    hw = hardware(device)
    if hw not in state["device_history"]:
        state["device_history"].append(hw)
    deadline = start + args.minutes * 60 if args.minutes else math.inf
    target = start_step + args.steps if args.steps else math.inf
    model.train()
    while time.time() < deadline and state["step"] < target:
        step = state["step"]
        x0, cond = batch_for_step(args.expert, args.seed, step, args.batch, args.size, p_drop,
                                  state.get("augment", False))
        x0, cond = x0.to(device), {k: v.to(device) for k, v in cond.items()}
        gen = torch.Generator(device=device).manual_seed(args.seed * 1_000_003 + step)
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = training_loss(model, sched, x0, cond, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        running.append(loss.item())
        state["step"] = step + 1
        if state["step"] % args.log_every == 0:
            elapsed = state["seconds"] + time.time() - start
            writer.writerow([state["step"], f"{np.mean(running):.5f}", f"{lr:.2e}", f"{elapsed:.1f}"])
            log.flush()
            print(f"{args.expert} step {state['step']} loss {np.mean(running):.4f} "
                  f"{(time.time() - start) / (state['step'] - start_step):.3f}s/step", flush=True)
            running = []
        if state["step"] % args.save_every == 0:
            save_checkpoint(out, model, ema, opt, {**state, "seconds": state["seconds"] + time.time() - start})
    state["seconds"] += time.time() - start
    save_checkpoint(out, model, ema, opt, state)
    log.close()
    print(f"saved {_ckpt_path(out)} at step {state['step']} ({state['seconds'] / 60:.1f} min in all)")
    return _ckpt_path(out)


def export(args) -> Path:
    """EMA weights of the checkpoint -> assets/experts/<expert>.safetensors (fp16) + model card."""
    ckpt = _ckpt_path(Path(args.out or ROOT / "checkpoints" / args.expert))
    if not ckpt.is_file():
        raise SystemExit(f"error: no checkpoint to export at {ckpt}; train first (python -m unite_demo.train "
                         f"--expert {args.expert} ...) or name the run's folder with --out")
    ema, state = load_ema(ckpt)
    config = ema.config
    log = list(csv.DictReader(open(ckpt.parent / "loss.csv")))
    final_loss = float(np.mean([float(r["loss"]) for r in log[-5:]])) if log else None
    split = SPLITS["base" if args.expert == "base" else args.expert]
    config.extra = {
        "expert": args.expert,
        "split": f"faces.SPLITS[{args.expert!r}] = seeds {split.start}..{split.stop - 1}",
        "steps": state["step"], "batch": state["batch"], "lr": state["lr"],
        "wall_minutes": round(state["seconds"] / 60, 1), "hardware": state["device_history"],
        "init": state.get("init"), "final_loss": None if final_loss is None else round(final_loss, 5),
        "data_version": state.get("data_version", 1), "augment": state.get("augment", False),
    }
    init = Path(state["init"]) if state.get("init") else None
    if init is not None and init.exists():
        config.extra["init_record"] = init_record(init)
    if "caption_head" in state:
        config.extra["caption_head"] = state["caption_head"]
    ema.config = config
    dest = Path(args.assets) / f"{args.expert}.safetensors"
    save_face_unet(ema, dest)
    print(f"exported {dest} ({dest.stat().st_size / 1e6:.1f} MB): {json.dumps(config.extra)}")
    if args.expert != "base":
        write_card(dest, first_loss=log[0]["loss"] if log else "n/a")
    return dest


def init_record(path: Path) -> dict:
    """What the network a training run started from had been through (checkpoint or exported file)."""
    meta = read_metadata(path)
    if "state" in meta:  # a training checkpoint
        base = json.loads(meta["state"])
        return {"expert": base["expert"], "steps": base["step"], "batch": base["batch"],
                "wall_minutes": round(base["seconds"] / 60, 1), "hardware": base["device_history"]}
    extra = json.loads(meta["config"]).get("extra", {})  # an exported file: its own record
    return {k: extra.get(k) for k in ("expert", "steps", "batch", "wall_minutes", "hardware", "init_record")}


CARD_FACES = 8


def write_card(weights: Path, first_loss="n/a", command: str | None = None, guidance: float = 2.0,
               steps: int = 20) -> None:
    """Model card next to the weights: training record and a sample grid on held-out faces
    (top row: the condition the expert reads; bottom row: its sample, guidance s, DPM-Solver++)."""
    from PIL import Image

    from unite_demo.method.combine import ProductOfExperts
    from unite_demo.method.sampler import sample
    from unite_demo.worlds.faces.data import seg_to_rgb
    from unite_demo.worlds.faces.world import _faces_expert

    expert, extra = _faces_expert(weights, weights.stem)
    size = expert.denoiser.net.config.image_size
    faces = [make_face(SPLITS["heldout"].start + k, size) for k in range(CARD_FACES)]
    poe = ProductOfExperts([expert], {expert.name: 1.0}, guidance=guidance)
    tops, samples, captions = [], [], []
    for k, face in enumerate(faces):
        cond = {key: v[:1] for key, v in face_conditions([face], expert.reads).items() if key in expert.reads}
        frames = list(sample(poe, cond, (1, 3, size, size), steps=steps, generator=torch.Generator().manual_seed(k)))
        samples.append(to_uint8_image(frames[-1].image))
        if "seg" in expert.reads:
            tops.append(seg_to_rgb(face.seg))
        elif "sketch" in expert.reads:
            tops.append(np.repeat(face.sketch[:, :, None], 3, axis=2))
        else:
            tops.append(face.image)
        captions.append(face.caption)
    grid = np.concatenate([np.concatenate(tops, 1), np.concatenate(samples, 1)], 0)
    grid_path = weights.with_name(f"{weights.stem}_samples.png")
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.Resampling.NEAREST).save(grid_path)
    top_row = {"seg": "the segmentation map it was given", "sketch": "the sketch it was given"}
    what = top_row.get(expert.reads[0], "the held-out face whose caption it was given") if expert.reads else ""
    lines = [f"# {weights.stem} expert (cartoon-faces)", "",
             f"Reads: {', '.join(expert.reads)}. Written by "
             f"`{command or f'python -m unite_demo.train --expert {weights.stem} --export'}` from the EMA weights.", "",
             "| field | value |", "| --- | --- |"]
    for key in ("split", "data_version", "augment", "init", "init_record", "caption_head", "recipe", "steps",
                "samples", "batch", "lr", "wall_minutes", "hardware", "final_loss"):
        if key in extra or key not in ("recipe", "samples"):
            lines.append(f"| {key} | {extra.get(key)} |")
    lines += [f"| first logged loss | {first_loss} |", f"| architecture | {json.dumps(asdict(expert.denoiser.net.config) | {'extra': '...'})} |",
              "", f"![samples]({grid_path.name})", "",
              f"Top row: {what}; bottom row: this expert alone on held-out faces "
              f"(seeds {SPLITS['heldout'].start}..{SPLITS['heldout'].start + CARD_FACES - 1}), "
              f"guidance {guidance}, {steps} DPM-Solver++ steps, generator seed = column."]
    if expert.reads == ("text",) or "text" in expert.reads:
        lines += ["", "Captions, left to right:", ""] + [f"{k}. {c}" for k, c in enumerate(captions)]
    weights.with_name(f"{weights.stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {grid_path} and {weights.with_name(weights.stem + '.md')}")


def to_uint8_image(x: torch.Tensor) -> np.ndarray:
    from unite_demo.worlds.conditions import to_uint8

    return to_uint8(x)[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--expert", required=True, choices=sorted(EXPERT_MODALITIES))
    ap.add_argument("--minutes", type=float, default=0, help="stop after this wall time (0: no limit)")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many more steps (0: no limit)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--p-drop", type=float, default=0.15, help="condition dropout probability")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, nargs="+", default=[64, 128, 128])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--caption-set", type=int, default=6144, help="captions the caption head is fitted on")
    ap.add_argument("--caption-steps", type=int, default=1500, help="optimiser steps of the caption head")
    ap.add_argument("--no-augment", action="store_true", help="train on the generator's exact conditions")
    ap.add_argument("--init", help="start from this checkpoint's (EMA) weights, e.g. the base")
    ap.add_argument("--out", help="checkpoint folder (default checkpoints/<expert>)")
    ap.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--export", action="store_true", help="write the EMA weights to --assets and stop")
    ap.add_argument("--assets", default=str(DEFAULT_ASSETS))
    args = ap.parse_args(argv)
    if args.export:
        export(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
