import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def sd15_folders(tmp_path_factory):
    """Tiny random networks of the sd15 and sd15-dit worlds in local folders, written once (tests/tiny_sd15.py)."""
    from tiny_sd15 import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("pretrained"))


@pytest.fixture(scope="module")
def url():
    """`python app.py` on a free port, one per test module that asks for it (scripts/media.serve)."""
    from scripts.media import serve

    with serve() as u:
        yield u


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright, one per test module (scripts/media.chromium)."""
    from scripts.media import chromium

    with chromium() as b:
        yield b
