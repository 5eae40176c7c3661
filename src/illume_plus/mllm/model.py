"""IllumePlus: a Qwen2 language model that reads images as continuous features and writes them
as discrete codes (SPEC §3).

Reading: an image's frame (frames.py) sits in the token sequence; its code slots receive the
DualViTok encoders' features through two MLP adaptors — the ViT merger output (before the
tokenizer's target LayerNorm) through `semantic_adaptor`, the pixel-encoder output (before
`pixel_quant_conv`) through `pixel_adaptor`. Markers keep the LLM's own embeddings.
Writing: image codes are ordinary vocabulary entries, predicted by the LM head like text and
fed back through the embedding table.

Batches are left-padded (processor.collate) with per-row position ids, so the last column is
every row's last real token: decoding reads logits there only, never over the whole sequence.
"""

from __future__ import annotations

import functools
import inspect

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..tokenizer.config import DualViTokConfig
from ..tokenizer.pixel import PixelEncoder
from ..tokenizer.preprocess import semantic_input_size
from ..tokenizer.semantic import build_vit, vit_merged_features
from ..utils.io import load_safetensors, save_safetensors
from ..utils.state_dict import check_materialized, check_state_dict_keys
from .config import IllumePlusConfig
from .loss import linear_cross_entropy
from .generation_config import GenerationDefaults
from .weights import read_weights

