"""Speed of the built-in world on this machine: time to the first preview and to the final image
with default settings and all three experts, and batched versus one-expert-at-a-time evaluation
of the same run (same output, speed ratio).

    python -m unite_demo.bench [--runs 5] [--steps N] [--faces-dir DIR] [--engines]

--engines compares the engines that can serve the networks (unite_demo.method.engines: ONNX Runtime,
TorchScript, eager) side by side, on 1 and 2 CPU threads, alone and beside a Python thread that
holds the GIL 30% of the time (as the web server does while it streams previews): one expert's
forward at batch 2 (its conditional and null rows, as in every step), with its largest difference
from the module; then the whole batched run to the final image.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import threading
import time
from pathlib import Path

import torch

from unite_demo.limits import DEFAULTS
from unite_demo.method.engines import ENGINES, serve
from unite_demo.worlds.faces.data import NUM_CLASSES
from unite_demo.worlds.faces.denoiser import FORWARD_NAMES, example_inputs
from unite_demo.worlds.faces.examples import load_examples
from unite_demo.worlds.faces.model import TEXT_DIM
from unite_demo.worlds.faces.world import FACES_DIR, load_faces_world


def timed_run(world, inputs: dict, batched: bool) -> tuple[float, float, torch.Tensor]:
    """Seconds from the request (validation and text encoding included) to the first preview and
    to the final image, and the final image."""
    t0 = time.perf_counter()
    first = None
    for frame in world.generate(world.request(**inputs), batched=batched):
        if first is None:
            first = time.perf_counter() - t0
        if frame.done:
            final, image = time.perf_counter() - t0, frame.image
    return first, final, image


@contextlib.contextmanager
def python_load(share: float = 0.3, period_s: float = 0.01):
    """A thread running pure Python `share` of the time (it holds the GIL while it runs)."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            end = time.perf_counter() + share * period_s
            while time.perf_counter() < end:
                pass
            time.sleep((1 - share) * period_s)

    worker = threading.Thread(target=spin, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()


def forward_ms(fn, inputs: tuple, calls: int) -> float:
    """Median milliseconds of fn(*inputs) over `calls` calls, after three warm-up calls."""
    for _ in range(3):
        fn(*inputs)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(*inputs)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def compare_engines(faces_dir: Path, inputs: dict, runs: int, calls: int = 50) -> None:
    """The engines side by side: the seg expert's forward at batch 2, then the whole run (final image)."""
    threads_before = torch.get_num_threads()
    net = load_faces_world(faces_dir, engine="eager", superres_file=None).experts[0].denoiser.net
    c, g = net.config, torch.Generator().manual_seed(0)
    batch = (torch.randn(2, 3, c.image_size, c.image_size, generator=g), torch.tensor([500.0, 500.0]),
             torch.cat([torch.nn.functional.one_hot(torch.randint(0, NUM_CLASSES, (1, c.image_size, c.image_size),
                                                                  generator=g), NUM_CLASSES).permute(0, 3, 1, 2).float(),
                        torch.zeros(1, NUM_CLASSES, c.image_size, c.image_size)]),
             torch.zeros(2, 2, c.image_size, c.image_size), torch.zeros(2, TEXT_DIM))
    with torch.inference_mode():
        want = net(*batch)
    print(f"\none expert's forward (seg, batch 2, {calls} calls, median)")
    print(f"{'engine':<13}{'threads':>8}{'alone (ms)':>12}{'beside Python 30% (ms)':>24}{'max |diff|':>12}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for engine in ENGINES:
            fn = serve(net, example_inputs(c), FORWARD_NAMES, engine)
            with torch.inference_mode():
                diff = (fn(*batch) - want).abs().max().item()
                alone = forward_ms(fn, batch, calls)
                with python_load():
                    beside = forward_ms(fn, batch, calls)
            print(f"{engine:<13}{threads:>8}{alone:>12.1f}{beside:>24.1f}{diff:>12.1e}", flush=True)
    print(f"\nthe whole run (final image, batched, median of {runs})")
    print(f"{'engine':<13}{'threads':>8}{'alone (s)':>12}{'beside Python 30% (s)':>24}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for engine in ENGINES:
            world = load_faces_world(faces_dir, engine=engine)
            world.warm_up()
            alone = statistics.median(timed_run(world, inputs, True)[1] for _ in range(runs))
            with python_load():
                beside = statistics.median(timed_run(world, inputs, True)[1] for _ in range(runs))
            print(f"{engine:<13}{threads:>8}{alone:>12.3f}{beside:>24.3f}", flush=True)
    torch.set_num_threads(threads_before)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    ap.add_argument("--sampler", default=DEFAULTS["sampler"])
    ap.add_argument("--faces-dir", default=str(FACES_DIR))
    ap.add_argument("--engines", action="store_true", help="also compare the engines, threads, Python load")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    world = load_faces_world(Path(args.faces_dir))
    loaded = time.perf_counter() - t0
    world.warm_up()
    warmed = time.perf_counter() - t0
    ex = load_examples()[0]
    print(f"machine: {platform.machine()} {platform.processor()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; world {world.name} at {world.image_size}x{world.image_size}")
    print(f"load {loaded:.2f} s, load + warm-up {warmed:.2f} s")
    if world.final_stage is not None:
        with torch.inference_mode():
            ms = forward_ms(world.final_stage, (torch.zeros(1, 3, world.image_size, world.image_size),), 20)
        print(f"final-image stage: {ms:.1f} ms per image ({world.image_size} -> {4 * world.image_size} px)")
    print(f"settings: 3 experts (seg, sketch, text), {args.steps} steps, {args.sampler}, "
          f"guidance {DEFAULTS['guidance']}, reliability {DEFAULTS['reliability']}")
    results = {}
    for batched in (True, False):
        firsts, finals, image = [], [], None
        for i in range(args.runs):
            # A new caption each run, so text encoding is paid as a user pays it.
            text = f"{ex.text} (run {i}, {'batched' if batched else 'loop'})"
            inputs = dict(seg=ex.seg, sketch=ex.sketch, text=text, steps=args.steps, sampler=args.sampler, seed=0)
            first, final, image = timed_run(world, inputs, batched)
            firsts.append(first)
            finals.append(final)
        results[batched] = (statistics.median(firsts), statistics.median(finals), image)
    # Same request through both paths, compared exactly.
    inputs = dict(seg=ex.seg, sketch=ex.sketch, text=ex.text, steps=args.steps, sampler=args.sampler, seed=0)
    img_b = timed_run(world, inputs, True)[2]
    img_l = timed_run(world, inputs, False)[2]
    diff = (img_b - img_l).abs().max().item()
    mix_b = world.mixture(world.request(**inputs), batched=True)
    mix_l = world.mixture(world.request(**inputs), batched=False)
    cond = world.conditions(world.request(**inputs))
    x = torch.zeros(1, 3, world.image_size, world.image_size)
    ab = torch.tensor([0.5])
    mix_b(x, ab, cond)
    mix_l(x, ab, cond)
    print()
    print(f"{'evaluation':<28}{'first preview (s)':>18}{'final image (s)':>17}{'calls/step':>12}{'rows/step':>11}")
    for batched, mix in ((True, mix_b), (False, mix_l)):
        first, final, _ = results[batched]
        name = "batched (per network)" if batched else "one expert row at a time"
        print(f"{name:<28}{first:>18.3f}{final:>17.3f}{mix.calls:>12}{mix.rows:>11}")
    ratio = results[False][1] / results[True][1]
    print(f"\nspeed ratio (one-at-a-time / batched, final image): {ratio:.2f}x")
    print(f"max |batched - one-at-a-time| on the final image: {diff:.2e} ({'within' if diff <= 1e-4 else 'OVER'} 1e-4)")
    print(f"median of {args.runs} runs each; targets: first preview <= 0.3 s, final image <= 2 s")
    if args.engines:
        compare_engines(Path(args.faces_dir), inputs, args.runs)


if __name__ == "__main__":
    main()
