"""The evaluation of reliability painted in space and time (unite_demo.worlds.faces.evaluation.spacetime):
the cases' inputs and maps, the fair choice of the best uniform point, the products it builds, the shared
starting noise, and a tiny run of the command line."""

import json

import numpy as np
import pytest
import torch

from unite_demo.worlds.faces.data import CLASS_NAMES
from unite_demo.worlds.faces.evaluation import spacetime as st
from unite_demo.worlds.faces.world import load_faces_world

SIZE = 32
HAIR = CLASS_NAMES.index("hair")


@pytest.fixture(scope="module")
def preps():
    return {key: s.prepare(3, SIZE) for key, s in st.SCENARIOS.items()}


@pytest.fixture(scope="module")
def world():
    return load_faces_world(superres_file=None)


def _far_from(region: np.ndarray, px: int) -> np.ndarray:
    return ~st.dilate(region, px)


def test_every_map_is_a_float32_image_in_0_1_at_the_world_size(preps):
    for key, prep in preps.items():
        scenario = st.SCENARIOS[key]
        assert len(prep.cases) == len(prep.inputs) == 3
        assert set(prep.maps) == {v.key for v in scenario.variants if not v.windows}, key
        for rows in prep.maps.values():
            assert len(rows) == 3
            for maps in rows:
                assert maps and set(maps) <= set(scenario.modalities)
                for m in maps.values():
                    assert m.shape == (SIZE, SIZE) and m.dtype == np.float32
                    assert m.min() >= 0 and m.max() <= 1 and 0 < m.mean() < 1


def test_the_face_sketch_keeps_only_face_strokes_and_is_heard_in_their_hull(preps):
    prep = preps["face_sketch"]
    for case, inputs, hull, maps in zip(prep.cases, prep.inputs, prep.regions["sketch"], prep.maps["sketch_hull"]):
        strokes = inputs["sketch"] > 127
        assert strokes.any() and set(inputs) == {"sketch", "text"}
        face = st.dilate(st.face_region(case.seg), 1)
        assert not (strokes & ~face).any()  # no stroke off the face: the hair outline is gone
        assert (maps["sketch"][hull] == 1).all() and (maps["sketch"][strokes] == 1).all()
        assert (maps["sketch"][_far_from(hull, 4)] < 0.01).all()
        assert "hair_colour" in case.mentioned and case.attributes["hair_style"] != "bald"


def test_the_face_map_has_no_hair_and_is_heard_where_painted(preps):
    prep = preps["face_map"]
    for case, inputs, area, maps in zip(prep.cases, prep.inputs, prep.regions["seg"], prep.maps["seg_painted"]):
        assert not (case.seg == HAIR).any()
        np.testing.assert_array_equal(inputs["seg"].ids, case.seg)
        painted = case.seg != 0
        assert painted.any() and (area >= painted).all()
        assert (maps["seg"][area] == 1).all()
        assert (maps["seg"][_far_from(area, 4)] < 0.01).all()


def test_two_faces_take_the_seg_map_and_the_sketch_from_different_cases_and_split_the_canvas(preps):
    prep = preps["two_faces"]
    for j, (case, inputs, maps) in enumerate(zip(prep.cases, prep.inputs, prep.maps["split"])):
        a, b = st._drawn(2 * j, SIZE), st._drawn(2 * j + 1, SIZE)
        np.testing.assert_array_equal(inputs["seg"].ids, a.seg)
        np.testing.assert_array_equal(inputs["sketch"], b.sketch)
        np.testing.assert_allclose(maps["seg"] + maps["sketch"], 1.0, atol=1e-6)
        assert (maps["sketch"][b.sketch > 127] == 1).all()
        sketch_side, seg_side = prep.regions["sketch"][j], prep.regions["seg"][j]
        assert not (sketch_side & seg_side).any() and (sketch_side | seg_side).all()


