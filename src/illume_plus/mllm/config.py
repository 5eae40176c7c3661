"""IllumePlusConfig: the unified MLLM's sizes, its vision tokenizer, adaptors and prompts.

Presets (`from_name`): "illume-plus-3b" (Qwen2.5-3B, the released model), "illume-plus-7b"
(Qwen2.5-7B dims; the paper's config is identical but for the width) and "tiny" (a few-layer LLM
and the tiny DualViTok, for tests and CPU runs).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields

from ..tokenizer.config import DualViTokConfig
from ..utils.config import check_known_fields
from ..utils.io import load_json, save_json
from .vocab import extended_vocab_rows

# The 11 generation sizes (H, W), about 512² each (SPEC §3 Decoding).
GENERATION_SIZES = (
    (512, 512), (384, 512), (512, 384), (384, 768), (768, 384), (384, 576),
    (576, 384), (320, 960), (960, 320), (256, 1024), (1024, 256),
)

SYSTEM_PROMPT = "You are a helpful assistant."
# Task prompts (SPEC §3 Prompts). {image} marks where the image frame goes.
UNDERSTANDING_TEMPLATE = "{image}\n{question}"
# The authors' inference template says "the content of the image is"; their training data say
# "the content of image is" (see `text_to_image_training_template`).
TEXT_TO_IMAGE_TEMPLATE = "Generate an image of {resolution_tag}, the content of the image is {caption}\n"
TEXT_TO_IMAGE_TRAINING_TEMPLATE = "Generate an image of {resolution_tag}, the content of image is {caption}\n"
UNCONDITIONAL_IMAGE_TEMPLATE = "Generate a random image of {resolution_tag}\n"
EDIT_TEMPLATE = "{resolution_tag}{image}\nPlease edit the image according to the instruction: {instruction}\n"
UNCONDITIONAL_EDIT_TEMPLATE = "{resolution_tag}{image}\nReconstruct the image according to the given image\n"


@dataclass
class IllumePlusConfig:
    # --- language model (Qwen2 architecture) -----------------------------------------------
    hidden_size: int = 2048
    num_hidden_layers: int = 36
    num_attention_heads: int = 16
    num_key_value_heads: int = 2
    intermediate_size: int = 11008
    hidden_act: str = "silu"
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = True
    text_vocab_rows: int = 151936  # embedding rows of the base LLM, before the image vocabulary
    attn_implementation: str = "sdpa"

    # --- vision tokenizer (its encoders feed the LLM; its codebooks define the image vocabulary)
    tokenizer: DualViTokConfig = field(default_factory=lambda: DualViTokConfig.from_name("illume-plus"))
    freeze_vision_encoders: bool = True  # ViT and pixel encoder frozen (stage 3 unfreezes parts)

    # --- adaptors: Linear -> GELU -> Linear, from encoder width to the LLM width ----------
    adaptor_hidden_size: int | None = None  # None: the LLM width (the authors' 2-layer MLP)

    # --- images -----------------------------------------------------------------------------
    understanding_max_pixels: int = 768 * 768  # any resolution up to this area (SPEC §2 Input)
    understanding_min_pixels: int = 32 * 32
    generation_sizes: tuple = GENERATION_SIZES
    generation_fit: str = "pad"  # bring an editing source to its generation size: "pad" (theirs) or "crop"
    pad_value: float = 1.0  # fill for "pad", in [-1, 1] (1 = white, as theirs)

    # --- prompts ----------------------------------------------------------------------------
    system_prompt: str = SYSTEM_PROMPT
    understanding_template: str = UNDERSTANDING_TEMPLATE
    text_to_image_template: str = TEXT_TO_IMAGE_TEMPLATE
    text_to_image_training_template: str = TEXT_TO_IMAGE_TRAINING_TEMPLATE
    unconditional_image_template: str = UNCONDITIONAL_IMAGE_TEMPLATE
    edit_template: str = EDIT_TEMPLATE
    unconditional_edit_template: str = UNCONDITIONAL_EDIT_TEMPLATE

    # --- training loss ----------------------------------------------------------------------
    ignore_index: int = -100
    loss_chunk_size: int = 1024  # labelled positions per LM-head chunk (never full-vocab logits at once)

    def __post_init__(self):
        if isinstance(self.tokenizer, dict):
            self.tokenizer = DualViTokConfig.from_dict(self.tokenizer)
        self.generation_sizes = tuple(tuple(s) for s in self.generation_sizes)
        self.validate()

    # -- derived --
    @property
    def semantic_codebook_size(self) -> int:
        return self.tokenizer.semantic_codebook_size

    @property
    def pixel_codebook_size(self) -> int:
        return self.tokenizer.pixel_codebook_size

    @property
    def vocab_size(self) -> int:
        """Embedding rows after the extension: base rows + the 131,111 image tokens (full size)."""
        return extended_vocab_rows(self.text_vocab_rows, self.semantic_codebook_size, self.pixel_codebook_size)

    @property
    def semantic_feature_dim(self) -> int:
        return self.tokenizer.vit_hidden_size  # ViT merger output (3584 full size)

    @property
    def pixel_feature_dim(self) -> int:
        return self.tokenizer.pixel_encoder.z_channels  # pixel encoder output before pixel_quant_conv (32)

    @property
    def image_size_factor(self) -> int:
        return self.tokenizer.pixel_downsample  # image sides are multiples of this (16)

    def validate(self) -> None:
        def need(ok, msg):
            if not ok:
                raise ValueError(f"IllumePlusConfig: {msg}")

        need(self.hidden_size % self.num_attention_heads == 0, "hidden_size not divisible by num_attention_heads")
        need(self.num_attention_heads % self.num_key_value_heads == 0,
             "num_attention_heads not divisible by num_key_value_heads")
        need(self.generation_fit in ("crop", "pad"),
             f"generation_fit must be 'crop' or 'pad', got {self.generation_fit!r}")
        need(-1.0 <= self.pad_value <= 1.0, "pad_value must lie in [-1, 1]")
        need(0 < self.understanding_min_pixels <= self.understanding_max_pixels, "need 0 < min_pixels <= max_pixels")
        need(self.loss_chunk_size > 0, "loss_chunk_size must be positive")
        for h, w in self.generation_sizes:
            need(h % self.image_size_factor == 0 and w % self.image_size_factor == 0,
                 f"generation size {h}x{w} not a multiple of {self.image_size_factor}")

    def qwen2_config(self):
        """transformers `Qwen2Config` for the language model."""
        from transformers import Qwen2Config

        return Qwen2Config(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads, hidden_act=self.hidden_act,
            max_position_embeddings=self.max_position_embeddings, rms_norm_eps=self.rms_norm_eps,
            rope_theta=self.rope_theta, tie_word_embeddings=self.tie_word_embeddings,
            attn_implementation=self.attn_implementation,
        )

    # -- presets --
    @classmethod
    def from_name(cls, name: str, **overrides) -> "IllumePlusConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown IllumePlus preset {name!r}; choose one of {sorted(PRESETS)}")
        preset = copy.deepcopy(PRESETS[name])
        preset["tokenizer"] = DualViTokConfig.from_name(preset["tokenizer"])
        return cls(**{**preset, **overrides})

    # -- serialisation --
    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["tokenizer"] = self.tokenizer.to_dict()
        d["generation_sizes"] = [list(s) for s in self.generation_sizes]
        return copy.deepcopy(d)

    @classmethod
    def from_dict(cls, d: dict) -> "IllumePlusConfig":
        check_known_fields(cls, d)
        return cls(**copy.deepcopy(d))

    def save_json(self, path) -> None:
        save_json(self.to_dict(), path)

    @classmethod
    def from_json(cls, path) -> "IllumePlusConfig":
        return cls.from_dict(load_json(path))


PRESETS: dict[str, dict] = {
    # Qwen2.5-3B: 2048 wide, 36 layers, 16 heads / 2 KV heads, MLP 11008, tied embeddings;
    # 151,936 base rows -> 283,047 rows after the image vocabulary.
    "illume-plus-3b": dict(tokenizer="illume-plus"),
    # Qwen2.5-7B: 3584 wide, 28 layers, 28 heads / 4 KV heads, MLP 18944, untied; 152,064 -> 283,175.
    "illume-plus-7b": dict(
        tokenizer="illume-plus", hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, intermediate_size=18944, tie_word_embeddings=False, text_vocab_rows=152064,
    ),
    # Tests and CPU: 2 layers of width 64 over the tiny DualViTok (256 / 512 codes). 512 base rows
    # cover the tiny text tokenizer (text_tokenizer.py) with room to spare, like Qwen's padding.
    "tiny": dict(
        tokenizer="tiny", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, max_position_embeddings=8192, text_vocab_rows=512,
    ),
}

__all__ = ["IllumePlusConfig", "PRESETS", "GENERATION_SIZES"]
