"""The catalogue of worlds (unite_demo.worlds.registry.catalogue): every world there is, which are
available here and what brings the others, the World menu's choices made from it, and one message
for a world that needs weights on the page, from the API and on the command line. The pretrained
worlds are configured with the tiny random networks of tests/tiny_sd15.py (conftest's `sd15_folders`)
or left unconfigured, with an empty Hugging Face cache; nothing is loaded to find out."""

import pytest

from helpers import WORLDS, run
from unite_demo import generate
from unite_demo.studio.studio import Studio
from unite_demo.worlds import pretrained as sd15
from unite_demo.worlds import registry as worlds
from unite_demo.worlds.conditions import ConditionError
from unite_demo.worlds.faces.world import BUILTIN
from unite_demo.worlds.pretrained import PretrainedConfig

from tiny_sd15 import SIZE

SD15_HOW = ("set UNITE_DOWNLOAD=1 (about 6 GB, downloaded on first use) or point UNITE_SD15, "
            "UNITE_CONTROLNET_SCRIBBLE, UNITE_CONTROLNET_SEG at local folders (docs/pretrained-worlds.md)")
NEEDS_SD15 = f"world 'sd15' needs weights: {SD15_HOW}; available here: {BUILTIN}"


@pytest.fixture
def unconfigured(monkeypatch, tmp_path):
    """No UNITE_* variable set, and nothing in the Hugging Face cache (the default hub ids are not there)."""
    import huggingface_hub

    for var, _ in sd15.ENV.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    return monkeypatch


@pytest.fixture
def configured(unconfigured, sd15_folders):
    """The UNITE_* variables point at the tiny networks."""
    config = PretrainedConfig(sd15=str(sd15_folders["sd15"]), scribble=str(sd15_folders["scribble"]),
                              seg=str(sd15_folders["seg"]), dit=str(sd15_folders["dit"]), image_size=SIZE,
                              device="cpu")
    for var, value in config.env().items():
        unconfigured.setenv(var, value)
    return unconfigured


def test_unconfigured_the_catalogue_lists_the_pretrained_worlds_as_needing_weights(unconfigured):
    entries = worlds.catalogue()
    assert [e.name for e in entries] == worlds.names() == [BUILTIN, "sd15", "sd15-dit"]
    assert [e.status for e in entries] == [worlds.AVAILABLE, worlds.NEEDS_WEIGHTS, worlds.NEEDS_WEIGHTS]
    assert [e.name for e in entries if e.available] == worlds.available() == [BUILTIN]
    faces, sd, dit = entries
    assert (faces.label, faces.how) == (BUILTIN, "")
    assert sd.label == "sd15 · Stable Diffusion 1.5 + ControlNets (needs weights)" and sd.how == SD15_HOW
    assert dit.label == "sd15-dit · Stable Diffusion 1.5 + ControlNets + DiT (needs weights)"
    assert dit.how.startswith(SD15_HOW.removesuffix(" (docs/pretrained-worlds.md)") + "; and point UNITE_DIT at "
                              "facebook/DiT-XL-2-512 converted once to safetensors by "
                              "`python scripts/convert_to_safetensors.py`")
    # The World menu: every world, the ones that need weights marked; the value is the name either way.
    assert Studio(WORLDS).world_choices() == [(BUILTIN, BUILTIN), (sd.label, "sd15"), (dit.label, "sd15-dit")]


def test_a_world_that_needs_weights_says_so_in_the_same_words_on_the_page_the_api_and_the_cli(unconfigured,
                                                                                              tmp_path, capsys):
    studio = Studio(WORLDS)
    with pytest.raises(worlds.NeedsWeights) as checked:
        studio.check_world("sd15")  # what the page asks when the menu changes: nothing is loaded
    assert str(checked.value) == NEEDS_SD15
    for ask in (lambda: studio.page("sd15"), lambda: next(run("sd15", text="a cat"))):  # the page, /generate
        with pytest.raises(ConditionError) as e:
            ask()
        assert str(e.value) == NEEDS_SD15
    assert generate.main(["--world", "sd15", "--text", "a cat", "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {NEEDS_SD15}"]
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(FileNotFoundError):  # NeedsWeights is also what loading raised before (WeightsMissing)
        worlds.load("sd15-dit")
    studio.check_world(BUILTIN)  # available: nothing said


def test_an_unknown_world_still_lists_every_world(unconfigured, tmp_path, capsys):
    with pytest.raises(ConditionError, match=r"^world: unknown world 'mars'; accepted: cartoon-faces, sd15, "
                                             r"sd15-dit$"):
        Studio(WORLDS).check_world("mars")
    with pytest.raises(ConditionError, match=r"^world: unknown world None; accepted: "):
        next(run(None, text="a cat"))
    assert generate.main(["--world", "mars", "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown world 'mars'; accepted: cartoon-faces, sd15, sd15-dit"


def test_configured_with_the_tiny_folders_every_world_is_available_and_listed_plainly(configured):
    entries = worlds.catalogue()
    assert [(e.name, e.status, e.how) for e in entries] == [(n, worlds.AVAILABLE, "") for n in worlds.names()]
    assert worlds.available() == worlds.names()
    assert Studio(WORLDS).world_choices() == [(n, n) for n in worlds.names()]
    for name in worlds.names():
        Studio(WORLDS).check_world(name)  # nothing said, nothing loaded
    assert "sd15" not in WORLDS._worlds


def test_what_one_world_lacks_is_named_and_the_others_stay_available(configured, sd15_folders, tmp_path):
    configured.setenv("UNITE_DIT", str(tmp_path / "nowhere" / "dit"))  # sd15 complete, DiT absent
    entries = {e.name: e for e in worlds.catalogue()}
    assert entries["sd15"].available and not entries["sd15-dit"].available
    message = ("world 'sd15-dit' needs weights: point UNITE_DIT at facebook/DiT-XL-2-512 converted once to "
               "safetensors by `python scripts/convert_to_safetensors.py` (docs/pretrained-worlds.md); "
               "now UNITE_DIT: no such folder; available here: cartoon-faces, sd15")
    with pytest.raises(worlds.NeedsWeights) as e:
        Studio(WORLDS).check_world("sd15-dit")
    assert str(e.value) == message and str(tmp_path) not in message  # the server's paths are not shown
    configured.setenv("UNITE_DIT", str(sd15_folders["dit"] / "transformer"))  # a folder, in the wrong layout
    assert "now UNITE_DIT: the folder has no transformer/config.json" in worlds.catalogue()[2].how


def test_a_bad_setting_is_named_instead(configured):
    configured.setenv("UNITE_SD15_SIZE", "500")
    entries = worlds.catalogue()
    assert [e.status for e in entries[1:]] == [worlds.BAD_SETTING] * 2
    assert entries[1].label == "sd15 · Stable Diffusion 1.5 + ControlNets (bad setting)"
    with pytest.raises(ConditionError, match=r"^world 'sd15' cannot be loaded: fix the setting: UNITE_SD15_SIZE "
                                             r"must be a multiple of 64 \(e.g. 512\), got 500; available here: "
                                             r"cartoon-faces$"):
        Studio(WORLDS).check_world("sd15")


def test_a_world_added_by_code_is_listed_as_available(unconfigured):
    unconfigured.setitem(worlds.LOADERS, "faces-dummy", lambda: WORLDS.get())
    assert worlds.catalogue()[-1] == worlds.WorldEntry("faces-dummy", "faces-dummy", worlds.AVAILABLE)
    assert Studio(WORLDS).world_choices()[-1] == ("faces-dummy", "faces-dummy")
