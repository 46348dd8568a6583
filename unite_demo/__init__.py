"""Unite & Conquer: experts trained apart, combined at every denoising step.

The folders are the layers, each importing only the ones before it:

    limits.py                  the one table of limits and defaults
    method/                    the paper's method: the denoiser signature, the formula, samplers, engines
    worlds/                    bundles of experts: the built-in cartoon-faces world (its data, network,
                               training and evaluation) and the pretrained SD 1.5 worlds
    studio/                    the page's values -> runs -> display-ready updates (no UI toolkit)
    generate.py, train.py, evaluate.py, recipe.py, bench.py, bench_sd15.py
                               the command lines (python -m unite_demo.NAME)
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository: assets/ and reports/ live here
