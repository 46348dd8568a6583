"""Time the studio as a person sees it: in headless Chromium, from pressing Run to the first preview
shown and to the final image shown, with the default settings (example 0, 8 UniPC steps).

    python scripts/measure_ui.py [--runs 3] [--compare KEY=VALUE] [--compare-superres] [--explain] [--maps]

Run 1 uses the default seed on a freshly started server; later runs take new seeds (nothing cached);
a last run repeats run 1's request (served from the result cache). Targets on a 2-core CPU:
first preview <= 0.3 s, final <= 1.5 s. Each run's server time (its progress line's "done in") is
subtracted from the final time to give the page's share: sending the frames, the browser fetching
and drawing them. --compare measures a second server started with that
environment variable set (e.g. UNITE_TORCH_THREADS=2), in the same invocation; --compare-superres
measures the same server again with the final-image stage switched off in the page; --explain measures
it again showing each expert alone beside the product (three experts: a strip of four), to the final
strip on screen, and prints its ratio to the normal run (target: at most 2.5x); --maps measures it again
with reliability maps painted and a step window, and prints its server time's ratio (target: at most 1.1x).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from media import VIEWPORT, StudioPage, chromium, serve  # noqa: E402

from unite_demo.limits import RESULT_SIZE  # noqa: E402
from unite_demo.studio.strips import GAP  # noqa: E402

TARGETS = {"first_preview_s": 0.3, "final_s": 1.5}
MAPS_TARGET = 1.10  # a run with reliability maps and a window, its server time as a multiple of a normal run's
EXPLAIN_TARGET = 2.5  # the explain view's final strip, as a multiple of a normal run's final image
STRIP_OF_FOUR = 4 * RESULT_SIZE + 3 * GAP  # the final strip's width: three experts alone and their product


def server_seconds(status: str) -> float | None:
    """The run's own time on the server, from its progress line ("... done in 1.43 s")."""
    found = re.search(r"done in ([0-9.]+) s", status)
    return float(found.group(1)) if found else None


