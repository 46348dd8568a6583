"""The one table of limits and defaults. The conditions validate with it, the page's widgets take
their ranges from it, and the API and the command line accept exactly what it says: a finite number
outside a range is set to the range's nearest end, and the run's notes say so."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """The closed range an input accepts; `step` is the page's slider step."""

    low: float
    high: float
    step: float
    whole: bool = False  # whole numbers only


STEPS = Range(1, 50, 1, whole=True)  # denoising steps of one run
GUIDANCE = Range(0.0, 10.0, 0.1)  # the guidance scale s
RELIABILITY = Range(0.0, 3.0, 0.05)  # every modality's r_i
SEED = Range(0, 2**32 - 1, 1, whole=True)
MAX_SAMPLER_STEPS = 200  # what sampler.sample takes from code (evaluation, benchmarks), beyond a run's STEPS

MAX_TEXT_CHARS = 1000  # a caption, after control characters and extra spaces are dropped (longer: cut, with a note)
MAX_SIDE = 4096  # an image's larger side; larger images are refused from their header, before decoding
MAX_UPLOAD = "10mb"  # the server refuses larger uploads (HTTP 413) before anything reads them
CONCURRENT_RUNS = 2  # generations the server runs at once (its queue holds more)

# What a run shows: the product alone; each active expert alone beside the product; or one modality's
# reliability swept over SWEEP_VALUES (the others as set), all from the same noise.
VIEWS = ("product", "experts", "sweep")
SWEEP_VALUES = (0.0, 0.5, 1.0, 2.0, 3.0)
MAX_SWEEP_VALUES = 8  # a reliability strip's images at most (the value as set included)

CANVAS = 256  # side of the sketch canvas and the segmentation painter, in canvas pixels
RESULT_SIZE = 256  # the final result, upscaled bicubic from the world's image
PREVIEW_SIZE = 128  # the previews on the way: a quarter of the pixels, so each one encodes and travels fast
CONDITION_SIZE = 128  # the conditions as the experts received them, upscaled nearest
PHOTO_EDGE_SIZE = 128  # photos are edge-detected at this side, then reduced like any drawing

# Defaults of the built-in world. The reliabilities come from the evaluation's sweep
# (`python -m unite_demo.evaluate`, docs/evaluation.md): the point with the highest mean of the three consistencies.
# The guidance remedy (combine.REMEDIES) and the steps and sampler come from the evaluation's
# comparisons (docs/evaluation.md, "How the defaults were chosen").
DEFAULTS = {"guidance": 2.0, "steps": 8, "seed": 0, "sampler": "unipc",
            "reliability": {"seg": 2.0, "sketch": 1.0, "text": 2.0}, "remedy": "interval"}
# The pretrained worlds' own. The prompt's guidance is s * r_text = 7.5 by default, SD 1.5's usual
# classifier-free guidance scale for one prompt; the ControlNets and the DiT class at r = 1. With
# UNITE_SPATIAL_PROMPT=1 the ControlNet rows read the prompt too, so its guidance adds up over the
# active experts: 0.5 each gives 7.5 with all three on.
SD_DEFAULTS = {"guidance": 5.0, "steps": 25, "reliability": {"text": 1.5, "seg": 1.0, "sketch": 1.0, "class": 1.0}}
SD_SPATIAL_PROMPT_RELIABILITY = {"text": 0.5, "seg": 0.5, "sketch": 0.5, "class": 1.0}
