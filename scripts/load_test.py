"""Load test of the studio's API: many gradio_client clients at once against `/generate`.

    python scripts/load_test.py                       # starts `python app.py` on a free port (scripts/media.serve)
    python scripts/load_test.py --url http://127.0.0.1:7860/ --pid 1234

First `warmup` requests one after the other (the server's memory is read after them), then rounds of
`clients` threads, each with its own gradio_client.Client (its own session), sending `per_client`
requests, until `total` requests have been sent; the memory is read again at the end. Every request
has its own seed and a caption with a marker that must come back in the caption output (no request
gets another's result); in each round, pairs of clients also send one identical request, which must
give identical images. A request refused because the queue is full (demo.queue's max_size) counts as
refused, not as a failure.

Prints: requests sent, concurrency, completed / refused / failed, max wait, the server's RSS after
`warmup` and after `total` requests, and the growth between them.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
HAIR = ("red", "black", "blond", "brown", "grey", "blue", "pink", "green")


def rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS in /proc/PID/status), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass(frozen=True)
class Ask:
    """One request: its seed and caption (the caption carries the marker)."""

    seed: int
    marker: str

    @property
    def text(self) -> str:
        return f"a smiling person with {HAIR[self.seed % len(HAIR)]} hair, tag {self.marker}"


@dataclass
class Answer:
    ask: Ask
    wait_s: float
    image: bytes | None = None  # the final image's RGB pixels
    caption: str = ""
    status: str = ""
    refused: bool = False
    error: str | None = None


@dataclass
class LoadReport:
    sent: int
    concurrency: int
    completed: int
    refused: int
    failed: int
    max_wait_s: float
    rss_after_warmup_kib: int | None
    rss_after_all_kib: int | None
    warmup: int
    problems: list[str] = field(default_factory=list)  # wrong captions, twins that differ, seeds that agree
    answers: list[Answer] = field(default_factory=list, repr=False)

    @property
    def growth_pct(self) -> float | None:
        if not self.rss_after_warmup_kib or self.rss_after_all_kib is None:
            return None
        return 100.0 * (self.rss_after_all_kib - self.rss_after_warmup_kib) / self.rss_after_warmup_kib

    def summary(self) -> str:
        mib = (lambda k: "n/a" if k is None else f"{k / 1024:.1f} MiB")
        growth = "n/a" if self.growth_pct is None else f"{self.growth_pct:+.1f} %"
        lines = [f"requests sent: {self.sent}", f"concurrency: {self.concurrency} clients",
                 f"completed: {self.completed}, refused (queue full): {self.refused}, failed: {self.failed}",
                 f"max wait: {self.max_wait_s:.2f} s",
                 f"server RSS after {self.warmup} requests: {mib(self.rss_after_warmup_kib)}",
                 f"server RSS after {self.sent} requests: {mib(self.rss_after_all_kib)}",
                 f"growth: {growth}"]
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)


def _ask(client, ask: Ask, steps: int) -> Answer:
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError

    start = time.perf_counter()
    try:
        image, status, _, _, caption = client.predict(text=ask.text, seed=ask.seed, steps=steps, api_name="/generate")
    except QueueError as e:
        return Answer(ask, time.perf_counter() - start, refused=True, error=str(e))
    except AppError as e:
        refused = "queue is full" in str(e).lower()
        return Answer(ask, time.perf_counter() - start, refused=refused, error=str(e))
    except Exception as e:  # noqa: BLE001 - counted and reported
        return Answer(ask, time.perf_counter() - start, error=f"{type(e).__name__}: {e}")
    wait = time.perf_counter() - start
    pixels = np.asarray(Image.open(image).convert("RGB")).tobytes()
    return Answer(ask, wait, pixels, caption or "", status or "")


def check(answers: list[Answer]) -> list[str]:
    """Each answer carries its own marker; identical asks give identical images, different seeds different ones."""
    problems = []
    done = [a for a in answers if a.image is not None]
    for a in done:
        if f"tag {a.ask.marker}" not in a.caption:
            problems.append(f"seed {a.ask.seed} ({a.ask.marker}) got the caption {a.caption[:80]!r}")
    by_ask: dict[Ask, set[bytes]] = {}
    for a in done:
        by_ask.setdefault(a.ask, set()).add(a.image)
    for ask, images in by_ask.items():
        if len(images) > 1:
            problems.append(f"identical requests ({ask.marker}) gave {len(images)} different images")
    owners: dict[bytes, set[int]] = {}
    for ask, images in by_ask.items():
        for img in images:
            owners.setdefault(img, set()).add(ask.seed)
    for seeds in owners.values():
        if len(seeds) > 1:
            problems.append(f"different seeds {sorted(seeds)} gave the same image")
    return problems


def run(url: str, pid: int | None = None, clients: int = 20, per_client: int = 3, total: int = 100,
        warmup: int = 10, steps: int = 2, seed0: int | None = None, verbose: bool = True) -> LoadReport:
    """Send `total` requests to `url` (see the module's docstring); pid: the server process, for its RSS."""
    from gradio_client import Client

    seed0 = seed0 if seed0 is not None else 1_000_000 + int(time.time()) % 1_000_000 * 100  # nothing cached
    # ssl_verify=False: plain http to the server, and gradio_client otherwise builds an SSL context (loading
    # every CA certificate) for each of its HTTP calls: ~0.9 s of CPU per request instead of ~0.08 s.
    connect = (lambda: Client(url, verbose=False, ssl_verify=False))
    answers: list[Answer] = []
    with ThreadPoolExecutor(clients) as pool:
        sessions = list(pool.map(lambda _: connect(), range(clients)))
        # Warm-up: `warmup` requests at once from as many clients (up to `clients`), like the rounds after it.
        asks = [Ask(seed0 + k, f"w{k}") for k in range(warmup)]
        answers += pool.map(lambda k: _ask(sessions[k % clients], asks[k], steps), range(warmup))
        rss_warm = rss_kib(pid) if pid else None
        if verbose:
            print(f"warm-up: {warmup} requests" + (f", RSS {rss_warm / 1024:.1f} MiB" if rss_warm else ""), flush=True)
        next_seed = seed0 + warmup
        rnd = 0
        lock = threading.Lock()
        while len(answers) < total:
            left = total - len(answers)
            plan: list[list[Ask]] = [[] for _ in range(clients)]
            half = clients // 2
            for i in range(clients):
                for k in range(per_client):
                    if sum(map(len, plan)) >= left:
                        break
                    if k == 0 and half and i >= half and len(plan[i - half]) > 0:
                        plan[i].append(plan[i - half][0])  # the twin of client i - half's first request
                    else:
                        plan[i].append(Ask(next_seed, f"r{rnd}c{i}k{k}"))
                        next_seed += 1

            def client_run(i: int) -> None:
                for ask in plan[i]:
                    answer = _ask(sessions[i], ask, steps)
                    with lock:
                        answers.append(answer)

            list(pool.map(client_run, range(clients)))
            if verbose:
                print(f"round {rnd}: {sum(map(len, plan))} requests from {sum(1 for p in plan if p)} clients "
                      f"({len(answers)} so far)", flush=True)
            rnd += 1
    rss_all = rss_kib(pid) if pid else None
    report = LoadReport(sent=len(answers), concurrency=clients,
                        completed=sum(a.image is not None for a in answers), refused=sum(a.refused for a in answers),
                        failed=sum(a.image is None and not a.refused for a in answers),
                        max_wait_s=max(a.wait_s for a in answers), rss_after_warmup_kib=rss_warm,
                        rss_after_all_kib=rss_all, warmup=warmup, answers=answers)
    report.problems = check(answers) + [f"seed {a.ask.seed}: {a.error}" for a in answers
                                        if a.error and not a.refused]
    if verbose:
        print(report.summary(), flush=True)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running studio (default: start `python app.py` on a free port)")
    ap.add_argument("--pid", type=int, help="the server's process id, for its memory (with --url)")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--per-client", type=int, default=3)
    ap.add_argument("--total", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args(argv)
    kw = dict(clients=args.clients, per_client=args.per_client, total=args.total, warmup=args.warmup, steps=args.steps)
    if args.url:
        report = run(args.url, args.pid, **kw)
    else:
        sys.path.insert(0, str(ROOT / "scripts"))
        from media import serve

        with serve() as url:
            report = run(url, url.pid, **kw)
    return 0 if report.failed == 0 and not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
