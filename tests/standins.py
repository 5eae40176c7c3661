"""Tiny stand-ins, written here, for folders the tests cannot download: the authors' release
(origin-format MLLM folder with its extended tokenizer, DualViTok `pytorch_model.bin`, SDXL
decoder folder without codebooks) in their layout, at the tiny preset's sizes.

The authors' MLLM config.json does not say which DualViTok it was built for (their code
assumes the paper's); a test that reads these stand-ins makes the "illume-plus" tokenizer
preset the tiny one (`tiny_is_the_paper_tokenizer`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from illume_plus.pipeline_folder import PipelineCard, random_pipeline

def tiny_model_and_processor(seed: int = 0):
    """(IllumePlus, IllumePlusProcessor) of the tiny preset with random weights drawn from `seed`
    (the global RNG is reseeded), in eval mode, with the built-in tiny text tokenizer."""
    from illume_plus.mllm.config import IllumePlusConfig
    from illume_plus.mllm.model import IllumePlus
    from illume_plus.mllm.processor import IllumePlusProcessor
    from illume_plus.mllm.text_tokenizer import build_tiny_text_tokenizer

    torch.manual_seed(seed)
    config = IllumePlusConfig.from_name("tiny")
    model = IllumePlus(config).eval()
    return model, IllumePlusProcessor.from_text_tokenizer(build_tiny_text_tokenizer(), config)


# Our prefix -> theirs (SPEC §3 "Origin-format checkpoint keys"), written out independently.
THEIR_PREFIX = {
    "language_model.model.": "model.",
    "language_model.lm_head.": "lm_head.",
    "vision_tower.semantic_encoder.": "model.vision_tower.semantic_encoder.",
    "vision_tower.pixel_encoder.": "model.vision_tower.pixel_encoder.",
    "semantic_adaptor.": "model.mm_projector.projector_1.",
    "pixel_adaptor.": "model.mm_projector.projector_2.",
}
RELEASE_NAMES = {"mllm": "illume_plus-qwen2_5-3b", "vision_tokenizer": "dualvitok",
                 "diffusion_decoder": "dualvitok_sdxl_decoder"}


def tiny_is_the_paper_tokenizer(monkeypatch) -> None:
    from illume_plus.tokenizer import config as tokenizer_config

    monkeypatch.setitem(tokenizer_config.PRESETS, "illume-plus", tokenizer_config.PRESETS["tiny"])


def write_official_release(root: Path, seed: int = 0, with_decoder: bool = True) -> dict[str, Path]:
    """root/illume_plus-qwen2_5-3b/, root/dualvitok/pytorch_model.bin, root/dualvitok_sdxl_decoder/."""
    from illume_plus.diffusion.pipeline import DiffusionDecoderPipeline

    pipe = random_pipeline("tiny", seed=seed)
    model, config = pipe.model, pipe.model.config
    mllm = root / RELEASE_NAMES["mllm"]
    mllm.mkdir(parents=True)
    theirs = {}
    for key, tensor in model.state_dict().items():
        prefix = next(p for p in THEIR_PREFIX if key.startswith(p))
        theirs[THEIR_PREFIX[prefix] + key[len(prefix):]] = tensor.detach().clone().contiguous()
    from safetensors.torch import save_file

    save_file(theirs, str(mllm / "model.safetensors"))
    (mllm / "config.json").write_text(json.dumps({
        "architectures": ["ILLUMEQwen2ForCausalLM"], "model_type": "illume_qwen2",
        "hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads, "num_key_value_heads": config.num_key_value_heads,
        "intermediate_size": config.intermediate_size, "rope_theta": config.rope_theta,
        "rms_norm_eps": config.rms_norm_eps, "tie_word_embeddings": config.tie_word_embeddings,
        "max_position_embeddings": config.max_position_embeddings, "vocab_size": config.vocab_size}))
    pipe.processor.tokenizer.save_pretrained(mllm)

    tok_dir = root / RELEASE_NAMES["vision_tokenizer"]
    tok_dir.mkdir()
    torch.save(pipe.vision_tokenizer.state_dict(), tok_dir / "pytorch_model.bin")
    paths = {"root": root, "mllm": mllm, "vision_tokenizer": tok_dir / "pytorch_model.bin"}
    if with_decoder:
        decoder_dir = root / RELEASE_NAMES["diffusion_decoder"]
        DiffusionDecoderPipeline.from_preset("tiny").save_pretrained(decoder_dir)
        shutil.rmtree(decoder_dir / "code_embedder")  # the authors' folder: diffusers parts only
        (decoder_dir / "decoder_config.json").unlink()
        paths["diffusion_decoder"] = decoder_dir
    return paths


def write_small_pipeline(folder: Path, size=(64, 64), seed: int = 0, trained: bool = False) -> Path:
    """A pipeline folder (tiny preset, random weights) whose default size is small: fast tests."""
    card = PipelineCard(trained=trained, default_size=size, description="test stand-in")
    return random_pipeline("tiny", seed=seed).save_pretrained(folder, card)
