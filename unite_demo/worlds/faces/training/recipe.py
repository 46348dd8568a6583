"""Continue the built-in world's networks (seg, sketch, text, joint) from the weights in assets/experts:
worker processes render faces from each network's own split into a pool on the training device while
the networks train side by side (one step each in turn), then fp16 files with their training record.

    python -m unite_demo.recipe prepare .recipe          # caption read-outs (+ the diffusers wheel) to carry
    python -m unite_demo.recipe train --captions .recipe/captions.safetensors --out OUT --minutes 8
    python -m unite_demo.recipe export --out OUT         # the checkpoints' EMA weights -> OUT (train does it too)
    python -m unite_demo.recipe adopt OUT                # OUT/<net>.safetensors -> assets/experts, with cards

`bash scripts/gpu_train.sh OUT` runs prepare's output through train on a CUDA machine in one call.

The text and joint networks read captions through a frozen caption head (model.CaptionHead). A machine
without the MiniLM weights cannot embed captions, so `prepare` embeds the captions of a table of seeds
from each network's split here and stores the head's read-outs; training renders those seeds' faces
and feeds the read-outs (FaceUNet.forward_read). The table records a digest of the head it was read
with, and training refuses a network whose head differs.

Every run continues from what assets/ holds, on faces drawn with a seed derived from those weights, so
each run sees other faces than the last. Checkpoints (--work) make a run resumable.
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from unite_demo.worlds.faces.data import DATA_VERSION, NUM_CLASSES, SPLITS, make_face
from unite_demo.worlds.faces.model import CAPTION_DIM, FaceUNet, load_face_unet, read_metadata, save_face_unet
from unite_demo.worlds.faces.training.augment import render_arrays
from unite_demo.worlds.faces.training.train import (DEFAULT_ASSETS, EXPERT_MODALITIES, ROOT, hardware, init_record,
                                                    load_checkpoint, load_ema, make_scheduler, save_checkpoint,
                                                    training_loss, write_card)

NETWORKS = ("seg", "sketch", "text", "joint")
CAPTION_NETWORKS = tuple(n for n in NETWORKS if "text" in EXPERT_MODALITIES[n])
CAPTIONS_FILE = "captions.safetensors"
RECORD_FILE = "record.json"
CHUNK = 256  # faces per render task


def head_digest(model: FaceUNet) -> str:
    """sha256 of the caption head's weights (fp16, as shipped): which head a read-out table belongs to."""
    h = hashlib.sha256()
    for name, v in sorted(model.caption_head.state_dict().items()):
        h.update(name.encode())
        h.update(v.detach().to(torch.float16).cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def weights_seed(path: Path) -> int:
    """A data seed that changes whenever the weights do: each run continues on other faces."""
    return int(hashlib.sha256(Path(path).read_bytes()).hexdigest()[:8], 16)


# ---------------------------------------------------------------------------------------------
# prepare: what a machine without MiniLM needs

def prepare(dest: Path, assets: Path, n: int, wheel: bool = True) -> Path:
    """Caption read-outs of `n` seeds of each caption network's split, read by its shipped head."""
    from unite_demo.worlds.faces.text import encode_captions

    dest.mkdir(parents=True, exist_ok=True)
    tensors, heads = {}, {}
    for net in CAPTION_NETWORKS:
        model = load_face_unet(assets / f"{net}.safetensors")
        if model.caption_head is None:
            raise ValueError(f"{net}: the recipe needs a network that reads captions through its caption head "
                             f"(text_reader 'attributes'); this one has {model.config.text_reader!r}")
        split = SPLITS[net]
        rng = np.random.default_rng([weights_seed(assets / f"{net}.safetensors"), 17])
        seeds = np.sort(rng.choice(np.arange(split.start, split.stop), n, replace=False))
        captions = [make_face(int(s), 8).caption for s in seeds]  # a caption does not depend on the size
        with torch.no_grad():
            readout = torch.cat([model.caption_head(encode_captions(captions[i:i + 512]))
                                 for i in range(0, n, 512)])  # (n, CAPTION_DIM)
        tensors[f"{net}.seeds"] = torch.from_numpy(seeds.astype(np.int64))
        tensors[f"{net}.readout"] = readout.to(torch.float16).contiguous()
        heads[net] = head_digest(model)
        print(f"{net}: {n} caption read-outs", flush=True)
    path = dest / CAPTIONS_FILE
    save_file(tensors, str(path), metadata={"heads": json.dumps(heads), "data_version": str(DATA_VERSION)})
    if wheel:
        copy_diffusers_wheel(dest)
    return path


def copy_diffusers_wheel(dest: Path) -> None:
    """The pinned diffusers wheel and importlib_metadata (a requirement of diffusers that CUDA images with
    torch and huggingface_hub often lack), for a CUDA machine that has torch but not diffusers."""
    import importlib.metadata
    import subprocess

    import diffusers

    for name, version in (("diffusers", diffusers.__version__),
                          ("importlib_metadata", importlib.metadata.version("importlib_metadata"))):
        if not list(dest.glob(f"{name}-{version}-*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "--disable-pip-version-check", "-d", str(dest), f"{name}=={version}"], check=True)


# ---------------------------------------------------------------------------------------------
# the pool of rendered faces

class Pool:
    """The latest `capacity` faces rendered for one network, on the training device, as uint8."""

    def __init__(self, reads: tuple[str, ...], capacity: int, size: int, device: torch.device):
        self.reads, self.capacity, self.device = reads, capacity, device
        self.image = torch.zeros(capacity, 3, size, size, dtype=torch.uint8, device=device)
        self.seg = torch.zeros(capacity, size, size, dtype=torch.uint8, device=device) if "seg" in reads else None
        self.sketch = torch.zeros(capacity, size, size, dtype=torch.uint8, device=device) if "sketch" in reads else None
        self.readout = torch.zeros(capacity, CAPTION_DIM, device=device) if "text" in reads else None
        self.filled = self.next = self.rendered = self.drawn = 0

    def add(self, arrays: dict[str, np.ndarray], readout: torch.Tensor | None) -> None:
        n = len(arrays["image"])
        rows = (self.next + torch.arange(n)) % self.capacity  # (n,)
        self.image[rows] = torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2).to(self.device)  # (n, 3, H, W)
        for name in ("seg", "sketch"):
            if getattr(self, name) is not None:
                getattr(self, name)[rows] = torch.from_numpy(arrays[name]).to(self.device)
        if self.readout is not None:
            self.readout[rows] = readout.float().to(self.device)
        self.next = (self.next + n) % self.capacity
        self.filled = min(self.capacity, self.filled + n)
        self.rendered += n

    def batch(self, n: int, gen: torch.Generator, p_drop: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x0 (n,3,H,W) in [-1,1] and the conditions as FaceUNet.forward_read takes them, each of the
        network's own dropped (set to its null, zeros) with probability p_drop per row."""
        idx = torch.randint(0, self.filled, (n,), generator=gen).to(self.device)
        size = self.image.shape[-1]
        x0 = self.image[idx].float() / 127.5 - 1.0
        cond = {"seg": torch.zeros(n, NUM_CLASSES, size, size, device=self.device),
                "sketch": torch.zeros(n, 2, size, size, device=self.device),
                "text": torch.zeros(n, CAPTION_DIM, device=self.device)}
        if self.seg is not None:
            cond["seg"] = torch.nn.functional.one_hot(self.seg[idx].long(), NUM_CLASSES).permute(0, 3, 1, 2).float()
        if self.sketch is not None:
            strokes = (self.sketch[idx] > 127).float()  # (n, H, W)
            cond["sketch"] = torch.stack([strokes, torch.ones_like(strokes)], dim=1)  # (n, 2, H, W)
        if self.readout is not None:
            cond["text"] = self.readout[idx]
        for name in self.reads:
            keep = (torch.rand(n, generator=gen) >= p_drop).float().to(self.device)  # (n,)
            cond[name] = cond[name] * keep.view(-1, *([1] * (cond[name].dim() - 1)))
        self.drawn += n
        return x0, cond


# ---------------------------------------------------------------------------------------------
# train

@dataclass
class Network:
    """One network in training: weights, EMA, optimiser, its pool and its record."""

    name: str
    model: FaceUNet
    ema: FaceUNet
    opt: torch.optim.Optimizer
    pool: Pool
    state: dict
    seeds: np.ndarray | None = None  # caption networks: the table's seeds and read-outs
    readout: torch.Tensor | None = None
    running: list = field(default_factory=list)
    in_flight: int = 0


def default_precision() -> str:
    """bf16 where the hardware computes it natively (twice fp32's speed on an AMX CPU), else fp32."""
    if torch.cuda.is_available() or torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bf16"
    return "fp32"


def open_network(name: str, args, device: torch.device, captions: dict, heads: dict) -> Network:
    """The network as the last checkpoint left it, or as assets/ ships it."""
    init = Path(args.assets) / f"{name}.safetensors"
    work = Path(args.work) / name
    model = load_face_unet(init).to(device)
    if model.caption_head is not None:
        model.caption_head.requires_grad_(False)  # frozen: the carried read-outs are its outputs
        if name in CAPTION_NETWORKS and heads.get(name) != head_digest(model):
            raise ValueError(f"{name}: the caption read-outs in {args.captions} were read with another caption "
                             f"head than {init}'s; run `python -m unite_demo.recipe prepare` again")
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    ckpt = work / "last.safetensors"
    if ckpt.exists():
        state = load_checkpoint(ckpt, model, ema, opt)
        print(f"{name}: resumed at step {state['step']} ({state['samples']} samples, "
              f"{state['seconds'] / 60:.1f} min so far)", flush=True)
    else:
        work.mkdir(parents=True, exist_ok=True)
        (work / "loss.csv").unlink(missing_ok=True)
        state = {"expert": name, "step": 0, "samples": 0, "seconds": 0.0, "batch": args.batch, "lr": args.lr,
                 "ema": args.ema, "seed": weights_seed(init), "init": f"assets/experts/{name}.safetensors",
                 "init_record": init_record(init), "device_history": [], "data_version": DATA_VERSION,
                 "augment": True, "faces_rendered": 0, "first_loss": None,
                 "caption_head": json.loads(read_metadata(init)["config"]).get("extra", {}).get("caption_head")}
    for flag in ("batch", "lr"):
        if getattr(args, flag) != state[flag]:
            print(f"warning: {name}: --{flag} {getattr(args, flag):g} ignored: this run resumes with "
                  f"{state[flag]:g} (delete {work} to start afresh)", file=sys.stderr)
    hw = f"{hardware(device)}, {args.precision}"
    if hw not in state["device_history"]:
        state["device_history"].append(hw)
    pool = Pool(model.config.modalities, args.pool, model.config.image_size, device)
    net = Network(name, model, ema, opt, pool, state)
    if name in CAPTION_NETWORKS:
        net.seeds, net.readout = captions[f"{name}.seeds"].numpy(), captions[f"{name}.readout"]
    return net


def submit(executor, net: Network, chunk: int, size: int):
    """Render CHUNK faces for `net` from fresh seeds of its split; a caption network's are drawn for
    captions of its table (rows), each a new face that the caption fits."""
    rng = np.random.default_rng([net.state["seed"], chunk])
    split = SPLITS[net.name]
    seeds = rng.integers(split.start, split.stop, CHUNK)
    rows = like = None
    if net.seeds is not None:
        rows = rng.integers(0, len(net.seeds), CHUNK)
        like = net.seeds[rows]
    net.in_flight += 1
    future = executor.submit(render_arrays, EXPERT_MODALITIES[net.name], seeds, net.model.config.image_size,
                             int(rng.integers(2**31)), like)
    return future, net, rows


def train(args) -> dict[str, Network]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    names = list(dict.fromkeys(args.networks))
    captions, heads = {}, {}
    if any(n in CAPTION_NETWORKS for n in names):
        if not args.captions or not Path(args.captions).exists():
            raise SystemExit(f"--captions: no caption read-outs at {args.captions!r}; "
                             f"make them with `python -m unite_demo.recipe prepare DIR`")
        captions = load_file(str(args.captions))
        heads = json.loads(read_metadata(args.captions)["heads"])
    nets = {n: open_network(n, args, device, captions, heads) for n in names}
    # spawn, not fork: the render workers inherit no CUDA state and no torch thread pools.
    executor = ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"))
    pending, chunk = [], {n: net.state["faces_rendered"] // CHUNK for n, net in nets.items()}
    scheds = {n: make_scheduler(net.model.config) for n, net in nets.items()}
    gens = {n: torch.Generator().manual_seed(net.state["seed"] + net.state["step"]) for n, net in nets.items()}
    dev_gens = {n: torch.Generator(device=device).manual_seed(net.state["seed"] + net.state["step"] + 1)
                for n, net in nets.items()}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    stop = []
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.append(True))  # save and export, then end

    def wanted(net: Network) -> bool:
        """Render more for this network? Always below a minimum; with --reuse R, once each face
        in the pool has been drawn about R times."""
        if net.pool.rendered + net.in_flight * CHUNK < net.state["batch"] * 2:
            return True
        return args.reuse <= 0 or net.pool.drawn >= args.reuse * (net.pool.rendered + net.in_flight * CHUNK)

    def collect(block: bool) -> None:
        nonlocal pending
        if block and pending:
            pending[0][0].result()
        keep = []
        for future, net, rows in pending:
            if future.done():
                net.in_flight -= 1
                net.pool.add(future.result(), None if rows is None else net.readout[torch.from_numpy(rows)])
                net.state["faces_rendered"] += CHUNK
            else:
                keep.append((future, net, rows))
        pending = keep
        order = sorted(nets.values(), key=lambda n: n.pool.rendered + n.in_flight * CHUNK)
        for net in order:
            if len(pending) < 2 * args.workers and wanted(net):
                pending.append(submit(executor, net, chunk[net.name], net.model.config.image_size))
                chunk[net.name] += 1

    start = time.time()
    deadline = start + args.minutes * 60 if args.minutes else math.inf
    target = {n: net.state["step"] + args.steps if args.steps else math.inf for n, net in nets.items()}
    last_save = start
    seconds0 = {n: net.state["seconds"] for n, net in nets.items()}
    schedule = list(args.networks)
    turn = 0
    try:
        collect(block=False)
        while not stop and time.time() < deadline and any(nets[n].state["step"] < target[n] for n in nets):
            name = schedule[turn % len(schedule)]
            turn += 1
            net = nets[name]
            if net.state["step"] >= target[name]:
                continue
            while net.pool.filled < net.state["batch"]:
                collect(block=True)
            step = net.state["step"]
            lr = net.state["lr"] * min(1.0, (step + 1) / args.warmup)
            for g in net.opt.param_groups:
                g["lr"] = lr
            x0, cond = net.pool.batch(net.state["batch"], gens[name], args.p_drop)
            with autocast:
                loss = training_loss(net.model, scheds[name], x0, cond, dev_gens[name],
                                     caption_read=net.model.caption_head is not None)
            net.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.model.parameters(), 1.0)
            net.opt.step()
            with torch.no_grad():
                for pe, pm in zip(net.ema.parameters(), net.model.parameters()):
                    pe.lerp_(pm, 1 - net.state["ema"])
            net.running.append(loss.detach())
            net.state["step"] = step + 1
            net.state["samples"] += net.state["batch"]
            if net.state["step"] % args.log_every == 0:
                log_loss(args, net, lr, seconds0[name] + time.time() - start)
            collect(block=False)
            if time.time() - last_save > args.save_minutes * 60:
                for n, other in nets.items():
                    other.state["seconds"] = seconds0[n] + time.time() - start
                    save_checkpoint(Path(args.work) / n, other.model, other.ema, other.opt, other.state)
                export(args, names)  # a run cut short still leaves its latest weights in --out
                last_save = time.time()
                report(nets, start)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        signal.signal(signal.SIGTERM, previous)
    for n, net in nets.items():
        if net.running:
            log_loss(args, net, net.opt.param_groups[0]["lr"], seconds0[n] + time.time() - start)
        net.state["seconds"] = seconds0[n] + time.time() - start
        save_checkpoint(Path(args.work) / n, net.model, net.ema, net.opt, net.state)
    report(nets, start)
    return nets


def log_loss(args, net: Network, lr: float, seconds: float) -> None:
    loss = float(torch.stack(net.running).float().mean())
    net.running = []
    if net.state["first_loss"] is None:
        net.state["first_loss"] = round(loss, 5)
    net.state["final_loss"] = round(loss, 5)
    path = Path(args.work) / net.name / "loss.csv"
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["step", "loss", "lr", "seconds", "samples"])
        w.writerow([net.state["step"], f"{loss:.5f}", f"{lr:.2e}", f"{seconds:.1f}", net.state["samples"]])


def report(nets: dict[str, Network], start: float) -> None:
    elapsed = max(time.time() - start, 1e-9)
    parts = [f"{n} step {net.state['step']} loss {net.state.get('final_loss')} faces {net.pool.rendered}"
             for n, net in nets.items()]
    samples = sum(net.state["samples"] for net in nets.values())
    print(f"[{elapsed / 60:.1f} min] " + " | ".join(parts) + f" | {samples} samples in all", flush=True)


# ---------------------------------------------------------------------------------------------
# export and adopt

def export(args, names=NETWORKS) -> dict:
    """Each checkpoint's EMA weights -> OUT/<net>.safetensors (fp16, its record in the config), and
    OUT/record.json with every network's record and loss log."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = {}
    for name in names:
        ckpt = Path(args.work) / name / "last.safetensors"
        if not ckpt.exists():
            continue
        ema, state = load_ema(ckpt)
        split = SPLITS[name]
        record = {"expert": name, "split": f"faces.SPLITS[{name!r}] = seeds {split.start}..{split.stop - 1}",
                  "recipe": "python -m unite_demo.recipe train", "data_version": state["data_version"],
                  "augment": state["augment"], "init": state["init"], "init_record": state["init_record"],
                  "caption_head": state["caption_head"], "steps": state["step"], "samples": state["samples"],
                  "faces_rendered": state["faces_rendered"], "batch": state["batch"], "lr": state["lr"],
                  "ema": state["ema"], "wall_minutes": round(state["seconds"] / 60, 1),
                  "hardware": state["device_history"], "first_loss": state["first_loss"],
                  "final_loss": state.get("final_loss")}
        ema.config = replace(ema.config, extra=record)
        save_face_unet(ema, out / f"{name}.safetensors")
        log_path = Path(args.work) / name / "loss.csv"
        records[name] = {**record, "loss_log": list(csv.DictReader(open(log_path))) if log_path.exists() else []}
        print(f"exported {out / f'{name}.safetensors'}: {state['step']} steps, {state['samples']} samples, "
              f"loss {state['first_loss']} -> {state.get('final_loss')}", flush=True)
    (out / RECORD_FILE).write_text(json.dumps(records, indent=1))
    return records


def adopt(src: Path, assets: Path, names=NETWORKS) -> list[Path]:
    """A run's files -> assets (each checked to load), with a model card and sample grid each."""
    records = json.loads((src / RECORD_FILE).read_text())
    written = []
    for name in names:
        path = src / f"{name}.safetensors"
        if not path.exists():
            continue
        load_face_unet(path)
        dest = assets / f"{name}.safetensors"
        shutil.copyfile(path, dest)
        log = records.get(name, {}).get("loss_log", [])
        write_card(dest, first_loss=log[0]["loss"] if log else "n/a",
                   command="python -m unite_demo.recipe adopt")
        written.append(dest)
    return written


def main_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="caption read-outs (and the diffusers wheel) for a machine without MiniLM")
    p.add_argument("dest")
    p.add_argument("--n", type=int, default=32_768, help="captions per caption network (about 3 min per 10,000 on 2 cores)")
    p.add_argument("--assets", default=str(DEFAULT_ASSETS))
    p.add_argument("--no-wheel", dest="wheel", action="store_false")
    t = sub.add_parser("train", help="continue the networks from --assets")
    t.add_argument("--captions", help=f"the {CAPTIONS_FILE} that prepare wrote")
    t.add_argument("--out", required=True, help="where the fp16 files and record.json go")
    t.add_argument("--work", default=str(ROOT / "checkpoints" / "recipe"), help="resumable checkpoints and loss logs")
    t.add_argument("--assets", default=str(DEFAULT_ASSETS))
    t.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS,
                   help="the step order, repeated; a name given twice trains twice as often")
    t.add_argument("--minutes", type=float, default=0, help="stop after this wall time (0: no limit)")
    t.add_argument("--steps", type=int, default=0, help="stop each network after this many more steps (0: no limit)")
    t.add_argument("--batch", type=int, default=1024)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--warmup", type=int, default=50)
    t.add_argument("--ema", type=float, default=0.999)
    t.add_argument("--p-drop", type=float, default=0.15, help="condition dropout probability")
    t.add_argument("--pool", type=int, default=131_072, help="faces kept per network")
    t.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2), help="render processes")
    t.add_argument("--reuse", type=float, default=0, help="render again once each pooled face was drawn this "
                   "often (0: render without pause)")
    t.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    t.add_argument("--precision", choices=("bf16", "fp32"), default=default_precision(),
                   help="bf16: autocast (a CUDA GPU, or a CPU with bf16 instructions); fp32 weights either way")
    t.add_argument("--threads", type=int, default=0, help="torch threads of the training process (0: torch's choice)")
    t.add_argument("--log-every", type=int, default=25)
    t.add_argument("--save-minutes", type=float, default=5)
    e = sub.add_parser("export", help="the checkpoints' EMA weights -> --out")
    e.add_argument("--out", required=True)
    e.add_argument("--work", default=str(ROOT / "checkpoints" / "recipe"))
    a = sub.add_parser("adopt", help="a run's files -> assets/experts, with model cards")
    a.add_argument("src")
    a.add_argument("--assets", default=str(DEFAULT_ASSETS))
    a.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS, help="only these")
    return ap


def main(argv=None):
    args = main_parser().parse_args(argv)
    if args.cmd == "prepare":
        print(prepare(Path(args.dest), Path(args.assets), args.n, args.wheel))
    elif args.cmd == "train":
        if args.threads:
            torch.set_num_threads(args.threads)
        export(args, list(train(args)))
    elif args.cmd == "export":
        export(args)
    else:
        for path in adopt(Path(args.src), Path(args.assets), args.networks):
            print(f"adopted {path}")


if __name__ == "__main__":
    main()