def test_stroke_hull_and_soft_map_on_a_drawn_square():
    strokes = np.zeros((SIZE, SIZE), np.uint8)
    strokes[10, 10:20] = strokes[19, 10:20] = strokes[10:20, 10] = strokes[10:20, 19] = 255
    hull = st.stroke_hull(strokes)
    assert hull[10:20, 10:20].all() and hull.sum() == 100
    m = st.soft_map(hull, 1, 1.0)
    assert (m[9:21, 9:21] == 1).all() and m[0, 0] == 0 and 0 < m[15, 21] < 1
    assert st.soft_map(hull).sum() == 100 and not st.stroke_hull(np.zeros((4, 4), np.uint8)).any()


def _point(score: float, spread: float = 0.0, per_seed=None) -> dict:
    return {"reliability": {}, "metrics": {"score": {"mean": score, "spread": spread,
                                                     "per_seed": per_seed or [score - spread, score + spread]}}}


def test_the_best_point_is_the_maximum_of_the_grid_ties_to_the_first():
    scores = [0.61, 0.70, 0.58, 0.72, 0.72, 0.69]
    assert st.best_point([_point(s) for s in scores]) == 3
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.uniform(size=25)
        assert st.best_point([_point(float(v)) for v in s]) == int(np.argmax(s))


def test_a_painted_setting_beats_uniform_only_beyond_both_seed_spreads():
    v = st.verdict(_point(0.72, 0.004, [0.716, 0.724, 0.72]), _point(0.70, 0.005, [0.695, 0.705, 0.70]))
    assert v["margin"] == pytest.approx(0.02) and v["seed_spread"] == pytest.approx(0.009)
    assert v["beats_beyond_spread"] and v["wins_every_seed"]
    close = st.verdict(_point(0.71, 0.006), _point(0.70, 0.005))
    assert not close["beats_beyond_spread"]
    assert not st.verdict(_point(0.69), _point(0.70))["beats_beyond_spread"]


def test_the_grid_varies_the_two_axes_and_keeps_the_others_at_the_default():
    points = st.grid_points(st.SCENARIOS["windows"], {"seg": 2.0, "sketch": 1.0, "text": 2.0}, (0.5, 3))
    assert points == [{"seg": a, "sketch": 1.0, "text": b} for a in (0.5, 3.0) for b in (0.5, 3.0)]


def test_the_products_carry_the_map_and_the_window_and_leave_out_what_a_case_does_not_give(world, preps):
    args = type("A", (), {"steps": 8, "sampler": "unipc", "guidance": 2.0})()
    face = st.SCENARIOS["face_sketch"]
    prep = preps["face_sketch"]
    rel = {"sketch": 2.0, "text": 3.0}
    plain = st.products(world, face, prep, rel, args)
    painted = st.products(world, face, prep, rel, args, face.variants[0])
    for k, (p, q) in enumerate(zip(plain, painted)):
        assert p.reliability == q.reliability == {"seg": 0.0, "sketch": 2.0, "text": 3.0}
        assert p.maps == {} and set(q.maps) == {"sketch"}
        np.testing.assert_array_equal(q.maps["sketch"].numpy(), prep.maps["sketch_hull"][k]["sketch"])
    windows = st.SCENARIOS["windows"]
    early = next(v for v in windows.variants if v.key == "text_early")
    (product,) = st.products(world, windows, st.Prepared(preps["windows"].cases[:1], preps["windows"].inputs[:1]),
                             {"seg": 2.0, "sketch": 1.0, "text": 2.0}, args, early)
    lo, hi = product.windows["text"]
    assert lo == 0.0 < hi < 1.0 and set(product.windows) == {"text"}  # from the first (noisiest) step, not the last