def measure(url: str, runs: int, superres: bool = True, explain: bool = False, maps: bool = False) -> dict:
    strip = STRIP_OF_FOUR if explain else None
    with chromium() as browser:
        page = StudioPage(browser.new_page(viewport=VIEWPORT), url).open()
        if maps:  # where each is heard: the seg and sketch maps painted out in a quarter, the sketch's first 60%
            for modality, (lo, hi) in (("seg", (0.0, 0.5)), ("sketch", (0.5, 1.0))):
                page.open_where(modality)
                page.paint_out(modality, lo, hi)
            handle = page.page.locator("#sketch-window input.range-hi")
            handle.focus()
            for _ in range(8):
                handle.press("ArrowLeft")
            page.page.wait_for_timeout(500)
        if not superres:  # the final image as the model makes it, without the final-image stage
            page.page.locator("#superres input").uncheck()
            page.page.wait_for_timeout(300)
        if explain:
            page.show("each expert alone")
        fresh = []
        for k in range(runs):
            if k:
                page.set_number("seed", 1000 + k)
                page.page.wait_for_timeout(300)
            fresh.append(page.run_and_time(strip_width=strip))
        page.set_number("seed", 0)
        page.page.wait_for_timeout(300)
        cached = page.run_and_time(strip_width=strip)
    keys = [*TARGETS, *(("first_strip_s", "final_strip_s") if explain else ())]
    summary = {key: statistics.median(r[key] for r in fresh) for key in keys}
    for r in fresh:
        r["server_s"] = server_seconds(r["status"])
    if all(r["server_s"] is not None for r in fresh):
        summary["server_s"] = statistics.median(r["server_s"] for r in fresh)
        summary["page_share_s"] = statistics.median(r["final_s"] - r["server_s"] for r in fresh)
    return {"runs": fresh, "median": summary, "cached_repeat": cached, "targets": TARGETS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--url", help="measure a server already running here instead of starting one")
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    ap.add_argument("--compare", metavar="KEY=VALUE", help="also measure a server started with this variable set")
    ap.add_argument("--compare-superres", action="store_true", help="also measure with 'Sharpen the final image' "
                    "switched off, on the same server")
    ap.add_argument("--explain", action="store_true", help="also measure the explain view (each expert alone "
                    "beside the product), on the same server")
    ap.add_argument("--maps", action="store_true", help="also measure runs with reliability maps painted (seg, "
                    "sketch) and a step window (sketch), on the same server, and their server time's ratio")
    args = ap.parse_args(argv)
    if args.url:
        normal = measure(args.url, args.runs)
        report("server at " + args.url, normal, args.json)
        if args.explain:
            report_explain(normal, measure(args.url, args.runs, explain=True), args.json)
        if args.maps:
            report_maps(normal, measure(args.url, args.runs, maps=True), args.json)
        return 0
    variants = [("default", {})]
    if args.compare:
        key, _, value = args.compare.partition("=")
        variants.append((args.compare, {key: value}))
    for name, env in variants:
        with serve(env=env) as url:
            normal = measure(url, args.runs)
            report(name, normal, args.json)
            if args.explain:
                report_explain(normal, measure(url, args.runs, explain=True), args.json)
            if args.maps:
                report_maps(normal, measure(url, args.runs, maps=True), args.json)
            if args.compare_superres:
                report(f"{name}, final-image stage off", measure(url, args.runs, superres=False), args.json)
    return 0


def report(name: str, result: dict, as_json: bool) -> None:
    print(f"== {name}")
    if as_json:
        print(json.dumps(result, indent=1))
    for k, r in enumerate(result["runs"], start=1):
        print(f"run {k}: first preview {r['first_preview_s']:.2f} s, final {r['final_s']:.2f} s "
              f"({r['frames']} frames shown; {r['status'].splitlines()[0] if r['status'] else ''})")
    m, c = result["median"], result["cached_repeat"]
    print(f"median: first preview {m['first_preview_s']:.2f} s (target {TARGETS['first_preview_s']} s), "
          f"final {m['final_s']:.2f} s (target {TARGETS['final_s']} s)")
    if "server_s" in m:
        print(f"median: the server's own time {m['server_s']:.2f} s, the page's share {m['page_share_s']:.2f} s")
    print(f"repeat of run 1 (cached): first preview {c['first_preview_s']:.2f} s, final {c['final_s']:.2f} s")
    return 0


def report_explain(normal: dict, explain: dict, as_json: bool) -> None:
    """The explain view's runs, and its final strip's time as a multiple of the normal runs' final image."""
    print("== each expert alone beside the product (a strip of four)")
    if as_json:
        print(json.dumps(explain, indent=1))
    for k, r in enumerate(explain["runs"], start=1):
        print(f"run {k}: first strip {r['first_strip_s']:.2f} s, final strip {r['final_strip_s']:.2f} s "
              f"({r['strips']} strips shown; {r['status'].splitlines()[0] if r['status'] else ''})")
    m = explain["median"]
    ratio = m["final_strip_s"] / normal["median"]["final_s"]
    print(f"median: first strip {m['first_strip_s']:.2f} s, final strip {m['final_strip_s']:.2f} s, "
          f"{ratio:.2f}x the normal run's final image (target {EXPLAIN_TARGET}x)")
    c = explain["cached_repeat"]
    print(f"repeat of run 1 (cached): first strip {c['first_strip_s']:.2f} s, final strip {c['final_strip_s']:.2f} s")


def report_maps(normal: dict, maps: dict, as_json: bool) -> None:
    """The runs with maps and a window, and their server time as a multiple of the normal runs'."""
    report("reliability maps painted (seg, sketch) and a step window (sketch)", maps, as_json)
    a, b = normal["median"].get("server_s"), maps["median"].get("server_s")
    if a and b:
        print(f"median server time with maps: {b:.3f} s, {b / a:.3f}x the normal run's {a:.3f} s "
              f"(target {MAPS_TARGET}x)")


if __name__ == "__main__":
    sys.exit(main())
