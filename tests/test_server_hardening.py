"""Hardening of the live server: `python app.py` on a free port (one server for the module, started
with app.py's own default address), driven through its real `/generate` endpoint with gradio_client
and raw HTTP. Over 200 odd inputs each get a message or a note that names the input and no server error; a
crowd of clients gets its own results with flat memory; Stop and a client that goes away free the
worker; nothing outside the app's files is served, uploads are capped, no share link, localhost only.
The in-process half (the same inputs straight into studio.run) is tests/test_hardening.py."""

import http.client
import io
import math
import os
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from helpers import editor_value, header_only_png, png_chunk
from unite_demo import limits
from unite_demo.limits import DEFAULTS
from unite_demo.worlds.conditions import MAX_SIDE, MAX_TEXT_CHARS, shown_number
from unite_demo.worlds.faces.data import PALETTE_RGB

from scripts import load_test
from scripts.load_test import busy_cpu, peak_rss_kib
from scripts.media import serve

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

UPLOAD_LIMIT = 10 * 1024 * 1024  # app.MAX_UPLOAD, "10mb"
GENERIC = "upstream Gradio app has raised an exception"  # gradio's words for an uncaught exception
SERVER_ERRORS = ("Traceback", "Exception in ASGI application", "ERROR:")


@pytest.fixture(scope="module")
def server():
    """app.py with no GRADIO_SERVER_NAME at all: the address it picks is its own default."""
    with serve(env={"GRADIO_SERVER_NAME": None}) as url:
        yield url


def connect(url) -> Client:
    # ssl_verify=False: plain http; otherwise gradio_client loads every CA certificate for each of its calls.
    return Client(url, verbose=False, ssl_verify=False)


@pytest.fixture(scope="module")
def client(server):
    return connect(server)


def file_data(path: str) -> dict:
    """A file as the server's own (already uploaded) file: what a raw caller can claim."""
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


@pytest.fixture(scope="module")
def raw(server, client):
    return load_test.Raw(server, client)


# ---------------------------------------------------------------------------------------------
# Files for the image inputs

def huge_png(path: Path, side: int) -> Path:
    """A complete, valid side x side grey PNG (all white), small on disk (its rows compress to
    nothing) but side*side*4 bytes once decoded to RGBA."""
    packer = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * side
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))
    return path


def face_map(size=128) -> np.ndarray:
    """Palette colours: a skin ellipse with eyes and a mouth on background, (size,size,3) uint8."""
    ids = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size] / size
    ids[((yy - 0.5) / 0.4) ** 2 + ((xx - 0.5) / 0.3) ** 2 < 1] = 1
    ids[(np.abs(yy - 0.42) < 0.04) & (np.abs(np.abs(xx - 0.5) - 0.12) < 0.05)] = 3
    ids[(np.abs(yy - 0.7) < 0.03) & (np.abs(xx - 0.5) < 0.12)] = 5
    return PALETTE_RGB[ids]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("uploads")
    f = {}

    def save(name, img, **kw):
        f[name] = d / name
        img.save(f[name], **kw)

    f["zero.png"] = d / "zero.png"
    f["zero.png"].write_bytes(b"")
    f["random.png"] = d / "random.png"
    f["random.png"].write_bytes(np.random.default_rng(0).bytes(4096))
    whole = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(whole, "PNG")
    f["truncated.png"] = d / "truncated.png"
    f["truncated.png"].write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    f["notes.txt"] = d / "notes.txt"
    f["notes.txt"].write_text("a text file, not an image\n")
    f["text-named.png"] = d / "text-named.png"
    f["text-named.png"].write_text("a text file with an image's name\n")
    f["huge.png"] = huge_png(d / "huge.png", 10_000)
    f["bomb.png"] = header_only_png(d / "bomb.png", 60_000, 60_000)
    f["wide.png"] = header_only_png(d / "wide.png", MAX_SIDE + 1, 1)
    face = face_map()
    strokes = np.full((128, 128), 255, np.uint8)
    strokes[30:100, 62:66] = 0
    strokes[60:64, 30:100] = 0
    save("one.png", Image.new("RGB", (1, 1), (255, 204, 153)))
    sixteen = (strokes.astype(np.uint16) * 257)
    save("16bit.png", Image.fromarray(sixteen))  # I;16
    save("cmyk.jpg", Image.fromarray(face).convert("CMYK"), quality=95)
    save("p-mode.png", Image.fromarray(face).convert("P", palette=Image.Palette.ADAPTIVE, colors=8))
    save("la.png", Image.merge("LA", [Image.fromarray(strokes), Image.new("L", (128, 128), 255)]))
    save("l.png", Image.fromarray(strokes))
    save("transparent.png", Image.new("RGBA", (128, 128), (0, 0, 0, 0)))
    save("white.png", Image.new("RGB", (256, 256), "white"))
    off = face.copy()
    off[:, :, 1] = np.clip(off[:, :, 1].astype(int) + 25, 0, 255)  # every colour 25 off the palette
    off[:20, :20] = (20, 200, 200)  # and a corner in a colour far from all of them
    save("off-palette.png", Image.fromarray(off))
    f["big-upload.png"] = d / "big-upload.png"
    f["big-upload.png"].write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(UPLOAD_LIMIT + 1024))
    return f


