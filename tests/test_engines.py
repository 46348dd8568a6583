"""How networks are served: ONNX Runtime exported from the loaded weights and cached by their hash,
the TorchScript trace, the module itself; and the fall-back when an engine cannot serve."""

import logging

import pytest
import torch
from torch import nn

from unite_demo.method import engines


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.GroupNorm(2, 4)

    def forward(self, x, t):
        return self.norm(self.conv(x)) * t[:, None, None, None]


def _net(seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Small().eval()


EXAMPLE = (torch.zeros(1, 3, 8, 8), torch.ones(1))


def test_each_engine_gives_the_modules_output_at_other_batch_sizes(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "CACHE_DIR", tmp_path)
    net = _net()
    x, t = torch.randn(5, 3, 8, 8), torch.rand(5)
    want = net(x, t)
    kinds = {"onnx": engines.OnnxForward, "torchscript": torch.jit.ScriptModule, "eager": Small}
    for engine, kind in kinds.items():
        served = engines.serve(net, EXAMPLE, ("x", "t"), engine)
        assert isinstance(served, kind), engine
        torch.testing.assert_close(served(x, t), want, rtol=1e-5, atol=1e-5)


def test_the_export_is_cached_by_the_weights_and_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "CACHE_DIR", tmp_path)
    exports = []
    real = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: exports.append(1) or real(*a, **k))
    engines.serve(_net(0), EXAMPLE, ("x", "t"), "onnx")
    engines.serve(_net(0), EXAMPLE, ("x", "t"), "onnx")
    assert len(exports) == 1 and len(list(tmp_path.glob("*.onnx"))) == 1
    other = engines.serve(_net(1), EXAMPLE, ("x", "t"), "onnx")  # other weights: another file
    assert len(exports) == 2 and len(list(tmp_path.glob("*.onnx"))) == 2
    x, t = torch.randn(2, 3, 8, 8), torch.rand(2)
    torch.testing.assert_close(other(x, t), _net(1)(x, t), rtol=1e-5, atol=1e-5)


def test_an_engine_that_cannot_serve_falls_back_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(engines, "CACHE_DIR", tmp_path)

    def broken(*a, **k):
        raise RuntimeError("no exporter here")

    monkeypatch.setattr(engines, "export_onnx", broken)
    with caplog.at_level(logging.WARNING, logger="unite_demo.method.engines"):
        served = engines.serve(_net(), EXAMPLE, ("x", "t"), "onnx")
    assert isinstance(served, torch.jit.ScriptModule)
    assert "no exporter here" in caplog.text


def test_an_export_that_disagrees_with_the_module_is_not_served(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(engines, "CACHE_DIR", tmp_path)
    net = _net()
    real = engines.export_onnx
    monkeypatch.setattr(engines, "export_onnx", lambda n, *a: real(_net(1), *a))  # another network's graph
    with caplog.at_level(logging.WARNING, logger="unite_demo.method.engines"):
        served = engines.serve(net, EXAMPLE, ("x", "t"), "onnx")
    assert not isinstance(served, engines.OnnxForward) and "differs from the module's" in caplog.text


def test_an_unknown_engine_is_refused_with_the_accepted_ones(monkeypatch):
    with pytest.raises(ValueError, match="accepted: onnx, torchscript, eager"):
        engines.serve(_net(), EXAMPLE, ("x", "t"), "tensorrt")
    monkeypatch.setenv("UNITE_ENGINE", "fast")
    with pytest.raises(ValueError, match="UNITE_ENGINE='fast': expected one of onnx, torchscript, eager"):
        engines.default_engine()
