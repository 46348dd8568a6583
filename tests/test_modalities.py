"""A modality is declared once: a fourth, dummy modality with a dummy expert, added through its record
(worlds.modalities.register) and a world that has its expert, reaches the page's inputs, the API and
the command line, and its value reaches the expert."""

import dataclasses

import pytest
import torch
from gradio_client import Client

from helpers import WORLDS
from scripts.media import free_port
from unite_demo import generate
from unite_demo.method.experts import Expert
from unite_demo.studio import runs
from unite_demo.worlds import registry
from unite_demo.worlds.conditions import check_text
from unite_demo.worlds.modalities import MODALITIES, Modality

DIM = 4


def dummy_tensor(word: str, world) -> torch.Tensor:
    """A word -> a (1, DIM) vector that differs between words."""
    codes = [float(ord(ch)) / 128 for ch in word[:DIM]]
    return torch.tensor([codes + [0.0] * (DIM - len(codes))])


def read_word(given, world):
    word = check_text(given)
    return (word, None) if word else (None, "no word: the dummy expert is off")


DUMMY = Modality("dummy", "dummy word", "caption", read_word, read_word, dummy_tensor, lambda world: "hi",
                 describe=lambda word, world: f"the dummy expert heard {word!r}", default_reliability=0.5,
                 help="a word for the dummy expert", page_label="Dummy word")


class DummyExpert:
    """Reads the "dummy" condition and pushes eps a little by it; remembers every condition row it got."""

    def __init__(self, space: str):
        self.space, self.reads, self.seen = space, ("dummy",), []

    def __call__(self, x_t, alpha_bar, cond):
        rows = cond.get("dummy", x_t.new_zeros(x_t.shape[0], DIM))
        self.seen.extend(tuple(round(float(v), 4) for v in row) for row in rows)
        return x_t * 0.1 + rows.sum(-1).view(-1, 1, 1, 1) * 0.01


@pytest.fixture
def dummy_world(monkeypatch):
    """The built-in world plus a dummy expert, registered as the world 'faces-dummy'; the modality
    registered for the test only."""
    faces = WORLDS.get()
    expert = DummyExpert(faces.experts[0].denoiser.space)
    world = dataclasses.replace(faces, name="faces-dummy", experts=[*faces.experts, Expert("dummy", expert, ("dummy",))])
    monkeypatch.setitem(MODALITIES, "dummy", DUMMY)
    monkeypatch.setitem(registry.LOADERS, "faces-dummy", lambda: world)
    return world, expert


def heard(expert, word) -> bool:
    return tuple(round(float(v), 4) for v in dummy_tensor(word, None)[0]) in expert.seen


def test_the_registry_holds_the_built_in_modalities_once():
    assert list(MODALITIES)[:4] == ["seg", "sketch", "text", "class"]
    assert "dummy" not in MODALITIES and "dummy_view" not in runs.outputs()
    with pytest.raises(ValueError, match="widget 'dial'"):
        Modality("x", "x", "dial", read_word, read_word, dummy_tensor, lambda w: "")


def test_the_dummy_modality_reaches_the_command_line_and_its_expert(dummy_world, tmp_path, capsys):
    world, expert = dummy_world
    with pytest.raises(SystemExit):
        generate.main(["--help"])
    assert "--dummy DUMMY" in capsys.readouterr().out
    out = tmp_path / "x.png"
    assert generate.main(["--world", "faces-dummy", "--dummy", "wxyz", "--text", "a face", "--steps", "2",
                          "--no-superres", "--out", str(out)]) == 0
    assert out.exists() and heard(expert, "wxyz")
    req = world.request(dummy="abc", text="a face")
    assert req.values["dummy"] == "abc" and req.reliability["dummy"] == 0.5  # the record's default
    assert generate.main(["--dummy", "wxyz", "--out", str(out)]) == 2  # the built-in world has no dummy expert
    assert "dummy: this world has no dummy expert" in capsys.readouterr().err


@pytest.mark.slow
def test_the_dummy_modality_reaches_the_page_and_the_api(dummy_world):
    import app

    world, expert = dummy_world
    demo = app.build_page()
    params = [p["parameter_name"] for p in demo.get_api_info()["named_endpoints"]["/generate"]["parameters"]]
    assert params[:3] == ["seg", "sketch", "text"] and {"dummy", "dummy_on", "r_dummy"} <= set(params)
    assert {"map_dummy", "window_dummy"} <= set(params)  # where and when it is heard, optional as the others'
    assert app.build_page().get_api_info() == demo.get_api_info()  # a page built again asks the same
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"dummy-input", "dummy-on", "dummy-reliability", "caption", "seg-painter"} <= ids
    demo.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        result = client.predict(world="faces-dummy", dummy="quiz", text="a face", steps=2, api_name="/generate")
        conditions = result[runs.outputs().index("conditions")]
        assert "the dummy expert heard 'quiz'" in conditions and "dummy word x0.5" in conditions
        assert heard(expert, "quiz")
        off = client.predict(world="faces-dummy", dummy="quiz", dummy_on=False, text="a face", steps=2, seed=5,
                             api_name="/generate")
        assert "dummy word is switched off" in off[runs.outputs().index("notes")]
    finally:
        demo.close()