# ---------------------------------------------------------------------------------------------
# 1. Fuzz: over 200 bad inputs, one message each that names the input; valid odd inputs generate.

@dataclass
class Case:
    label: str
    inputs: dict
    names: str | None  # bad input: the words its message must contain; None: valid, must generate
    raw: bool = False  # not JSON (NaN, infinities) or a claim gradio_client would not send: plain HTTP
    check: str | None = None  # valid: words the progress line, the caption or the notes must contain


NUMBERS = {"seed": "seed", "steps": "steps", "guidance": "guidance", "r_seg": "reliability of seg",
           "r_sketch": "reliability of sketch", "r_text": "reliability of text", "r_class": "reliability of class"}
BAD_JSON_NUMBERS = ["abc", "", "1e999", "nan", "1,5", [1, 2], [], {"a": 1}, True, False]
# Finite, whole and out of range: set to the nearest end of the range, a note naming the input says so
# (the class expert's reliability is checked, then unused: this world has none).
OUT_OF_RANGE = [-1, 1e308, -1e308, 2**70, 10**400]
NOT_JSON = [math.nan, math.inf, -math.inf]
IMAGES = {"seg": "segmentation map", "sketch": "sketch"}


def clamped(name: str, v) -> str:
    """The note for a number out of its range (limits), e.g. "steps: 1e+308 is over the maximum 50; 50 is used"."""
    limit = {"seed": limits.SEED, "steps": limits.STEPS, "guidance": limits.GUIDANCE}.get(name, limits.RELIABILITY)
    end, side = (limit.high, "over the maximum") if v > limit.high else (limit.low, "under the minimum")
    return f"{NUMBERS[name]}: {shown_number(v)} is {side} {shown_number(end)}; {shown_number(end)} is used"


