"""How a network runs when served: under ONNX Runtime, as a TorchScript trace, or as the module
itself (eager). One choice for every network of the built-in world (UNITE_ENGINE, default "onnx").

- onnx: the module exported with torch.onnx.export (the TorchScript-based exporter, opset 17, batch
  axis dynamic) from the weights just loaded from our safetensors, and run by onnxruntime's CPU
  provider on torch's thread count. The export takes seconds, so its result is kept in a cache folder
  (UNITE_CACHE_DIR, default ~/.cache/unite-demo) under a hash of the weights and the versions; a copy
  derived from the shipped weights, never shipped itself. Checked against the module at load
  (ONNX_TOLERANCE), else the trace is used.
- torchscript: torch.jit.trace; one call runs the whole forward in C++ instead of taking Python's
  GIL back for each of its few hundred small operations, so the web server's threads (streaming the
  previews) do not stall the sampler. torch.jit.trace is deprecated in favour of torch.compile, which
  needs a C++ compiler and minutes of compiling at start-up on this CPU.
- eager: the module; also where the others fail.

`python -m unite_demo.bench --engines` times the three side by side.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

ENGINES = ("onnx", "torchscript", "eager")
DEFAULT_ENGINE = "onnx"
OPSET = 17
ONNX_TOLERANCE = 1e-3  # max |onnx - module| on the example inputs, checked at load
CACHE_DIR = Path(os.environ.get("UNITE_CACHE_DIR", Path.home() / ".cache" / "unite-demo"))

log = logging.getLogger(__name__)


def default_engine() -> str:
    engine = os.environ.get("UNITE_ENGINE", DEFAULT_ENGINE)
    if engine not in ENGINES:
        raise ValueError(f"UNITE_ENGINE={engine!r}: expected one of {', '.join(ENGINES)}")
    return engine


def serve(net: nn.Module, example: tuple[torch.Tensor, ...], names: Sequence[str], engine: str | None = None
          ) -> Callable[..., torch.Tensor]:
    """A callable with the module's forward (positional tensors in, one tensor out) under `engine`
    (default: default_engine()); on failure, the next engine of ENGINES, with a warning."""
    engine = engine or default_engine()
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; accepted: {', '.join(ENGINES)}")
    net = net.eval().requires_grad_(False)
    device = next(net.parameters()).device
    example = tuple(x.to(device) for x in example)
    if engine == "onnx" and device.type != "cpu":
        engine = "torchscript"  # onnxruntime's CPU provider: a network on a GPU is traced there instead
    if engine == "onnx":
        try:
            return OnnxForward(net, example, names)
        except Exception as e:  # noqa: BLE001 - no onnxruntime, an op it lacks, a mismatch: trace instead
            log.warning("serving the TorchScript trace (ONNX Runtime: %s)", e)
            engine = "torchscript"
    if engine == "torchscript":
        try:
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit.trace")
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # group_norm's batch check
                return torch.jit.trace(net, example, check_trace=False)
        except Exception as e:  # noqa: BLE001 - any tracing failure: serve the module as it is
            log.warning("serving the untraced network (tracing failed: %s)", e)
    return net


def weights_digest(net: nn.Module, example: tuple[torch.Tensor, ...]) -> str:
    """A hash of what the exported graph depends on: the weights, the module's type, the example's
    shapes and the versions of torch and the exporter's opset."""
    h = hashlib.sha256(f"{type(net).__qualname__} torch {torch.__version__} opset {OPSET}".encode())
    h.update(repr([tuple(x.shape) for x in example]).encode())
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def export_onnx(net: nn.Module, example: tuple[torch.Tensor, ...], names: Sequence[str]) -> bytes:
    """The module as an ONNX model (bytes), batch axis dynamic; cached in CACHE_DIR by weights_digest."""
    path = CACHE_DIR / f"{type(net).__name__.lower()}-{weights_digest(net, example)}.onnx"
    if path.exists():
        return path.read_bytes()
    buf = io.BytesIO()
    axes = {n: {0: "batch"} for n in (*names, "out")}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(net, example, buf, dynamo=False, opset_version=OPSET, input_names=list(names),
                          output_names=["out"], dynamic_axes=axes)
    data = buf.getvalue()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as e:  # a read-only home: export again next start
        log.warning("could not cache the ONNX export in %s: %s", CACHE_DIR, e)
    return data


class OnnxForward:
    """The module's forward under onnxruntime (CPU provider, torch's thread count when built)."""

    def __init__(self, net: nn.Module, example: tuple[torch.Tensor, ...], names: Sequence[str]):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Its worker threads otherwise spin between calls, taking the cores from torch's own threads
        # (text encoding, the sampler, the final-image stage) and the web server (docs/speed.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.threads = options.intra_op_num_threads
        self.session = ort.InferenceSession(export_onnx(net, example, names), options,
                                            providers=["CPUExecutionProvider"])
        self.names = list(names)
        with torch.inference_mode():
            want = net(*example)
        diff = (self(*example) - want).abs().max().item()
        if not diff <= ONNX_TOLERANCE:
            raise ValueError(f"its output differs from the module's by {diff:.2e} (> {ONNX_TOLERANCE})")

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feeds = {n: np.ascontiguousarray(x.detach().cpu().float().numpy()) for n, x in zip(self.names, inputs)}
        return torch.from_numpy(self.session.run(None, feeds)[0])
