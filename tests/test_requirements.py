"""What a Space installs: requirements.txt (a CPU Space) takes PyTorch's CPU-only build, requirements-gpu.txt
(a GPU or ZeroGPU Space) a CUDA build of a version ZeroGPU lists, with every other pin equal; and this
machine's set-up installs the same pins without the outside index. pip itself chooses here, between two
local stand-in indexes: one like PyPI (torch with its CUDA libraries as dependencies) and one like
PyTorch's CPU index (torch +cpu, no CUDA)."""

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CPU_FILE, GPU_FILE = ROOT / "requirements.txt", ROOT / "requirements-gpu.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
ZEROGPU_TORCH = (Version("2.8"), Version("2.11.99"))  # the PyTorch versions ZeroGPU documents today
CUDA_LIBRARY = "nvidia-cublas-cu12"  # one of the CUDA libraries PyPI's Linux torch depends on


def lines(path: Path) -> list[str]:
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


def pins(path: Path) -> dict[str, str]:
    """name -> its version specifier ('2.13.0' for an exact pin)."""
    found = {}
    for line in lines(path):
        if not line.startswith("-"):
            req = Requirement(line)
            spec = str(req.specifier)
            found[req.name.lower()] = spec[2:] if re.fullmatch(r"==[^,*]+", spec) else spec
    return found


def test_a_gpu_space_changes_torch_only_and_to_a_cuda_build_zerogpu_supports():
    cpu, gpu = pins(CPU_FILE), pins(GPU_FILE)
    assert {k: v for k, v in cpu.items() if k != "torch"} == {k: v for k, v in gpu.items() if k != "torch"}
    assert cpu["torch"] == "2.13.0"  # the CPU build on this machine's disk
    assert ZEROGPU_TORCH[0] <= Version(gpu["torch"]) <= ZEROGPU_TORCH[1]
    assert [line for line in lines(CPU_FILE) if line.startswith("-")] == [f"--extra-index-url {CPU_INDEX}"]
    assert not [line for line in lines(GPU_FILE) if line.startswith("-")]  # PyPI's torch: CUDA bundled


def fake_wheel(index: Path, version: str, requires: list[str]) -> None:
    """A torch wheel that only has metadata, in a PEP 503 simple index at `index`."""
    folder = index / "torch"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"torch-{version}-py3-none-any.whl"
    info = f"torch-{version}.dist-info"
    with zipfile.ZipFile(folder / name, "w") as z:
        z.writestr("torch/__init__.py", "")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: torch\nVersion: " + version + "\n"
                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    links = "".join(f'<a href="{p.name.replace("+", "%2B")}">{p.name}</a>\n' for p in sorted(folder.glob("*.whl")))
    (folder / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")


def chosen_torch(requirements: Path, tmp_path: Path) -> dict:
    """pip's choice of torch for `requirements` (its option lines and torch pin), with PyPI and the CPU
    index replaced by the local stand-ins; pip's own configuration and this machine's wheels ignored."""
    pypi, cpu = tmp_path / "pypi", tmp_path / "cpu"
    for version in ("2.11.0", "2.13.0"):
        fake_wheel(pypi, version, [CUDA_LIBRARY])
    fake_wheel(cpu, "2.13.0+cpu", [])
    text = "\n".join(line.replace(CPU_INDEX, cpu.as_uri()) for line in lines(requirements)
                     if line.startswith("-") or line.startswith("torch=="))
    local = tmp_path / "requirements.txt"
    local.write_text(text + "\n")
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed",
                    "--no-deps", "--quiet", "--report", str(report), "--index-url", pypi.as_uri(), "-r", str(local)],
                   check=True, capture_output=True, text=True, timeout=120)
    (install,) = json.loads(report.read_text())["install"]
    return install["metadata"]


def test_a_cpu_space_gets_the_cpu_build_without_cuda_libraries(tmp_path):
    torch = chosen_torch(CPU_FILE, tmp_path)
    assert torch["version"] == "2.13.0+cpu"
    assert not torch.get("requires_dist")


def test_a_gpu_space_gets_pypis_cuda_build(tmp_path):
    torch = chosen_torch(GPU_FILE, tmp_path)
    assert torch["version"] == pins(GPU_FILE)["torch"]
    assert CUDA_LIBRARY in torch["requires_dist"]


@pytest.mark.slow
def test_the_set_up_here_installs_the_same_pins_without_the_outside_index():
    out = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "download.pytorch.org" not in out.stdout + out.stderr  # pip never tried the CPU index
    local = ROOT / ".venv" / "requirements-local.txt"
    assert "://" not in local.read_text()
    assert pins(local) == pins(CPU_FILE)