def fuzz_cases(files: dict[str, Path]) -> list[Case]:
    cases = []
    for name, words in NUMBERS.items():
        cases += [Case(f"{name}={v!r:.30}", {name: v}, words) for v in BAD_JSON_NUMBERS]
        cases += [Case(f"{name}={v!r}", {name: v}, words, raw=True) for v in NOT_JSON]
        cases += [Case(f"{name}={v!r:.30}", {name: v}, None, check=None if name == "r_class" else clamped(name, v))
                  for v in OUT_OF_RANGE]
        if name in ("seed", "steps"):
            cases.append(Case(f"{name}=-1e-9", {name: -1e-9}, words))  # not whole
        else:
            cases.append(Case(f"{name}=-1e-9", {name: -1e-9}, None, check=None if name == "r_class" else
                              f"{words}: -1e-09 is under the minimum 0; 0 is used"))
        if name == "seed":
            cases += [Case("seed=None", {"seed": None}, "seed"), Case("seed=1.5", {"seed": 1.5}, "seed")]
        else:  # None: the world's default, as in studio.run
            cases.append(Case(f"{name}=None", {name: None}, None))
    cases += [Case("steps=2.5", {"steps": 2.5}, "steps"),
              Case("steps=51", {"steps": 51}, None, check="steps: 51 is over the maximum 50; 50 is used"),
              Case("guidance=10.5", {"guidance": 10.5}, None,
                   check="guidance: 10.5 is over the maximum 10; 10 is used")]
    cases += [Case(f"{name}=3.01", {name: 3.01}, None, check=f"{NUMBERS[name]}: 3.01 is over the maximum 3; 3 is used")
              for name in ("r_seg", "r_sketch", "r_text")]
    for name, values in (("sampler", ["euler", "", None, 3, 2.5, True, [], ["dpmpp"], {"a": 1}, "DPMPP", "dpmpp "]),
                         ("world", ["mars", "", None, 3, True, [], {"a": 1}, "CARTOON-FACES", "../cartoon-faces"])):
        cases += [Case(f"{name}={v!r}", {name: v}, name) for v in values]
    cases += [Case(f"text={v!r:.30}", {"text": v}, "text") for v in [5, 1.5, True, [], ["a caption"], {"a": "b"}]]
    cases += [Case("text=100,000 characters", {"text": "red hair " * 11_111 + "x"}, None,
                   check="text: 100,000 characters; the first 1,000 are read"),
              Case(f"text={MAX_TEXT_CHARS + 1} characters", {"text": "a" + "x" * MAX_TEXT_CHARS}, None,
                   check=f"text: {MAX_TEXT_CHARS + 1:,} characters; the first {MAX_TEXT_CHARS:,} are read")]
    cases += [Case(f"class_name={v!r}", {"class_name": v}, "class") for v in ["goldfish", 7, [1], {"a": 1}]]
    for field, words in IMAGES.items():
        for name in ("zero.png", "random.png", "truncated.png", "notes.txt", "text-named.png", "huge.png",
                     "bomb.png", "wide.png"):
            cases.append(Case(f"{field}={name}", {field: editor_value(files[name])}, words))
        cases += [Case(f"{field}={v!r}", {field: v}, words) for v in ["a.png", 5, [1, 2], True]]
        cases.append(Case(f"{field}=junk layers", {field: {"background": None, "layers": [5], "composite": None,
                                                           "id": None}}, words))
        for path in ("/etc/passwd", str(ROOT / "app.py"), "../../../../etc/passwd", "/tmp/../etc/hostname",
                     "http://127.0.0.1:9/x.png"):
            claimed = {"background": file_data(path), "layers": [], "composite": file_data(path), "id": None}
            cases.append(Case(f"{field}=server file {path}", {field: claimed}, words, raw=True))
    # Valid, however odd: they must generate.
    cases += [Case("text=Chinese", {"text": "一个微笑的人，红色短发，戴眼镜"}, None,
                   check='the text expert did not understand: "一个微笑的人，红色短发，戴眼镜"'),
              Case("text=Arabic", {"text": "شخص مبتسم بشعر أحمر قصير"}, None,
                   check='the text expert did not understand: "شخص مبتسم بشعر أحمر قصير"'),
              Case("text=emoji", {"text": "a smiling person 😀 with glasses 👓 and red hair 🎨"}, None,
                   check="😀"),
              Case("text=control characters", {"text": "a face\x00 with\x1b[31m red\x07 hair\x7f"}, None,
                   check="a face with"),
              Case("text=only control characters", {"text": "\x00\x01\x02\t\n"}, None, check="the text expert is off"),
              Case("text=None", {"text": None}, None, check="caption is empty"),
              Case(f"text={MAX_TEXT_CHARS} characters", {"text": "a" * MAX_TEXT_CHARS}, None)]
    seg_took = f"segmentation x{DEFAULTS['reliability']['seg']:g}"  # the expert took it, at its default r
    sketch_took = f"sketch x{DEFAULTS['reliability']['sketch']:g}"
    for name, seg_note, sketch_note in (
            ("one.png", seg_took, None), ("16bit.png", None, sketch_took),
            ("cmyk.jpg", seg_took, None), ("p-mode.png", seg_took, None),
            ("la.png", None, sketch_took), ("l.png", None, sketch_took),
            ("transparent.png", "segmentation map is blank", "sketch canvas is empty"),
            ("white.png", None, "sketch is empty"), ("off-palette.png", seg_took, None)):
        cases.append(Case(f"seg={name}", {"seg": editor_value(files[name])}, None, check=seg_note))
        cases.append(Case(f"sketch={name}", {"sketch": editor_value(files[name])}, None, check=sketch_note))
    return cases


