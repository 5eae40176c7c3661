import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from illume_plus.data import render_procedural_image
from illume_plus.diffusion import DiffusionDecoderConfig, DiffusionDecoderPipeline, size_condition_index
from illume_plus.training.checkpoint import CheckpointManager
from illume_plus.training.config import load_config
from illume_plus.training.decoder import (STAGE2_BUCKETS, AspectBucketTransform, DecoderTrainingConfig,
                                          build_components, build_tokenizer, diffusion_loss, main)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "decoder"
TINY = str(CONFIGS / "tiny_cpu.yaml")
# 64x64 outputs (token images 32x32: semantic grid 1x1, pixel grid 2x2, latent 8x8), no evaluation
SMALL = ["data.num_images=8", "data.source_sizes=[[64, 64]]", "buckets.sizes=[[64, 64]]", "train.batch_size=2",
         "eval.every=0", "train.progress_bar=false", "optimizer.warmup_steps=0", "train.log_every=1"]


def test_bucket_choice_and_crop_filter():
    transform = AspectBucketTransform([[128, 128], [96, 128], [128, 96]], max_crop_fraction=0.2)
    assert transform.target_size(112, 144) == (96, 128)  # 9:7 wide -> 4:3 bucket, 3.6% cropped
    assert transform.target_size(100, 150) == (96, 128)  # 3:2 -> 4:3, 11% cropped
    assert transform.target_size(300, 290) == (128, 128)
    assert transform.target_size(100, 200) is None  # 2:1 -> 4:3 would cut 1/3 of the image
    assert transform.target_size(64, 256) is None
    assert transform(render_procedural_image(0, 112, 144)).shape == (3, 96, 128)


def test_crop_fraction_threshold_is_inclusive():
    transform = AspectBucketTransform([[100, 100]], max_crop_fraction=0.2)
    assert transform.target_size(100, 125) == (100, 100)  # exactly 20% cropped: kept
    assert transform.target_size(100, 126) is None


def test_stage_configs_use_the_11_buckets():
    table = DiffusionDecoderConfig().size_table
    stage1 = load_config(DecoderTrainingConfig, CONFIGS / "stage1_512.yaml")
    stage2 = load_config(DecoderTrainingConfig, CONFIGS / "stage2_1024.yaml")
    assert len(stage2.buckets.sizes) == 11
    assert sorted(map(tuple, stage2.buckets.sizes)) == sorted(map(tuple, STAGE2_BUCKETS))
    # stage 2 outputs = the size table without 512² (same aspect as 1024²); table is (W, H)
    assert sorted((w, h) for h, w in stage2.buckets.sizes) == sorted(map(tuple, table[:11]))
    assert sorted(map(tuple, stage1.buckets.sizes)) == sorted((h // 2, w // 2) for h, w in STAGE2_BUCKETS)
    for h, w in stage1.buckets.sizes:  # 512² has its own entry; the others take their stage-2 twin's
        expected = 11 if (h, w) == (512, 512) else size_condition_index(2 * h, 2 * w, table)
        assert size_condition_index(h, w, table) == expected
    assert stage1.optimizer.lr == stage2.optimizer.lr == 2e-5
    assert (stage1.conditioning.perturb_sample_prob, stage1.conditioning.perturb_token_prob) == (0.5, 0.1)
    assert (stage1.conditioning.semantic_drop_prob, stage1.conditioning.pixel_drop_prob) == (0.1, 0.5)


def test_a_few_steps_overfit_a_fixed_batch(tmp_path):
    config = load_config(DecoderTrainingConfig, TINY, [f"train.output_dir={tmp_path}", *SMALL])
    tokenizer = build_tokenizer(config.tokenizer)
    decoder, vae, scheduler = build_components(config, tokenizer)
    noise_scheduler = DDPMScheduler.from_config(scheduler.config)
    images = torch.stack([torch.from_numpy(np.array(render_procedural_image(i, 64, 64))).permute(2, 0, 1)
                          for i in range(2)]).float() / 127.5 - 1
    timesteps, noise = torch.tensor([300, 700]), torch.randn(2, 4, 8, 8)
    optimizer = torch.optim.Adam(decoder.unet.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss = diffusion_loss(decoder, vae, tokenizer, noise_scheduler, images, None, timesteps, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    frozen = [*tokenizer.parameters(), *vae.parameters(), *decoder.code_embedder.parameters()]
    assert not any(p.requires_grad for p in frozen)  # only the UNet learns


def test_resume_is_exact_and_final_folder_loads(tmp_path):
    assert main([TINY, f"train.output_dir={tmp_path / 'straight'}", *SMALL, "train.max_steps=3"]) == 0
    resumed = [TINY, f"train.output_dir={tmp_path / 'resumed'}", *SMALL, "train.checkpoint_every=1"]
    main([*resumed, "train.max_steps=2"])
    main([*resumed, "train.max_steps=3"])  # continues from checkpoints/latest (step 2)
    a = CheckpointManager(tmp_path / "straight" / "checkpoints").latest()
    b = CheckpointManager(tmp_path / "resumed" / "checkpoints").latest()
    assert a.step == b.step == 3
    for name in ("model", "ema"):
        ta, tb = a.tensors(name), b.tensors(name)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), name
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    pipe = DiffusionDecoderPipeline.from_pretrained(tmp_path / "resumed" / "final_ema")
    out = pipe(torch.zeros(1, 1, 1, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long),
               num_inference_steps=1, output_type="pt", progress_bar=False)
    assert out.shape == (1, 3, 64, 64)
    assert pipe.vae.config.scaling_factor == pytest.approx(5.0)  # the recipe's calibration is saved
