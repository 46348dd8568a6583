"""Load test of the studio's API: many gradio_client clients at once against `/generate`.

    python scripts/load_test.py                       # starts `python app.py` on a free port (scripts/media.serve)
    python scripts/load_test.py --url http://127.0.0.1:7860/ --pid 1234

Each of `clients` threads has its own gradio_client.Client (its own session). First `warmup` requests
at once, one each from as many clients (the server's memory is read after them); then rounds in which
all the clients run at once, each sending up to `per_client` requests one after another, until `total`
requests have been sent in all, warm-up included; the memory is read again at the end. The defaults
(20 clients, 3 per client, 100 in all, 10 warm-up, 2 steps) make 10 warm-up requests, a round of 60
from 20 clients, then a round of 30 from 10 clients. Every request has its own seed and a caption with
a marker that must come back in the caption output (no request gets another's result); in a round
where both halves of the clients send, the second half's first requests repeat the first half's, and
identical requests must give identical images. A request refused because the queue is full
(demo.queue's max_size) counts as refused, not as a failure.

Prints: requests sent, concurrency, completed / refused / failed, max wait, the server's RSS after
`warmup` and after `total` requests, and the growth between them.

    python scripts/load_test.py --soak 500 --clients 30   # the soak (see soak())

The soak mixes good requests, bad inputs, runs stopped after their first preview and clients that go
away mid-run (SOAK_MIX), 30 clients at once, and reads the server's RSS after every 100 requests: flat
readings from the second on mean warm-up, a steady climb a leak.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import uuid
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
HAIR = ("red", "black", "blond", "brown", "grey", "blue", "pink", "green")


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


def rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS in /proc/PID/status), KiB."""
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """Peak resident memory (VmHWM) since the process started or its clear_refs was last written with 5."""
    return _status_kib(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cpu(pid: int, seconds: float) -> float:
    """The process's CPU seconds over the next `seconds`."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - before


class Raw:
    """/generate through gradio's queue with plain HTTP (join, then the event stream), for what
    gradio_client cannot send (NaN, infinities: not JSON) and to see HTTP status codes."""

    def __init__(self, url: str, client):
        self.url = url.rstrip("/")
        info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]
        self.names = [p["parameter_name"] for p in info["parameters"]]
        self.defaults = {p["parameter_name"]: p["parameter_default"] for p in info["parameters"]}
        deps = httpx.get(self.url + "/config").json()["dependencies"]
        self.fn_index = next(d["id"] for d in deps if d.get("api_name") == "generate")

    def join(self, http: httpx.Client, session: str, **inputs) -> httpx.Response:
        values = {**self.defaults, **inputs}
        body = json.dumps({"data": [values[n] for n in self.names], "fn_index": self.fn_index, "session_hash": session,
                           "event_data": None, "trigger_id": None})  # NaN and Infinity as JavaScript writes them
        return http.post(self.url + "/gradio_api/queue/join", content=body,
                         headers={"content-type": "application/json"})

    def messages(self, http: httpx.Client, session: str):
        with http.stream("GET", self.url + "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    yield json.loads(line[5:])

    def run(self, session: str | None = None, **inputs) -> dict:
        """{'http': join's status, 'success': bool, 'error': message or None, 'output': ...}; session: the
        caller's session (default: a new one)."""
        session = session or uuid.uuid4().hex[:12]
        with httpx.Client(timeout=60) as http:
            joined = self.join(http, session, **inputs)
            if joined.status_code != 200:
                return {"http": joined.status_code, "success": False, "error": joined.text, "output": None}
            for message in self.messages(http, session):
                if message.get("msg") == "process_completed":
                    output = message.get("output") or {}
                    return {"http": 200, "success": bool(message.get("success")), "error": output.get("error"),
                            "output": output}
        return {"http": 200, "success": False, "error": "the event stream ended without a result", "output": None}

    def start_and_leave(self, **inputs) -> None:
        """Start a run, read its event stream up to the first preview, then close the connection."""
        session = uuid.uuid4().hex[:12]
        with httpx.Client(timeout=60) as http:
            assert self.join(http, session, **inputs).status_code == 200
            for message in self.messages(http, session):
                if message.get("msg") == "process_generating":
                    return  # leaving the `with` closes the stream and the connection mid-run
        raise AssertionError("the run ended before its first preview")


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
        image, status, _, _, caption, *_ = client.predict(text=ask.text, seed=ask.seed, steps=steps,
                                                          api_name="/generate")
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


# ---------------------------------------------------------------------------------------------
# The soak: good and bad requests, Stops and clients that leave, mixed, for hundreds of requests.

# Bad inputs the soak sends (through plain HTTP, so NaN and server paths can be claimed) and the words
# each message must contain: the name of the input.
SOAK_BAD = [({"steps": 2.5}, "steps"), ({"guidance": math.nan}, "guidance"), ({"text": 5}, "text"),
            ({"sampler": "euler"}, "sampler"), ({"r_seg": "lots"}, "reliability of seg"), ({"world": "mars"}, "world"),
            ({"seg": {"background": {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "layers": [],
                      "composite": {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "id": None}},
             "segmentation map"),
            ({"sketch": "a.png"}, "sketch")]
# One cycle of the mix: of every 10 requests, 6 good, 2 bad, 1 stopped after its first preview, 1 whose
# client goes away after its first preview.
SOAK_MIX = ("good", "bad", "good", "stop", "good", "good", "bad", "leave", "good", "good")
GENERIC_ERROR = "upstream Gradio app has raised an exception"  # gradio's words for an uncaught exception


@dataclass
class SoakReport:
    sent: int
    clients: int
    kinds: dict[str, int]  # requests sent of each kind
    completed: int  # good requests with their own image
    refused: int  # queue full
    named: int  # bad requests whose message named the input
    stopped: int  # runs stopped after their first preview
    left: int  # runs whose client went away after their first preview
    rss_kib: dict[int, int]  # the server's RSS after that many requests
    seconds: float
    idle_cpu: float | None  # the server's CPU use (fraction of a core) once the soak is over
    problems: list[str] = field(default_factory=list)

    @property
    def growth_pct(self) -> float | None:
        """RSS growth from the first reading to the last."""
        if len(self.rss_kib) < 2:
            return None
        first, last = self.rss_kib[min(self.rss_kib)], self.rss_kib[max(self.rss_kib)]
        return 100.0 * (last - first) / first

    def summary(self) -> str:
        rss = ", ".join(f"{n}: {k / 1024:.1f}" for n, k in sorted(self.rss_kib.items()))
        growth = "n/a" if self.growth_pct is None else f"{self.growth_pct:+.1f} %"
        idle = "n/a" if self.idle_cpu is None else f"{self.idle_cpu:.0%}"
        lines = [f"requests sent: {self.sent} from {self.clients} clients in {self.seconds:.0f} s "
                 f"({', '.join(f'{k} {n}' for k, n in self.kinds.items())})",
                 f"good: {self.completed} completed with their own image, {self.refused} refused (queue full)",
                 f"bad: {self.named} of {self.kinds.get('bad', 0)} got a message naming the input",
                 f"stopped: {self.stopped}, left: {self.left}",
                 f"server RSS (MiB) after N requests: {rss}",
                 f"growth from {min(self.rss_kib, default=0)} to {max(self.rss_kib, default=0)} requests: {growth}",
                 f"server CPU once the soak is over: {idle}"]
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)


def soak(url: str, pid: int | None = None, clients: int = 30, total: int = 500, every: int = 100, steps: int = 2,
         seed0: int | None = None, mix: tuple[str, ...] = SOAK_MIX, verbose: bool = True) -> SoakReport:
    """`total` requests to `url` from `clients` clients at once, in batches of `every` (the server's RSS is
    read after each), of the kinds in `mix`, in turn (SOAK_MIX: all four). Good requests must come back with their own caption marker
    and image, bad ones with a message naming the input; stopped and abandoned runs must leave nothing
    running (the server's CPU falls idle once the soak is over); nothing may be lost (every request ends in
    one of these)."""
    from gradio_client import Client

    seed0 = seed0 if seed0 is not None else 2_000_000 + int(time.time()) % 1_000_000 * 1000  # nothing cached
    connect = (lambda: Client(url, verbose=False, ssl_verify=False))  # ssl_verify: see run()
    local = threading.local()
    raw: Raw | None = None
    kinds = {k: 0 for k in dict.fromkeys(mix)}
    answers: list[Answer] = []
    named = stopped = left = 0
    problems: list[str] = []
    lock = threading.Lock()

    def client() -> Client:
        if not hasattr(local, "client"):
            local.client = connect()
        return local.client

    def one(n: int) -> None:
        nonlocal named, stopped, left
        kind, seed = mix[n % len(mix)], seed0 + n
        try:
            if kind == "good":
                answer = _ask(client(), Ask(seed, f"s{n}"), steps)
                with lock:
                    answers.append(answer)
            elif kind == "bad":
                inputs, words = SOAK_BAD[(n // len(mix)) % len(SOAK_BAD)]
                r = raw.run(client().session_hash, **{"seed": seed, "steps": steps, **inputs})  # one of the clients
                ok = (r["http"] == 200 and not r["success"] and isinstance(r["error"], str)
                      and words in r["error"] and GENERIC_ERROR not in r["error"])
                with lock:
                    named += ok
                    if not ok:
                        problems.append(f"request {n} ({sorted(inputs)}): {str(r['error'])[:160]!r} does not name "
                                        f"{words!r}")
            elif kind == "stop":
                job = client().submit(steps=30, seed=seed, text=f"stopped {n}", api_name="/generate")
                deadline = time.monotonic() + 120
                while not job.outputs() and not job.done():
                    if time.monotonic() > deadline:
                        raise TimeoutError("no preview within 120 s")
                    time.sleep(0.05)
                job.cancel()
                with lock:
                    stopped += 1
            else:  # a client that goes away: whoever comes next is a new session
                raw.start_and_leave(steps=30, seed=seed, text=f"left {n}", seg=None, sketch=None)
                with lock:
                    left += 1
        except Exception as e:  # noqa: BLE001 - counted and reported
            with lock:
                problems.append(f"request {n} ({kind}): {type(e).__name__}: {str(e)[:160]}")
        with lock:
            kinds[kind] += 1

    start = time.perf_counter()
    rss: dict[int, int] = {}
    with ThreadPoolExecutor(clients) as pool:
        raw = Raw(url, connect())
        for batch in range(0, total, every):
            list(pool.map(one, range(batch, min(batch + every, total))))
            sent = min(batch + every, total)
            if pid:
                rss[sent] = rss_kib(pid)
            if verbose:
                print(f"{sent} requests, {time.perf_counter() - start:.0f} s"
                      + (f", RSS {rss[sent] / 1024:.1f} MiB" if pid else ""), flush=True)
    seconds = time.perf_counter() - start
    idle = busy_cpu(pid, 2.0) / 2.0 if pid else None
    good = [a for a in answers if a.image is not None]
    problems += check(answers) + [f"seed {a.ask.seed}: {a.error}" for a in answers if a.error and not a.refused]
    if idle is not None and idle > 0.3:
        problems.append(f"the server still uses {idle:.0%} of a core after the soak: a stopped run goes on")
    report = SoakReport(sent=sum(kinds.values()), clients=clients, kinds=kinds, completed=len(good),
                        refused=sum(a.refused for a in answers), named=named, stopped=stopped, left=left,
                        rss_kib=rss, seconds=seconds, idle_cpu=idle, problems=problems)
    if verbose:
        print(report.summary(), flush=True)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running studio (default: start `python app.py` on a free port)")
    ap.add_argument("--pid", type=int, help="the server's process id, for its memory (with --url)")
    ap.add_argument("--clients", type=int, default=20, help="clients sending at once (default 20)")
    ap.add_argument("--per-client", type=int, default=3,
                    help="requests each client sends one after another in a round (default 3)")
    ap.add_argument("--total", type=int, default=100, help="requests in all, warm-up included (default 100)")
    ap.add_argument("--warmup", type=int, default=10,
                    help="requests sent at once before the rounds; the RSS is read after them (default 10)")
    ap.add_argument("--steps", type=int, default=2, help="denoising steps per request (default 2)")
    ap.add_argument("--soak", type=int, metavar="N",
                    help="instead: the soak, N requests of mixed kinds (good, bad, stopped, abandoned; SOAK_MIX) "
                         "from --clients clients, the RSS read every --every requests")
    ap.add_argument("--every", type=int, default=100, help="with --soak: read the RSS every this many requests")
    args = ap.parse_args(argv)
    if args.soak:
        test = (lambda url, pid: soak(url, pid, clients=args.clients, total=args.soak, every=args.every,
                                      steps=args.steps))
    else:
        test = (lambda url, pid: run(url, pid, clients=args.clients, per_client=args.per_client, total=args.total,
                                     warmup=args.warmup, steps=args.steps))
    if args.url:
        report = test(args.url, args.pid)
    else:
        sys.path.insert(0, str(ROOT / "scripts"))
        from media import serve

        with serve() as url:
            report = test(url, url.pid)
            errors = [line for line in url.log().splitlines() if "Traceback" in line or "ERROR:" in line]
            report.problems += [f"server log: {line}" for line in errors[:5]]
            if errors:
                print("\n".join(f"problem: server log: {line}" for line in errors[:5]))
    return 0 if getattr(report, "failed", 0) == 0 and not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