def readable(message) -> bool:
    return (isinstance(message, str) and message.strip() not in ("", "None", "Error", "null")
            and GENERIC not in message)


def test_fuzz_bad_inputs_get_a_message_naming_them_and_the_server_lives_on(server, client, raw, files):
    cases = fuzz_cases(files)
    bad = [c for c in cases if c.names is not None]
    assert len(bad) >= 150 and len(cases) >= 200
    log_start = len(server.log())
    base = {"seg": None, "sketch": None, "steps": 2, "text": "a person with red hair"}

    # The 10000 x 10000 PNG first, alone: refused from its header, so the server's memory never holds
    # its pixels (decoded to RGBA they take 400 MB; the server's peak RSS may not move by a quarter of that).
    Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # the peak RSS starts again from the RSS now
    peak = peak_rss_kib(server.pid)
    for field, words in IMAGES.items():
        with pytest.raises(AppError, match=rf"^{words}: the image is 10000x10000; at most {MAX_SIDE}x{MAX_SIDE}"):
            client.predict(**{**base, field: editor_value(files["huge.png"])}, api_name="/generate")
    assert peak_rss_kib(server.pid) - peak < 100 * 1024

    local = threading.local()
    seeds = iter(range(70_000, 80_000))

    def send(case: Case) -> tuple[Case, dict]:
        inputs = {**base, "seed": next(seeds), **case.inputs}
        if case.raw:
            return case, raw.run(**inputs)
        if not hasattr(local, "client"):
            local.client = connect(server)
        try:
            out = local.client.predict(**inputs, api_name="/generate")
            return case, {"http": 200, "success": True, "error": None, "output": out}
        except AppError as e:
            return case, {"http": 200, "success": False, "error": str(e), "output": None}
        except Exception as e:  # noqa: BLE001 - reported below
            return case, {"http": None, "success": False, "error": f"{type(e).__name__}: {e}", "output": None}

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(send, cases))

    problems = []
    for case, r in results:
        if r["http"] != 200:
            problems.append(f"{case.label}: HTTP {r['http']}: {str(r['error'])[:200]}")
        elif case.names is not None:
            if r["success"]:
                problems.append(f"{case.label}: accepted, expected a message naming {case.names!r}")
            elif not readable(r["error"]) or case.names not in r["error"]:
                problems.append(f"{case.label}: message {str(r['error'])[:200]!r} does not name {case.names!r}")
        else:
            if not r["success"]:
                problems.append(f"{case.label}: valid input refused: {str(r['error'])[:200]}")
                continue
            image, status, _, _, caption, *_, notes, _conflict = r["output"]  # runs.outputs
            if "done" not in status or Image.open(image).size != (256, 256):
                problems.append(f"{case.label}: no final image ({status!r})")
            if case.check and case.check not in status + caption + notes:
                problems.append(f"{case.label}: {case.check!r} not in {status + caption + notes!r}")
            if "\x00" in caption or "\x1b" in caption:
                problems.append(f"{case.label}: control characters came back: {caption!r}")
    assert not problems, f"{len(problems)} of {len(cases)} inputs:\n" + "\n".join(problems)

    image, status, *_ = client.predict(steps=2, seed=7, api_name="/generate")  # a good request afterwards
    assert "step 2 / 2" in status and "done" in status
    log = server.log()[log_start:]
    assert not any(marker in log for marker in SERVER_ERRORS), log[-3000:]


