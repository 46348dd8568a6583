"""The package's folders are its layers: each module imports only its own layer and the ones before it,
serving never imports training or evaluation code, and importing the page does no work."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "unite_demo"
LAYERS = ("limits", "method", "worlds", "studio", "cli")  # in order: each may import the ones before it
TRAINING_OR_EVALUATION = ("unite_demo.worlds.faces.training", "unite_demo.worlds.faces.evaluation")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """unite_demo.method.combine -> method; the package's own top-level modules are the command lines,
    except the limits table (and the package itself, which holds ROOT)."""
    parts = module.split(".")
    if module in ("unite_demo", "unite_demo.limits"):
        return "limits"
    if len(parts) == 2 and not (PACKAGE / parts[1]).is_dir():
        return "cli"
    return parts[1]


def imports(path: Path) -> set[str]:
    """The unite_demo modules (or packages) a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unite_demo"):
            for alias in node.names:  # `from unite_demo.x import y` may import the module unite_demo.x.y
                sub = f"{node.module}.{alias.name}"
                as_path = ROOT / sub.replace(".", "/")
                found.add(sub if as_path.with_suffix(".py").exists() or as_path.is_dir() else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("unite_demo"))
    return found


def package_modules() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_layer_rule_holds_and_would_catch_a_breach():
    assert layer("unite_demo.worlds.faces.world") == "worlds" and layer("unite_demo.generate") == "cli"
    breaches = [f"{m} ({layer(m)}) imports {d} ({layer(d)})" for m, deps in package_modules().items() for d in deps
                if LAYERS.index(layer(d)) > LAYERS.index(layer(m))]
    assert breaches == []
    assert LAYERS.index(layer("unite_demo.studio.runs")) > LAYERS.index(layer("unite_demo.method.combine"))


def test_only_training_evaluation_and_the_command_lines_import_training_or_evaluation_code():
    serving = {m: deps for m, deps in package_modules().items()
               if layer(m) != "cli" and not m.startswith(TRAINING_OR_EVALUATION)}
    assert "unite_demo.worlds.faces.world" in serving and "unite_demo.studio.studio" in serving
    leaks = [f"{m} imports {d}" for m, deps in serving.items() for d in deps if d.startswith(TRAINING_OR_EVALUATION)]
    assert leaks == []


def run_python(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                              "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


REPORT = """
import json, sys
import gradio.processing_utils as pu
def report():
    return {"worlds": sorted(app.STUDIO.worlds._worlds), "patched": pu.async_move_files_to_cache.__module__,
            "modules": sorted(m for m in sys.modules if m.startswith("unite_demo"))}
"""


def test_importing_the_page_loads_no_world_and_patches_nothing():
    seen = run_python(REPORT + "import app\nprint(json.dumps(report()))")
    assert seen["worlds"] == [] and seen["patched"].startswith("gradio")
    assert not any(m.startswith(TRAINING_OR_EVALUATION) for m in seen["modules"])


@pytest.mark.slow
def test_the_start_up_loads_the_built_in_world_and_no_training_or_evaluation_code():
    seen = run_python(REPORT + "import app\napp.start()\nprint(json.dumps(report()))")
    assert seen["worlds"] == ["cartoon-faces"] and seen["patched"] == "gradio_adapters"
    assert "unite_demo.worlds.faces.final_stage" in seen["modules"]  # the serving modules are there ...
    assert [m for m in seen["modules"] if m.startswith(TRAINING_OR_EVALUATION)] == []  # ... and nothing else
