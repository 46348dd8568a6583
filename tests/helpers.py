"""What several test files share: canvas values as the page and a client hand them over, PNG files
written chunk by chunk, and runs asked with /generate's names."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from gradio_client import handle_file

from unite_demo.studio.inputs import RunInputs, build_request
from unite_demo.studio.results import ResultCache
from unite_demo.studio.studio import LoadedWorlds, Studio
from unite_demo.worlds.faces.world import BUILTIN

WORLDS = LoadedWorlds()  # one per test process: every world is loaded and warmed up once


def editor(composite, background=None) -> dict:
    """The value gr.ImageEditor hands to the function (type='numpy', image_mode='RGBA'), or a canvas
    value with an image (or a file path) per field."""
    return {"background": composite if background is None else background, "layers": [], "composite": composite}


def editor_value(path) -> dict:
    """How a client hands an image to a canvas input (gr.ImageEditor / gr.Sketchpad)."""
    return {"background": handle_file(str(path)), "layers": [], "composite": handle_file(str(path)), "id": None}


def rgba(rgb: np.ndarray, alpha=255) -> np.ndarray:
    return np.dstack([rgb, np.full(rgb.shape[:2], alpha, np.uint8)])


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def header_only_png(path: Path, w: int, h: int) -> Path:
    """A PNG that claims w x h pixels and carries almost none: decoding it whole would take w*h*4
    bytes; reading its header takes microseconds."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
                     + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))
    return path


def run_inputs(world=BUILTIN, **widgets) -> RunInputs:
    """A run's inputs asked with /generate's parameter names (left out: the world's default)."""
    return RunInputs.from_params({"world": world, **widgets})


def request(world, **widgets):
    """The validated Request of a run asked with /generate's names, for a loaded world."""
    return build_request(world, run_inputs(world.name, **widgets))


def run(world_name=BUILTIN, *, cache=None, tickets=None, live=False, session=None, **widgets):
    """A run's updates from a studio with its own cache (and tickets) over the shared loaded worlds."""
    studio = Studio(WORLDS, cache if cache is not None else ResultCache(), tickets)
    return studio.run(run_inputs(world_name, **widgets), live=live, session=session)