# ---------------------------------------------------------------------------------------------
# 3. Faults: Stop and a client that goes away free the worker within about a step.

def short_run(client, seed: int) -> float:
    start = time.perf_counter()
    _, status, *_ = client.predict(steps=2, seed=seed, text=f"a short run {seed}", seg=None, sketch=None,
                                   api_name="/generate")
    assert "done in" in status  # computed, not replayed from the cache
    return time.perf_counter() - start


def test_cancelling_two_long_runs_frees_both_workers_at_once(server, client):
    short = short_run(client, 81_000)
    long_clients = [connect(server) for _ in range(2)]  # the queue runs 2 at a time: both workers taken
    jobs = [c.submit(steps=50, seed=81_100 + i, text=f"a long run {i}", seg=None, sketch=None, api_name="/generate")
            for i, c in enumerate(long_clients)]
    deadline = time.monotonic() + 60
    while not all(len(j.outputs()) >= 1 for j in jobs):  # both are running (a preview each)
        assert time.monotonic() < deadline, "the long runs never started"
        time.sleep(0.05)
    running = busy_cpu(server.pid, 0.5)
    for job in jobs:
        job.cancel()
    after_cancel = short_run(client, 81_001)
    assert after_cancel < max(3 * short, short + 2.0), (short, after_cancel)  # not after ~10 s of long runs
    idle = busy_cpu(server.pid, 1.5)
    print(f"short run {short:.2f} s; after cancelling two 50-step runs {after_cancel:.2f} s; server CPU "
          f"{running / 0.5:.0%} while they ran, {idle / 1.5:.0%} after")
    assert running > 0.3 and idle < 0.45, (running, idle)  # the cancelled runs are not sampling on
    seen = [len(j.outputs()) for j in jobs]
    time.sleep(0.5)
    assert [len(j.outputs()) for j in jobs] == seen and all(len(j.outputs()) < 50 for j in jobs)


def test_a_client_that_disconnects_mid_run_does_not_leave_its_run_going(server, client, raw):
    short = short_run(client, 82_000)
    for i in range(2):  # both workers
        raw.start_and_leave(steps=50, seed=82_100 + i, text=f"left behind {i}", seg=None, sketch=None)
    time.sleep(0.3)
    idle = busy_cpu(server.pid, 1.5)
    after = short_run(client, 82_001)
    print(f"short run {short:.2f} s; after two clients left mid-run {after:.2f} s; server CPU {idle / 1.5:.0%} after")
    assert idle < 0.45, idle  # nothing sampling for the clients that left
    assert after < max(3 * short, short + 2.0), (short, after)
    assert not any(marker in server.log() for marker in SERVER_ERRORS)


# ---------------------------------------------------------------------------------------------
# 2. Load: 20 clients x 3 requests at once, each its own result, memory flat.

def test_twenty_clients_at_once_each_get_their_own_images_and_memory_stays_flat(server, capsys):
    with capsys.disabled():  # the figures are shown with every run
        print()
        report = load_test.run(server, server.pid, clients=20, per_client=3, total=100, warmup=10, steps=2,
                               seed0=90_000)
    assert report.sent == 100
    assert report.completed + report.refused == report.sent and report.failed == 0, report.summary()
    assert all("queue is full" in a.error.lower() for a in report.answers if a.refused)
    assert report.completed >= 60  # 20 clients wait in a queue of 32: none should be refused at all
    assert not report.problems, report.summary()
    asked = Counter(a.ask for a in report.answers)
    assert sorted(asked.values()) == [1] * 80 + [2] * 10  # 10 pairs of clients sent one identical request
    assert abs(report.growth_pct) < 10, report.summary()
    assert not any(marker in server.log() for marker in SERVER_ERRORS)