if TYPE_CHECKING:
    from .processor import MultimodalBatch

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class VisionEncoders(nn.Module):
    """DualViTok's two encoders as the MLLM uses them: features before any head or quantiser.

    `semantic_encoder` is the Qwen2-VL vision tower (transformers' module, the authors' names);
    `pixel_encoder` is DualViTok's pixel encoder (tokenizer/pixel.py)."""

    def __init__(self, config: DualViTokConfig):
        super().__init__()
        self.config = config
        self.semantic_encoder = build_vit(config)
        self.pixel_encoder = PixelEncoder(config)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) in [-1, 1], one size -> semantic (B, h1*w1, C_vit) and pixel
        (B, h2*w2, z_channels) features, both in raster order."""
        cfg = self.config
        size = semantic_input_size(*images.shape[-2:], cfg.resolution_mapping, cfg.semantic_downsample)
        semantic = vit_merged_features(self.semantic_encoder, images, size, cfg)
        pixel_dtype = self.pixel_encoder.conv_in.weight.dtype
        pixel = self.pixel_encoder(images.to(pixel_dtype)).flatten(2).transpose(1, 2)
        return semantic, pixel


class Adaptor(nn.Sequential):
    """Linear -> GELU -> Linear, from an encoder's width to the LLM's (names .0 and .2 as the authors')."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__(nn.Linear(in_features, hidden_features), nn.GELU(), nn.Linear(hidden_features, out_features))


@dataclass
class StepOutput:
    logits: torch.Tensor | None  # (B, V) fp32 at the last position ((B, stop - start) for a vocab range)
    hidden: torch.Tensor  # (B, D) final hidden state at the last position ((B, k, D) with all_positions)
    past_key_values: object  # transformers Cache


@dataclass
class IllumePlusOutput:
    loss: torch.Tensor  # mean next-token CE over labelled positions
    num_tokens: int  # how many positions the loss averages over
    row_loss_sums: torch.Tensor | None = None  # (B,) detached CE summed over each row's labelled positions
    row_num_tokens: torch.Tensor | None = None  # (B,) labelled positions per row (per-task losses in training)



def _cache_argument(decoder: nn.Module) -> str:
    """The KV-cache keyword of the transformers decoder: `cache` from transformers 5.24 on
    (`past_key_values` still works there but warns that it is going away), `past_key_values` before."""
    return _cache_keyword(type(decoder))


@functools.lru_cache(maxsize=None)
def _cache_keyword(decoder_class: type) -> str:
    return "cache" if "cache" in inspect.signature(decoder_class.forward).parameters else "past_key_values"


class IllumePlus(nn.Module):
    def __init__(self, config: IllumePlusConfig):
        super().__init__()
        from transformers import Qwen2ForCausalLM

        self.config = config
        self.language_model = Qwen2ForCausalLM(config.qwen2_config())
        self.vision_tower = VisionEncoders(config.tokenizer)
        hidden = config.adaptor_hidden_size or config.hidden_size
        self.semantic_adaptor = Adaptor(config.semantic_feature_dim, hidden, config.hidden_size)
        self.pixel_adaptor = Adaptor(config.pixel_feature_dim, hidden, config.hidden_size)
        if config.freeze_vision_encoders:
            self.vision_tower.requires_grad_(False)
        # decoding defaults of the checkpoint folder (generation_config.json), read by the Pipeline
        self.generation_defaults = GenerationDefaults()

    # ------------------------------------------------------------------ inputs
    @property
    def device(self) -> torch.device:
        return self.language_model.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.language_model.lm_head.weight.dtype

    @property
    def vision_tower_trainable(self) -> bool:
        """Whether any encoder parameter trains (stage 3 unfreezes parts of the ViT and pixel encoder)."""
        return any(p.requires_grad for p in self.vision_tower.parameters())

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The LLM's input embeddings of token ids (B, k) -> (B, k, D)."""
        return self.language_model.get_input_embeddings()(input_ids)

    def encode_images(self, images: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Adaptor outputs for each image (3, H, W) in [-1, 1]: (semantic (h1*w1, D), pixel
        (h2*w2, D)). Images of the same size go through the encoders together."""
        by_size = defaultdict(list)
        for i, image in enumerate(images):
            _check_image(image, self.config.image_size_factor)
            by_size[tuple(image.shape)].append(i)
        out: list = [None] * len(images)
        encoders_train = torch.is_grad_enabled() and self.vision_tower_trainable
        for indices in by_size.values():
            pixels = torch.stack([images[i] for i in indices]).to(self.device)
            with torch.set_grad_enabled(encoders_train):  # frozen encoders keep no activations
                semantic, pixel = self.vision_tower(pixels)
            semantic = self.semantic_adaptor(semantic.to(self.semantic_adaptor[0].weight.dtype))
            pixel = self.pixel_adaptor(pixel.to(self.pixel_adaptor[0].weight.dtype))
            for j, i in enumerate(indices):
                out[i] = (semantic[j], pixel[j])
        return out

    def embed_inputs(self, batch: "MultimodalBatch") -> torch.Tensor:
        """inputs_embeds (B, L, D): token embeddings, with each continuous image's adaptor
        features written into its code slots (all slots of the batch in one index_put)."""
        embeds = self.embed_tokens(batch.input_ids.to(self.device))
        if not batch.images:
            return embeds
        features = self.encode_images([image.pixel_values for image in batch.images])
        rows, cols, values = [], [], []
        for image, (semantic, pixel) in zip(batch.images, features):
            for positions, feats in ((image.semantic_positions, semantic), (image.pixel_positions, pixel)):
                if positions.numel() != feats.shape[0]:
                    raise ValueError(f"image of size {tuple(image.pixel_values.shape[-2:])} gives {feats.shape[0]} "
                                     f"features but its frame has {positions.numel()} slots")
                rows.append(torch.full_like(positions, image.row))
                cols.append(positions)
                values.append(feats)
        index = (torch.cat(rows).to(self.device), torch.cat(cols).to(self.device))
        return embeds.index_put(index, torch.cat(values).to(embeds.dtype))

    # ------------------------------------------------------------------ language model
    def _decoder(self, inputs_embeds, attention_mask, position_ids, past_key_values=None, use_cache=False):
        decoder = self.language_model.model
        key = _cache_argument(decoder)
        out = decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                      use_cache=use_cache, **{key: past_key_values})
        # the output field has the keyword's name; asking 5.24+ for `past_key_values` logs a deprecation
        return out.last_hidden_state, out.get(key)

    def logits_from_hidden(self, hidden: torch.Tensor, vocab_range: tuple[int, int] | None = None) -> torch.Tensor:
        """LM-head logits in fp32 for hidden states (..., D), optionally for the ids
        [start, stop) only (e.g. one code level: a fraction of the full-vocabulary cost)."""
        weight = self.language_model.lm_head.weight
        if vocab_range is not None:
            weight = weight[vocab_range[0]:vocab_range[1]]
        return F.linear(hidden.to(weight.dtype), weight).float()

    @torch.no_grad()
    def prefill(self, batch: "MultimodalBatch", past_key_values=None, vocab_range: tuple[int, int] | None = None,
                compute_logits: bool = True) -> StepOutput:
        """Run a left-padded batch through the LLM, filling a KV cache; logits at the last position
        only (none with compute_logits=False, for callers that apply the head themselves)."""
        embeds = self.embed_inputs(batch)
        return self._step(embeds, batch.attention_mask, batch.position_ids, past_key_values, vocab_range,
                          compute_logits)

    @torch.no_grad()
    def step(self, attention_mask: torch.Tensor, position_ids: torch.Tensor, past_key_values,
             input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
             vocab_range: tuple[int, int] | None = None, compute_logits: bool = True,
             all_positions: bool = False) -> StepOutput:
        """One decoding step on new tokens (B, k) given as ids or embeddings. `attention_mask`
        covers cache + new tokens (B, past + k), or is a ready (B, 1, k, past + k) boolean mask;
        `position_ids` (B, k) continue each row. With `all_positions` the output's hidden is
        (B, k, D) for every new token (speculative verification) and no logits are computed."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids.to(self.device))
        if all_positions:
            hidden, cache = self._decoder(inputs_embeds, attention_mask.to(self.device),
                                          position_ids.to(self.device), past_key_values, use_cache=True)
            return StepOutput(logits=None, hidden=hidden, past_key_values=cache)
        return self._step(inputs_embeds, attention_mask, position_ids, past_key_values, vocab_range, compute_logits)

    def _step(self, embeds, attention_mask, position_ids, past_key_values, vocab_range, compute_logits) -> StepOutput:
        hidden, cache = self._decoder(embeds, attention_mask.to(self.device), position_ids.to(self.device),
                                      past_key_values, use_cache=True)
        last = hidden[:, -1]
        logits = self.logits_from_hidden(last, vocab_range) if compute_logits else None
        return StepOutput(logits=logits, hidden=last, past_key_values=cache)

    # ------------------------------------------------------------------ training
    def forward(self, batch: "MultimodalBatch") -> IllumePlusOutput:
        """Next-token cross-entropy on the labelled positions (assistant replies) only."""
        if batch.labels is None:
            raise ValueError("forward computes the training loss and needs batch.labels; use prefill/step to decode")
        embeds = self.embed_inputs(batch)
        hidden, _ = self._decoder(embeds, batch.attention_mask.to(self.device), batch.position_ids.to(self.device))
        targets = batch.labels[:, 1:].to(self.device)  # position t predicts token t + 1
        keep = targets != self.config.ignore_index
        total, losses = self.label_loss(hidden[:, :-1][keep], targets[keep])
        rows = keep.nonzero()[:, 0]
        num_rows = targets.shape[0]
        return IllumePlusOutput(
            loss=total / losses.numel() if losses.numel() else hidden.sum() * 0.0,  # zero keeps the graph
            num_tokens=int(keep.sum()),
            row_loss_sums=losses.new_zeros(num_rows).index_add_(0, rows, losses),
            row_num_tokens=keep.sum(dim=1))

    def chunked_cross_entropy(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean CE of (N, D) hidden states against (N,) targets (see `label_loss`)."""
        if targets.numel() == 0:
            return hidden.sum() * 0.0  # no labelled token: a zero that keeps the graph
        return self.label_loss(hidden, targets)[0] / targets.numel()

    def label_loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed CE, (N,) detached per-position CE) of (N, D) hidden states against (N,)
        targets, through the LM head `loss_chunk_size` rows at a time: at most one chunk's fp32
        logits (chunk x vocab) exist at once, and the head's gradient once (mllm/loss.py)."""
        return linear_cross_entropy(hidden, self.language_model.lm_head.weight, targets, self.config.loss_chunk_size)

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.vision_tower_trainable:
            self.vision_tower.eval()  # frozen encoders never run in training mode
        return self

    # ------------------------------------------------------------------ saving and loading
    def save_pretrained(self, directory: str | os.PathLike, tokenizer=None) -> None:
        """config.json + model.safetensors + generation_config.json (+ the text tokenizer's files: the one given, else the
        attached processor's, so that `from_pretrained` restores the processor too)."""
        if tokenizer is None and getattr(self, "processor", None) is not None:
            tokenizer = self.processor.tokenizer
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        self.config.save_json(os.path.join(directory, CONFIG_NAME))
        save_safetensors(self.state_dict(), os.path.join(directory, WEIGHTS_NAME), metadata={"format": "pt"})
        self.generation_defaults.save(directory)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, dtype: torch.dtype | None = None,
                        device: str | torch.device = "cpu") -> "IllumePlus":
        from .processor import processor_in_folder

        directory = os.fspath(directory)
        config = IllumePlusConfig.from_json(os.path.join(directory, CONFIG_NAME))
        model = cls.from_state_dict(config, load_safetensors(os.path.join(directory, WEIGHTS_NAME), device=device),
                                    dtype=dtype)
        model.processor = processor_in_folder(directory, config)
        model.generation_defaults = GenerationDefaults.from_folder(directory)
        return model

    @classmethod
    def from_base_models(cls, config: IllumePlusConfig, language_model: str | os.PathLike | dict,
                         dualvitok=None) -> "IllumePlus":
        """The starting point of training (stage 1): a plain Qwen2 LLM whose vocabulary grows by
        the image tokens, DualViTok's encoders, new adaptors.

        `language_model`: a transformers Qwen2 folder (config.json + safetensors / .bin) or its
        state dict, with `config.text_vocab_rows` embedding rows. Its rows are kept; the new rows
        (and the adaptors) keep this model's random init, normal(0, 0.02) as the authors'
        `resize_token_embeddings` gave them. `dualvitok`: a DualViTok whose ViT and pixel
        encoder are copied (None: they stay random)."""
        base = dict(language_model) if isinstance(language_model, dict) else read_weights(language_model)
        model = cls(config)
        ours = model.language_model.state_dict()
        rows = config.text_vocab_rows
        unknown = sorted(set(base) - set(ours))
        missing = sorted(set(ours) - set(base) - ({"lm_head.weight"} if config.tie_word_embeddings else set()))
        if unknown or missing:
            raise ValueError(f"the base language model does not match the config: missing {missing[:10]}, "
                             f"unexpected {unknown[:10]}")
        with torch.no_grad():
            for key, tensor in base.items():
                target = ours[key]
                if key in ("model.embed_tokens.weight", "lm_head.weight"):
                    if tensor.shape != (rows, target.shape[1]):
                        raise ValueError(f"{key} has shape {tuple(tensor.shape)}; the config expects "
                                         f"{rows} text rows of width {target.shape[1]}")
                    target[:rows].copy_(tensor)
                elif tensor.shape != target.shape:
                    raise ValueError(f"{key}: base {tuple(tensor.shape)} vs model {tuple(target.shape)}")
                else:
                    target.copy_(tensor)
            if dualvitok is not None:
                model.vision_tower.semantic_encoder.load_state_dict(dualvitok.semantic_encoder.vit.state_dict())
                model.vision_tower.pixel_encoder.load_state_dict(dualvitok.pixel_encoder.state_dict())
        return model

    @classmethod
    def from_state_dict(cls, config: IllumePlusConfig, state_dict: dict,
                        dtype: torch.dtype | None = None) -> "IllumePlus":
        """Build on the meta device and take every tensor from `state_dict` (strict: every key
        consumed, nothing left uninitialised)."""
        with torch.device("meta"):
            model = cls(config)
        state_dict = dict(state_dict)
        if config.tie_word_embeddings:
            # one tensor under two names; a checkpoint may hold either name or both
            embed_key, head_key = "language_model.model.embed_tokens.weight", "language_model.lm_head.weight"
            if head_key not in state_dict and embed_key in state_dict:
                state_dict[head_key] = state_dict[embed_key]
            elif embed_key not in state_dict and head_key in state_dict:
                state_dict[embed_key] = state_dict[head_key]
        check_state_dict_keys(model, state_dict, "the IllumePlus config")
        model.load_state_dict(state_dict, strict=True, assign=True)
        if config.tie_word_embeddings:
            model.language_model.tie_weights()
        if dtype is not None:
            model.to(dtype)
        model.rebuild_rope_buffers()
        check_materialized(model)
        if config.freeze_vision_encoders:
            model.vision_tower.requires_grad_(False)
        return model.eval()

    def _apply(self, fn, recurse=True):
        """Every cast and move (`to`, `half`, `bfloat16`, `float`, `cuda`, ...) runs through
        here. The rotary inverse frequencies stay fp32, as in the authors' models (built in
        fp32 and never cast): rounded to bf16 they are off by up to 3.7e-3 relative, phase
        errors up to 1.7 rad at 1,500 tokens of distance, i.e. inside one 512² image."""
        rotary = [(module, name, buffer) for module in self.modules()
                  for name, buffer in module._buffers.items() if _is_rotary_frequency(name, buffer)]
        out = super()._apply(fn, recurse)
        for module, name, before in rotary:
            moved = module._buffers[name]
            if moved is not None and moved.dtype != before.dtype:
                module._buffers[name] = before.to(device=moved.device)
        if any(b.dtype != torch.float32 for _, _, b in rotary):  # already rounded by an earlier cast
            self.rebuild_rope_buffers()
        return out

    def rebuild_rope_buffers(self) -> None:
        """Recompute the RoPE inverse frequencies of the LLM and the ViT in fp32. Checkpoints do not
        hold them (non-persistent), building on the meta device leaves them empty, and a cast to
        bf16 would round them; the modules that own them rebuild them from their config."""
        for module in self.modules():
            names = [n for n in module._non_persistent_buffers_set if module._buffers.get(n) is not None]
            if names and hasattr(module, "config"):
                fresh = type(module)(module.config)
                for name in names:
                    module._buffers[name] = getattr(fresh, name).to(self.device)


def _is_rotary_frequency(name: str, buffer) -> bool:
    return buffer is not None and "inv_freq" in name and buffer.is_floating_point()


def _check_image(image: torch.Tensor, factor: int) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"each image must be a (3, H, W) tensor in [-1, 1], got {shape}")
    h, w = image.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"image sides must be multiples of {factor}, got {h}x{w} (use the processor to resize)")



__all__ = ["IllumePlus", "IllumePlusOutput", "StepOutput", "VisionEncoders", "Adaptor"]
