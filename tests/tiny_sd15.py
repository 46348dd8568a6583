"""Tiny randomly initialised networks of the pretrained worlds' classes (SD 1.5's UNet, VAE, CLIP text
encoder and tokenizer, two ControlNets, DiT, a tiny preview decoder), written in the layouts the
loader reads: shared by tests/test_sd15.py and tests/test_sd15_page.py (conftest's `sd15_folders`)."""

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import (AutoencoderKL, AutoencoderTiny, ControlNetModel, DDPMScheduler, DiTTransformer2DModel,
                       UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel

from unite_demo.worlds.pretrained.labels import ADE20K_NAMES, ADE20K_RGB

SIZE = 64  # pixels; latents 8x8
TEXT_LEN, TEXT_DIM = 16, 16


def _tokenizer_files(folder: Path) -> None:
    """A tiny CLIP BPE tokenizer (letters, a few merges) in SD's tokenizer/ layout."""
    folder.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    for token in ("ca", "cat</w>", "ph", "pho"):  # each merge's result is a token
        vocab[token] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\nc a\nca t</w>\np h\nph o\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": TEXT_LEN,
                                                              "tokenizer_class": "CLIPTokenizer"}))


def _randomise_zero_convs(controlnet: ControlNetModel) -> None:
    """ControlNets start with zero convolutions (no effect); random weights need an effect to test."""
    g = torch.Generator().manual_seed(3)
    for module in (controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                   controlnet.controlnet_cond_embedding.conv_out):
        for p in module.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3


def write_tiny_models(root: Path) -> dict[str, Path]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = UNet2DConditionModel(sample_size=SIZE // 8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                                    layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                    cross_attention_dim=TEXT_DIM, attention_head_dim=4, norm_num_groups=8)
        vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, latent_channels=4,
                            norm_num_groups=4, sample_size=SIZE)
        text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=64, hidden_size=TEXT_DIM, intermediate_size=32,
                                                    num_hidden_layers=2, num_attention_heads=2,
                                                    max_position_embeddings=TEXT_LEN, bos_token_id=0,
                                                    eos_token_id=1, pad_token_id=1))
        controlnets = {}
        for name in ("scribble", "seg"):
            cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 4, 8, 8))
            _randomise_zero_convs(cn)
            controlnets[name] = cn
        dit = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                    num_layers=2, sample_size=SIZE // 8, patch_size=2, num_embeds_ada_norm=1000)
        taesd = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                                num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=4)
    sd = root / "sd15"
    unet.save_pretrained(sd / "unet")
    vae.save_pretrained(sd / "vae")
    text_encoder.save_pretrained(sd / "text_encoder")
    _tokenizer_files(sd / "tokenizer")
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                  beta_end=0.012).save_pretrained(sd / "scheduler")
    controlnets["scribble"].save_pretrained(root / "scribble")
    controlnets["seg"].save_pretrained(root / "seg")
    dit.save_pretrained(root / "dit" / "transformer")
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001,
                  beta_end=0.02).save_pretrained(root / "dit" / "scheduler")
    taesd.save_pretrained(root / "taesd")
    return {"sd15": sd, "scribble": root / "scribble", "seg": root / "seg", "dit": root / "dit",
            "taesd": root / "taesd"}


def seg_rgb(top="sky", bottom="grass", s=SIZE) -> np.ndarray:
    """An ADE20K colour map, (s,s,3) uint8: class `top` above class `bottom`."""
    yy = np.mgrid[:s, :s][0]
    return ADE20K_RGB[np.where(yy < s // 2, ADE20K_NAMES.index(top), ADE20K_NAMES.index(bottom))]
