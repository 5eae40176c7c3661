"""Recipe step 2: the world's MLLM, the paper's three stages, and the final pipeline folder.

    illume-plus train world --stages 2        (after stage 1; see recipe.py)

What it does, each part resumable (a finished part leaves its output and is skipped on a rerun):
  data      world examples as the four list formats (`mllm_data.py`), train and validation, and their
            generation / editing targets pretokenised with the stage-1 DualViTok at 128x128
  stage 1   adaptors + the image rows of the embedding / LM head (the LLM's text rows frozen)
  stage 2   adaptors + the whole LLM
  stage 3   as stage 2 plus the last ViT block, the merger and the pixel encoder's top (lower LR)
  final     `Pipeline` folder: mllm/ (the last stage) + vision_tokenizer/ (stage 1) + pipeline.json

The LLM starts from random weights (no base LLM can be downloaded here, and none is this small):
stage 1 then only aligns the adaptors and the image rows to a random LLM, as the paper's stage 1
does to Qwen2.5; the learning happens in stage 2. Stage lengths are in steps, chosen from the
measured step time so the whole run fits in about an hour on 2 CPU cores (docs/world.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..utils.io import load_json
from .render import IMAGE_SIZE

logger = logging.getLogger(__name__)

# The world's LLM: Qwen2 architecture, 6 layers of width 256 (about 5M parameters), over the
# world's 643-entry text tokenizer (padded to 704 rows, as Qwen pads its vocabulary).
WORLD_MLLM = dict(
    hidden_size=256, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4, intermediate_size=768,
    text_vocab_rows=704, max_position_embeddings=4096,  # room for 1,024-token answers
    generation_sizes=[[IMAGE_SIZE, IMAGE_SIZE]], understanding_max_pixels=IMAGE_SIZE * IMAGE_SIZE,
    understanding_min_pixels=IMAGE_SIZE * IMAGE_SIZE,
)
# Sources and weights (uses per epoch): the image tasks are the long and hard ones.
MIXTURE_WEIGHTS = {"questions": 0.7, "chat": 0.1, "captions": 1.5, "edits": 1.5}
VISION = [r"vision_tower\.semantic_encoder\.blocks\.3\.", r"vision_tower\.semantic_encoder\.merger\.",
          r"vision_tower\.pixel_encoder\.(mid|norm_out|conv_out)\."]


@dataclass
class WorldMllmStage:
    name: str
    steps: int
    groups: list
    schedule: str = "cosine"
    warmup_ratio: float = 0.03


def world_stages(stage1_steps: int = 50, stage2_steps: int = 2300, stage3_steps: int = 300,
                 lr: float = 1e-3) -> list[WorldMllmStage]:
    adaptors = [r"semantic_adaptor\.", r"pixel_adaptor\."]
    return [
        WorldMllmStage("stage1", stage1_steps, [
            {"name": "adaptors", "patterns": adaptors, "lr": lr},
            {"name": "image_vocab", "patterns": [r"language_model\.model\.embed_tokens\.", r"language_model\.lm_head\."],
             "lr": lr, "rows": "image"}], schedule="constant", warmup_ratio=0.0),
        WorldMllmStage("stage2", stage2_steps, [
            {"name": "adaptors", "patterns": adaptors, "lr": lr},
            {"name": "llm", "patterns": [r"language_model\."], "lr": lr}]),
        WorldMllmStage("stage3", stage3_steps, [
            {"name": "adaptors", "patterns": adaptors, "lr": lr / 4},
            {"name": "llm", "patterns": [r"language_model\."], "lr": lr / 4},
            {"name": "vision", "patterns": VISION, "lr": lr / 40}]),
    ]


def prepare_data(out: Path, tokenizer_dir: Path, num_train: int, num_val: int) -> tuple[Path, Path]:
    """World examples in the four list formats, with pretokenised targets; returns the two mixtures."""
    from ..data.mllm.codes import pretokenize
    from ..tokenizer.model import DualViTok
    from .mllm_data import write_world_mllm_data

    tokenizer = None
    mixtures = []
    for split, num in (("train", num_train), ("val", num_val)):
        folder = out / "data" / "mllm" / split
        mixture = folder / "mixture.yaml"
        if not mixture.exists():
            write_world_mllm_data(folder, split, num, weights=MIXTURE_WEIGHTS)  # writes mixture.yaml last
        for kind in ("t2i", "edit"):
            codes = folder / "codes" / kind
            if not (codes / "summary.json").exists():
                tokenizer = tokenizer or DualViTok.from_pretrained(tokenizer_dir).eval()
                pretokenize(folder / f"{kind}.jsonl", kind, codes, tokenizer, [(IMAGE_SIZE, IMAGE_SIZE)],
                            image_root=folder)
        mixtures.append(mixture)
    return mixtures[0], mixtures[1]


def save_text_tokenizer(out: Path) -> Path:
    from .text_tokenizer import build_world_text_tokenizer

    folder = out / "text_tokenizer"
    if not (folder / "tokenizer.json").exists():
        build_world_text_tokenizer().save_pretrained(folder)
    return folder


def run_stage(out: Path, stage: WorldMllmStage, init_from: Path | None, tokenizer_dir: Path, text_tokenizer: Path,
              train_mixture: Path, val_mixture: Path, batch_size: int, minutes: float | None,
              model_overrides: dict | None = None, data_overrides: dict | None = None) -> Path:
    """One MLLM stage with the project's recipe (`training/mllm.py`); resumes when rerun.
    `data_overrides` are MllmDataSection fields (the ablations' `image_input`)."""
    from ..tokenizer.config import DualViTokConfig
    from ..training.mllm import MllmDataSection, MllmModelSection, MllmTrainingConfig, train
    from ..training.mllm_stages import StageSection
    from ..training.run import TrainSection

    folder = out / f"mllm_{stage.name}"
    if (folder / "DONE").exists():
        return folder / "final"
    tokenizer_config = DualViTokConfig.from_dict(load_json(tokenizer_dir / "config.json"))
    config = MllmTrainingConfig(
        model=MllmModelSection(preset="tiny", overrides={**WORLD_MLLM, **(model_overrides or {}),
                                                             "tokenizer": tokenizer_config.to_dict()},
                               vision_tokenizer=str(tokenizer_dir), text_tokenizer=str(text_tokenizer)),
        data=MllmDataSection(mixture=str(train_mixture), eval_mixture=str(val_mixture), eval_every=0,
                             eval_batches=8, max_length=512, cfg_dropout=0.1, group_by_size=False,
                             **(data_overrides or {})),
        stage=StageSection(name=f"world_{stage.name}", groups=stage.groups, schedule=stage.schedule,
                           warmup_ratio=stage.warmup_ratio, min_lr_ratio=0.05),
        train=TrainSection(output_dir=str(folder), seed=0, batch_size=batch_size, max_steps=stage.steps,
                           max_minutes=minutes, grad_clip=1.0, mixed_precision="no",
                           init_from=str(init_from) if init_from else None, checkpoint_every=50, keep_last=1,
                           log_every=10, device="cpu"),
    )
    train(config)
    (folder / "DONE").write_text("ok\n")
    return folder / "final"


def assemble_pipeline(mllm_dir: Path, tokenizer_dir: Path, out_dir: Path, description: str) -> Path:
    """The final folder `Pipeline.from_pretrained` loads: the MLLM with the DualViTok that made its codes."""
    from ..mllm.model import IllumePlus
    from ..pipeline import Pipeline
    from ..pipeline_folder import PipelineCard
    from ..tokenizer.model import DualViTok

    model = IllumePlus.from_pretrained(mllm_dir).eval()
    tokenizer = DualViTok.from_pretrained(tokenizer_dir).eval()
    card = PipelineCard(trained=True, description=description, default_size=(IMAGE_SIZE, IMAGE_SIZE),
                        sampling=DEFAULT_SAMPLING)
    pipe = Pipeline(model, vision_tokenizer=tokenizer, processor=model.processor)
    return pipe.save_pretrained(out_dir, card)


DESCRIPTION = ("the shape-world ILLUME+, trained on one CPU by `illume-plus train world` (docs/world.md). It knows "
               "128x128 scenes of up to 4 coloured shapes on a 3x3 grid: try \"a large red circle in the center\", "
               "ask \"where is the blue star?\" about a shape picture, or \"make the red circle green\".")
# Sampling defaults of the shipped world model (pipeline.json), chosen on validation scenes.
DEFAULT_SAMPLING = {"generate": {"guidance_scale": 2.0}, "edit": {"guidance_scale": 1.5}}


def stage2_mllm(out: Path, tokenizer_dir: Path, *, num_train: int = 6000, num_val: int = 128, batch_size: int = 16,
                steps: tuple[int, int, int] = (50, 2300, 300), lr: float = 1e-3, minutes: float | None = None,
                model_overrides: dict | None = None) -> Path:
    """Data, the three stages and the final pipeline folder (`out/final`). `model_overrides`
    change WORLD_MLLM (tests use a smaller LLM)."""
    train_mixture, val_mixture = prepare_data(out, tokenizer_dir, num_train, num_val)
    text_tokenizer = save_text_tokenizer(out)
    previous = None
    for stage in world_stages(*steps, lr=lr):
        previous = run_stage(out, stage, previous, tokenizer_dir, text_tokenizer, train_mixture, val_mixture,
                             batch_size, minutes, model_overrides)
    final = out / "final"
    if not (final / "pipeline.json").exists():
        assemble_pipeline(previous, tokenizer_dir, final, DESCRIPTION)
    return final


__all__ = ["WORLD_MLLM", "MIXTURE_WEIGHTS", "world_stages", "prepare_data", "run_stage", "assemble_pipeline",
           "stage2_mllm"]
