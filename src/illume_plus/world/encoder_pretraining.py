"""Recipe step (0): a tiny Qwen2-VL vision tower aligned to world captions by contrastive learning.

ILLUME+'s semantic branch starts from a *text-aligned* ViT (Qwen2-VL's, pre-trained on
image-text pairs). Our stand-in: the same architecture at a tiny size (`tokenizer.semantic.build_vit`),
trained with the CLIP objective (symmetric InfoNCE, learnable temperature) against a small
transformer text encoder on fresh train-split scenes and their captions, then frozen and
handed to DualViTok as its semantic encoder.

The image side pools the ViT's merged tokens by *flattening* them into a projection (not by
averaging), so each token must say what is in its own 28x28 patch while the head keeps the
position: exactly the property the semantic codes need. Both projection heads are thrown
away; only the ViT (`vit.safetensors`, the authors' key names) is kept.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..tokenizer.config import DualViTokConfig
from ..tokenizer.semantic import build_vit, vit_merged_features
from ..training.checkpoint import CheckpointManager
from ..training.logging import MetricsLogger, ProgressBar
from ..utils.io import save_json, save_safetensors
from .render import render_scene
from .splits import example

logger = logging.getLogger(__name__)


@dataclass
class AlignmentConfig:
    steps: int = 1200
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 50
    embed_dim: int = 128  # joint embedding width
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    max_text_tokens: int = 48
    seed: int = 0
    checkpoint_every: int = 200
    eval_every: int = 200
    eval_size: int = 256  # retrieval among this many held-out (val) scenes


def images_tensor(scenes, size: int) -> torch.Tensor:
    arrays = np.stack([np.asarray(render_scene(s, size)) for s in scenes])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class TextEncoder(nn.Module):
    """Token embeddings + learned positions -> a few transformer layers -> masked mean -> projection."""

    def __init__(self, vocab_size: int, config: AlignmentConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.text_width)
        self.position = nn.Parameter(torch.randn(config.max_text_tokens, config.text_width) * 0.02)
        layer = nn.TransformerEncoderLayer(config.text_width, config.text_heads, 4 * config.text_width,
                                           dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, config.text_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.text_width)
        self.proj = nn.Linear(config.text_width, config.embed_dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.position[: ids.shape[1]]
        x = self.norm(self.layers(x, src_key_padding_mask=~mask))
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.proj(pooled)


class ContrastiveAligner(nn.Module):
    def __init__(self, tokenizer_config: DualViTokConfig, image_size: int, vocab_size: int, config: AlignmentConfig):
        super().__init__()
        self.tokenizer_config = tokenizer_config
        self.semantic_size = (max(28, image_size // 28 * 28),) * 2  # SPEC's floor-to-28 rule
        tokens = (self.semantic_size[0] // tokenizer_config.semantic_downsample) ** 2
        self.vit = build_vit(tokenizer_config)
        self.image_proj = nn.Sequential(nn.LayerNorm(tokenizer_config.vit_hidden_size),
                                        nn.Linear(tokenizer_config.vit_hidden_size, 32), nn.Flatten(1),
                                        nn.Linear(32 * tokens, config.embed_dim))
        self.text = TextEncoder(vocab_size, config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        features = vit_merged_features(self.vit, images, self.semantic_size, self.tokenizer_config)
        return F.normalize(self.image_proj(features), dim=-1)

    def encode_texts(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(ids, mask), dim=-1)

    def loss(self, images, ids, mask) -> tuple[torch.Tensor, float]:
        logits = self.logit_scale.exp().clamp(max=100) * self.encode_images(images) @ self.encode_texts(ids, mask).T
        labels = torch.arange(len(images))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        return loss, (logits.argmax(1) == labels).float().mean().item()


def tokenize(text_tokenizer, captions: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [text_tokenizer(c)["input_ids"][:max_tokens] for c in captions]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    return ids, mask


def batch(split: str, start: int, count: int, image_size: int, text_tokenizer, max_tokens: int):
    examples = [example(split, start + i) for i in range(count)]
    ids, mask = tokenize(text_tokenizer, [e.caption for e in examples], max_tokens)
    return images_tensor([e.scene for e in examples], image_size), ids, mask


@torch.no_grad()
def retrieval_accuracy(model: ContrastiveAligner, text_tokenizer, image_size: int, count: int,
                       max_tokens: int, split: str = "val") -> dict:
    """Top-1 retrieval among `count` held-out scenes, both directions; chance is 1/count."""
    model.eval()
    images, ids, mask = batch(split, 0, count, image_size, text_tokenizer, max_tokens)
    sims = model.encode_images(images) @ model.encode_texts(ids, mask).T
    labels = torch.arange(count)
    model.train()
    return {"image_to_text_top1": (sims.argmax(1) == labels).float().mean().item(),
            "text_to_image_top1": (sims.argmax(0) == labels).float().mean().item(),
            "retrieval_chance": 1.0 / count, "retrieval_candidates": count}


def train_text_aligned_vit(output_dir: str | Path, tokenizer_config: DualViTokConfig, text_tokenizer,
                           image_size: int, config: AlignmentConfig = AlignmentConfig(),
                           progress_bar: bool = True) -> dict:
    """Run (or resume) the alignment; writes `vit.safetensors` and `retrieval.json` into
    `output_dir` and returns the held-out retrieval figures."""
    output_dir = Path(output_dir)
    torch.manual_seed(config.seed)
    model = ContrastiveAligner(tokenizer_config, image_size, len(text_tokenizer), config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / config.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
    checkpoints = CheckpointManager(output_dir / "checkpoints", keep_last=1)
    log = MetricsLogger(output_dir / "metrics.jsonl")
    step = 0
    latest = checkpoints.latest()
    if latest is not None:
        model.load_state_dict(latest.tensors("model"))
        state = latest.training_state()
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step = state["step"]
        log.truncate_after(step)
    bar = ProgressBar(config.steps, initial=step, enabled=progress_bar, desc="align ViT")
    started = time.time()
    while step < config.steps:
        # Fresh scenes every step (the data stream is a function of the step: exact resume).
        images, ids, mask = batch("train", step * config.batch_size, config.batch_size, image_size,
                                  text_tokenizer, config.max_text_tokens)
        loss, accuracy = model.loss(images, ids, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        bar.update(step, config.batch_size, {"loss": loss.item(), "acc": accuracy})
        record = {"loss": loss.item(), "batch_accuracy": accuracy, "lr": schedule.get_last_lr()[0]}
        if step % config.eval_every == 0 or step == config.steps:
            record.update(retrieval_accuracy(model, text_tokenizer, image_size, config.eval_size,
                                             config.max_text_tokens))
        log.log(step, record)
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoints.save(step, {"model": model.state_dict()},
                             {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()})
    bar.close()
    figures = retrieval_accuracy(model, text_tokenizer, image_size, config.eval_size, config.max_text_tokens, "test")
    figures["train_seconds_this_run"] = round(time.time() - started, 1)
    save_safetensors(model.vit.state_dict(), output_dir / "vit.safetensors")
    save_json(figures, output_dir / "retrieval.json")
    logger.info("text-aligned ViT: %s", figures)
    return figures


__all__ = ["AlignmentConfig", "ContrastiveAligner", "TextEncoder", "train_text_aligned_vit", "retrieval_accuracy"]
