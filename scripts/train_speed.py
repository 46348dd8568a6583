"""Training throughput of the built-in world's networks on this machine, two loops side by side:

  loop     the per-step loop of `python -m unite_demo.train`: each step renders its own batch, then trains
  recipe   `python -m unite_demo.recipe train`: a worker process renders into a pool while the network trains

    python scripts/train_speed.py [--seconds 60] [--network seg] [--loop-batch 16] [--batch 64] [--reuse 3]

Both continue the shipped network from assets/experts on the same number of threads, and print samples
per second of wall time (start-up left out). Nothing in the repository is written.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unite_demo.worlds.faces.training import recipe  # noqa: E402
from unite_demo.worlds.faces.model import load_face_unet  # noqa: E402
from unite_demo.worlds.faces.training.train import (DEFAULT_ASSETS, batch_for_step, make_scheduler,  # noqa: E402
                                                    training_loss)


def loop_speed(network: str, batch: int, seconds: float) -> float:
    model = load_face_unet(DEFAULT_ASSETS / f"{network}.safetensors").train()
    if model.caption_head is not None:
        model.caption_head.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    sched = make_scheduler(model.config)
    samples, step, start = 0, 0, time.time()
    while time.time() - start < seconds:
        x0, cond = batch_for_step(network, 0, step, batch, model.config.image_size, 0.15)
        loss = training_loss(model, sched, x0, cond, torch.Generator().manual_seed(step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        samples, step = samples + batch, step + 1
    return samples / (time.time() - start)


def recipe_speed(network: str, batch: int, seconds: float, reuse: float, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        captions = None
        if network in recipe.CAPTION_NETWORKS:
            captions = recipe.prepare(Path(tmp), DEFAULT_ASSETS, 2048, wheel=False)
        args = recipe.main_parser().parse_args(
            ["train", "--out", f"{tmp}/out", "--work", f"{tmp}/work", "--networks", network, "--batch", str(batch),
             "--minutes", str(seconds / 60), "--workers", str(workers), "--reuse", str(reuse), "--pool", "16384",
             "--device", "cpu"] + (["--captions", str(captions)] if captions else []))
        args.export = False
        net = recipe.train(args)[network]
        return net.state["samples"] / net.state["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--network", default="seg", choices=recipe.NETWORKS)
    ap.add_argument("--loop-batch", type=int, default=16, help="the per-step loop's batch (the shipped experts': 16)")
    ap.add_argument("--batch", type=int, default=64, help="the recipe's batch")
    ap.add_argument("--reuse", type=float, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.network}, {args.threads} torch threads, {args.seconds:g} s each")
    a = loop_speed(args.network, args.loop_batch, args.seconds)
    print(f"loop   (render in the step, batch {args.loop_batch}): {a:.1f} samples/s", flush=True)
    b = recipe_speed(args.network, args.batch, args.seconds, args.reuse, args.workers)
    print(f"recipe (pool, {args.workers} render worker, reuse {args.reuse:g}, batch {args.batch}): {b:.1f} samples/s")
    print(f"ratio {b / a:.2f}x")


if __name__ == "__main__":
    main()