def test_a_short_soak_of_every_kind_loses_nothing_and_leaves_nothing_running(server, capsys):
    # The README's 500-request soak (scripts/load_test.py --soak 500 --clients 30), 60 requests long.
    with capsys.disabled():
        print()
        report = load_test.soak(server, server.pid, clients=10, total=60, every=30, steps=2, seed0=95_000)
    assert report.sent == 60 and report.kinds == {"good": 36, "bad": 12, "stop": 6, "leave": 6}
    assert report.completed + report.refused == 36 and report.named == 12, report.summary()
    assert report.stopped == 6 and report.left == 6 and report.idle_cpu < 0.3, report.summary()
    assert not report.problems, report.summary()
    assert not any(marker in server.log() for marker in SERVER_ERRORS)


# ---------------------------------------------------------------------------------------------
# 4. Security: files served, upload size, share link, address.

def get_as_is(url: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (no ../ folding by the client)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_nothing_outside_the_apps_own_files_is_served(server):
    source = (ROOT / "app.py").read_bytes()
    passwd = Path("/etc/passwd").read_bytes()
    paths = ["/gradio_api/file=/etc/passwd", "/gradio_api/file=%2Fetc%2Fpasswd",
             "/gradio_api/file=../../../../../../etc/passwd", "/gradio_api/file=..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
             "/gradio_api/file=/tmp/gradio/../../etc/passwd", "/gradio_api/file=/tmp/..%2Fetc/passwd",
             "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/file=/etc/passwd",
             "/static/../../../../etc/passwd", "/assets/../../../../etc/passwd",
             f"/gradio_api/file={ROOT / 'app.py'}", "/gradio_api/file=app.py", "/gradio_api/file=./app.py",
             "/gradio_api/file=unite_demo/worlds/conditions.py", "/static/../app.py", "/assets/../app.py",
             f"/gradio_api/file={ROOT / 'assets' / 'experts' / 'seg.safetensors'}",
             "/gradio_api/file=/proc/self/environ", "/gradio_api/file=/proc/self/cmdline"]
    for path in paths:
        status, body = get_as_is(server, path)
        assert status in (400, 403, 404), (path, status)
        assert b"root:" not in body and source[:200] not in body and passwd[:40] not in body, path
        assert status < 500
    status, _ = get_as_is(server, "/")
    assert status == 200


def test_uploads_over_the_limit_are_refused(server, client, files):
    big = files["big-upload.png"].read_bytes()
    r = httpx.post(server + "gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=60)
    assert r.status_code == 413 and str(UPLOAD_LIMIT) in r.text  # "... maximum allowed size of 10485760 bytes"
    r = httpx.post(server + "gradio_api/upload", files={"files": ("small.png", big[:1024], "image/png")}, timeout=60)
    assert r.status_code == 200
    assert httpx.get(server + "config").json()["max_file_size"] == UPLOAD_LIMIT  # clients learn it too
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        client.predict(sketch=editor_value(files["big-upload.png"]), steps=2, api_name="/generate")
    assert "done" in client.predict(steps=2, seed=8, api_name="/generate")[1]


def listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) of the sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def other_address() -> str | None:
    """An address of this machine that is not loopback, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_by_default_it_serves_this_machine_only_and_makes_no_share_link(server):
    port = urlsplit(server).port
    assert listening(port) == {"0100007F"}  # 127.0.0.1, nothing on 0.0.0.0 or ::
    address = other_address()
    if address is not None:  # reachable from the machine's own network address? It must not be.
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=3).close()
    log = server.log()
    assert f"Running on local URL:  http://127.0.0.1:{port}" in log
    assert "gradio.live" not in log and "public URL" not in log
    config = httpx.get(server + "config").json()
    assert not config.get("share_url")


def test_gradio_server_name_says_where_else_to_serve():
    with serve(env={"GRADIO_SERVER_NAME": "127.0.0.2"}) as url:  # another loopback address: still private
        port = urlsplit(url).port
        assert url.startswith("http://127.0.0.2:") and listening(port) == {"0200007F"}
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=3).close()
        assert httpx.get(url).status_code == 200
        assert not httpx.get(url + "config").json().get("share_url") and "gradio.live" not in url.log()