@pytest.mark.slow
def test_every_setting_starts_each_case_from_the_same_noise(world, preps):
    """A setting sampled alone or beside others gives the same images (the settings share the seed's first
    draw); a painted setting differs from its uniform one."""
    args = type("A", (), {"steps": 3, "sampler": "unipc", "guidance": 2.0, "batch": 200})()
    scenario, prep = st.SCENARIOS["two_faces"], preps["two_faces"]
    conds = st.case_conditions(scenario, prep)
    uniform = st.products(world, scenario, prep, {"seg": 2.0, "sketch": 2.0}, args)
    split = st.products(world, scenario, prep, {"seg": 2.0, "sketch": 2.0}, args, scenario.variants[0])
    alone = st.render(world, [uniform], conds, 0, args)[0]
    both = st.render(world, [split, uniform], conds, 0, args)
    assert alone.shape == (3, SIZE, SIZE, 3) and alone.dtype == np.uint8
    assert np.abs(both[1].astype(int) - alone.astype(int)).max() <= 1
    assert np.abs(both[0].astype(int) - alone.astype(int)).mean() > 5
    args.batch = 3  # one setting per sampler call: the same images again
    assert np.abs(st.render(world, [split, uniform], conds, 0, args)[1].astype(int) - alone.astype(int)).max() <= 1
    split_alone = st.render(world, [split], conds, 0, args)[0]
    torch.testing.assert_close(torch.from_numpy(both[0]), torch.from_numpy(split_alone), atol=1, rtol=0)


def test_the_measured_cases_are_not_the_ones_the_points_are_chosen_on():
    for key, scenario in st.SCENARIOS.items():
        choose, measure = scenario.prepare(3, SIZE, 0), scenario.prepare(3, SIZE, st.MEASURE_FROM)
        seeds = {c.seed for c in choose.cases}
        assert len(measure.cases) == 3 and not seeds & {c.seed for c in measure.cases}, key
        assert min(c.seed for c in measure.cases) >= st.MEASURE_FROM and max(seeds) < st.MEASURE_FROM


@pytest.mark.slow
def test_a_tiny_run_writes_the_json_the_report_and_the_figure(tmp_path):
    out = tmp_path / "reports"
    fig = tmp_path / "spacetime.png"
    results = st.main(["--n", "2", "--choose-n", "2", "--seeds", "0", "--grid", "1", "3", "--painted-grid", "2",
                       "--finalists", "2", "--cases", "windows", "two_faces", "--steps", "2", "--out", str(out),
                       "--figure", str(fig), "--quiet"])
    data = json.loads((out / "spacetime.json").read_text())
    assert set(data) == {"scenarios", "config", "hardware", "runtime_seconds", "command", "date"}
    assert set(data["scenarios"]) == {"windows", "two_faces"} and data["config"]["n"] == {"windows": 2, "two_faces": 2}
    for key, s in data["scenarios"].items():
        assert s["n"] == s["choose_n"] == 2 and set(s) >= {"uniform", "variants", "score", "axes", "title"}
        chosen = s["uniform"]["chosen_on"]
        assert len(chosen) == 4  # the whole uniform grid, scored on the choosing cases
        top = sorted(chosen, key=lambda g: -g["score"])[:2]
        finalists = s["uniform"]["finalists"]
        assert [f["reliability"] for f in finalists] == [g["reliability"] for g in top]
        assert s["uniform"]["best"] == max(finalists, key=lambda g: g["metrics"]["score"]["mean"])
        assert set(s["variants"]) == {v.key for v in st.SCENARIOS[key].variants}
        for v in s["variants"].values():
            assert len(v["chosen_on"]) == len(v["finalists"]) == 1 and v["best"]["reliability"][s["axes"][0]] == 2.0
            margin = v["best"]["metrics"]["score"]["mean"] - s["uniform"]["best"]["metrics"]["score"]["mean"]
            assert v["margin"] == pytest.approx(margin) and v["beats_beyond_spread"] == (margin > v["seed_spread"])
        for arm in (s["uniform"], *s["variants"].values()):
            for row in arm["finalists"]:
                m = row["metrics"]
                assert 0 <= m["score"]["mean"] <= 1 and m["score"]["spread"] == 0.0 and len(m["score"]["per_seed"]) == 1
    assert results["scenarios"]["windows"]["uniform"]["best"]["reliability"]["sketch"] == 1.0  # the default
    md = (out / "spacetime.md").read_text()
    assert "## windows" in md and "## two_faces" in md and "| windows (N = 2, chosen on 2) |" in md
    assert fig.stat().st_size > 10_000
