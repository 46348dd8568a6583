"""The text experts' caption head: what it outputs, that it learns, and that adding it to a trained
network changes nothing until training starts."""

from dataclasses import replace

import torch

from unite_demo.worlds.faces.data import SPLITS
from unite_demo.worlds.faces.model import CAPTION_SLOTS, TEXT_DIM, CaptionHead, FaceUNet, FaceUNetConfig, save_face_unet
from unite_demo.worlds.faces.text import encode_captions
from unite_demo.worlds.faces.training import train


def test_a_null_caption_reads_as_zeros_and_a_caption_as_one_distribution_per_attribute():
    head = CaptionHead()
    text = torch.randn(3, TEXT_DIM)
    text[1] = 0
    out = head(text)
    assert out[1].abs().sum() == 0
    for group in out[[0, 2]].split([len(options) for _, options in CAPTION_SLOTS], dim=1):
        torch.testing.assert_close(group.sum(dim=1), torch.ones(2))


def test_the_caption_head_learns_what_captions_say():
    head = CaptionHead()
    record = train.fit_caption_head(head, SPLITS["text"], seed=0, n_train=512, steps=300)
    assert record["val_accuracy"]["per_attribute"] > 0.75  # always guessing one option: under 0.5 (0.80 measured)
    reading = head.read(encode_captions(["a person with long red hair and green eyes"]))[0]
    assert reading["hair_colour"][0] == "red" and reading["eye_colour"][0] == "green"
    assert "beard" not in reading  # not said


def test_a_network_given_a_caption_head_starts_exactly_where_its_source_was(tmp_path):
    config = FaceUNetConfig.from_dict({"modalities": ["text"], "image_size": 16, "channels": [16, 32, 32]})
    assert config.text_reader == "embedding"  # files written before the head read as the old pathway
    with torch.random.fork_rng():
        torch.manual_seed(0)
        old = FaceUNet(config).eval()
    save_face_unet(old, tmp_path / "old.safetensors", dtype=torch.float32)
    new = FaceUNet(replace(config, text_reader="attributes")).eval()
    train.init_from(tmp_path / "old.safetensors", new)
    x_t, t = torch.randn(2, 3, 16, 16), torch.tensor([10.0, 500.0])
    seg, sketch = torch.zeros(2, 8, 16, 16), torch.zeros(2, 2, 16, 16)
    null, caption = torch.zeros(2, TEXT_DIM), encode_captions(["a face with red hair", "a bald face"])
    with torch.no_grad():
        torch.testing.assert_close(new(x_t, t, seg, sketch, null), old(x_t, t, seg, sketch, null))
        torch.testing.assert_close(new(x_t, t, seg, sketch, caption), old(x_t, t, seg, sketch, null))
        assert not torch.allclose(old(x_t, t, seg, sketch, caption), old(x_t, t, seg, sketch, null))
