"""MLLM training recipe: the paper's three progressive stages (SPEC §3 "Training stages").

    illume-plus train mllm configs/mllm/tiny_stage1.yaml train.output_dir=runs/s1
    torchrun --nproc_per_node 8 -m illume_plus.training.mllm configs/mllm/stage2_256.yaml

One step: the collated batch (frames, labels on assistant replies, condition dropout; see
data/mllm/collator.py) -> next-token CE over the labelled positions, chunked through the LM head
(no full-vocabulary logits) -> backward -> the stage's row masks (stage 1: text rows get no
update) -> grad clipping -> AdamW (one group per stage group, each at its LR) -> LR schedule.

With torchrun the model is sharded with FSDP2 (training/fsdp.py); checkpoints are DCP shards
(training/sharded_checkpoint.py): rerunning the same command resumes exactly. A finished run
writes `final/` in `IllumePlus.save_pretrained` format (with its tokenizer), which
`Pipeline(IllumePlus.from_pretrained(...))` loads and the next stage's `train.init_from` reads.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..data import BucketBatchSampler
from ..data.mllm import MixtureDataset, MllmCollator, TrainingBatch, load_mixture
from ..mllm.config import IllumePlusConfig
from ..mllm.model import IllumePlus
from ..mllm.processor import IllumePlusProcessor
from .checkpoint import restore_rng_state
from .config import parse_recipe_args
from .distributed import DistributedContext, all_reduce_max, all_reduce_sum, cleanup_distributed, init_distributed
from .ema import EMA
from .fsdp import full_state_dict, full_tensor, shard_model
from .logging import MetricsLogger, ProgressBar
from .metrics import WindowedMetrics
from .mllm_stages import RowMasks, StageSection, assign_groups, build_stage_optimizer
from .optim import OptimizerConfig, build_scheduler
from .run import TrainSection, autocast_settings, prepare_output_dir, seed_process, use_bf16
from .sharded_checkpoint import ShardedCheckpointManager

logger = logging.getLogger(__name__)
TASKS = ("understanding", "text", "t2i", "edit")


# ----------------------------------------------------------------------------- config
@dataclass
class MllmModelSection:
    preset: str = "tiny"  # IllumePlusConfig preset, used when not starting from train.init_from
    overrides: dict = field(default_factory=dict)  # other IllumePlusConfig fields
    language_model: str | None = None  # stage-1 start: base Qwen2 folder (None: random LLM)
    vision_tokenizer: str | None = None  # stage-1 start: DualViTok folder whose encoders are copied
    text_tokenizer: str | None = None  # Qwen2 tokenizer folder (None: the built-in tiny tokenizer)
    gradient_checkpointing: bool = False  # recompute each decoder layer in backward


@dataclass
class MllmDataSection:
    mixture: str | None = None  # mixture YAML (sources with weights)
    sources: list = field(default_factory=list)  # more sources, inline
    max_length: int = 4096  # tokens; longer samples are cut outside image frames, or skipped
    cfg_dropout: float = 0.1  # condition dropout of t2i and edit samples
    group_by_size: bool = True  # batch generation / editing samples of one target size together
    understanding_max_pixels: int | None = None  # None: the model config's (768²)
    eval_mixture: str | None = None  # held-out mixture: loss per task every eval_every steps and at the end
    eval_every: int = 0
    eval_batches: int = 50  # at most this many batches per evaluation
    # How conversation images enter: "continuous" (the paper: ViT + pixel-encoder features) or
    # "codes" (their DualViTok code tokens, Table 6's discrete-input baseline; needs model.vision_tokenizer)
    image_input: str = "continuous"


@dataclass
class MllmTrainingConfig:
    model: MllmModelSection = field(default_factory=MllmModelSection)
    data: MllmDataSection = field(default_factory=MllmDataSection)
    stage: StageSection = field(default_factory=StageSection)
    train: TrainSection = field(default_factory=lambda: TrainSection(output_dir="runs/mllm"))


# ----------------------------------------------------------------------------- building blocks
def build_model_and_processor(section: MllmModelSection, init_from: str | None) -> tuple[IllumePlus, IllumePlusProcessor]:
    """The previous stage's `save_pretrained` folder, or the stage-1 start (base LLM + DualViTok encoders)."""
    if init_from:
        if not Path(init_from, "config.json").is_file():
            raise FileNotFoundError(f"train.init_from: no IllumePlus save_pretrained folder at {init_from}")
        model = IllumePlus.from_pretrained(init_from)
        if model.processor is None:
            raise ValueError(f"{init_from} holds no tokenizer files; save it with its tokenizer")
        return model, model.processor
    config = IllumePlusConfig.from_name(section.preset, **section.overrides)
    dualvitok = None
    if section.vision_tokenizer:
        from ..tokenizer.model import DualViTok

        dualvitok = DualViTok.from_pretrained(section.vision_tokenizer)
    if section.language_model:
        model = IllumePlus.from_base_models(config, section.language_model, dualvitok)
    else:
        logger.warning("model.language_model is not set: the LLM starts from random weights")
        model = IllumePlus(config)
        if dualvitok is not None:
            model.vision_tower.semantic_encoder.load_state_dict(dualvitok.semantic_encoder.vit.state_dict())
            model.vision_tower.pixel_encoder.load_state_dict(dualvitok.pixel_encoder.state_dict())
    if section.text_tokenizer:
        from transformers import AutoTokenizer

        text_tokenizer = AutoTokenizer.from_pretrained(section.text_tokenizer)
    else:
        from ..mllm.text_tokenizer import build_tiny_text_tokenizer

        text_tokenizer = build_tiny_text_tokenizer()
    processor = IllumePlusProcessor.from_text_tokenizer(text_tokenizer, config)
    model.processor = processor
    return model, processor


def build_data(section: MllmDataSection, processor: IllumePlusProcessor, cfg: TrainSection, ctx: DistributedContext,
               mixture: str | None, sources=(), cfg_dropout: float | None = None, vision_tokenizer: str | None = None):
    """Mixture dataset + this process's loader (bucketed, sharded, resumable batches)."""
    if section.understanding_max_pixels:  # the processor reads understanding images within these bounds
        processor = IllumePlusProcessor(processor.tokenizer, replace(
            processor.config, understanding_max_pixels=section.understanding_max_pixels))
    dataset = MixtureDataset(load_mixture(mixture, list(sources)), seed=cfg.seed, group_by_size=section.group_by_size)
    collator = MllmCollator(processor, section.max_length,
                            section.cfg_dropout if cfg_dropout is None else cfg_dropout, seed=cfg.seed,
                            image_codes=image_code_reader(section, vision_tokenizer, processor))
    sampler = BucketBatchSampler(dataset.sample_sizes(), cfg.batch_size, seed=cfg.seed, shuffle=True,
                                 drop_last=cfg.drop_last, num_replicas=ctx.world_size, rank=ctx.rank)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collator, num_workers=cfg.num_workers,
                        generator=torch.Generator().manual_seed(cfg.seed))
    return dataset, loader


def image_code_reader(section: MllmDataSection, vision_tokenizer: str | None, processor: IllumePlusProcessor):
    """None for continuous image input; for `image_input: codes`, the DualViTok that reads images as codes."""
    if section.image_input == "continuous":
        return None
    if section.image_input != "codes":
        raise ValueError(f"data.image_input must be 'continuous' or 'codes', got {section.image_input!r}")
    if not vision_tokenizer:
        raise ValueError("data.image_input=codes needs model.vision_tokenizer (the DualViTok that makes the codes)")
    from ..data.mllm import ImageCodeReader
    from ..tokenizer.model import DualViTok

    return ImageCodeReader(DualViTok.from_pretrained(vision_tokenizer), processor)


@dataclass
class Position:
    """Where the run stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` consumed (skipped ones included)
    samples_seen: int = 0  # all processes, as of the last log
    tokens_seen: int = 0
    skipped: Counter = field(default_factory=Counter)  # this process's skipped samples by reason


def batches(loader: DataLoader, position: Position, max_steps: int, deadline: float | None,
            device: torch.device) -> Iterator[TrainingBatch]:
    """This process's batches from where `position` stands, epoch after epoch, until max_steps or
    the deadline. Stop and skip are collective: every process runs the same steps (a step is
    skipped when some process's samples were all skipped)."""
    import time

    sampler, dataset = loader.batch_sampler, loader.dataset
    while position.step < max_steps:
        if position.batch_in_epoch >= sampler.batches_per_epoch():
            position.epoch, position.batch_in_epoch = position.epoch + 1, 0
        dataset.set_epoch(position.epoch)
        sampler.set_epoch(position.epoch, start_batch=position.batch_in_epoch)
        whole_epoch, used = position.batch_in_epoch == 0, 0
        for item in loader:
            late = deadline is not None and time.perf_counter() > deadline
            flags = all_reduce_max(torch.tensor([late, item.batch is None], dtype=torch.float32, device=device))
            if flags[0] > 0:
                return
            position.batch_in_epoch += 1
            position.skipped.update(item.skipped)
            if flags[1] > 0:
                continue
            used += 1
            yield item
            if position.step >= max_steps:
                return
        if whole_epoch and used == 0:  # never loop over unusable data forever
            raise ValueError(f"a whole epoch of the data mixture gave no usable batch; samples skipped: "
                             f"{dict(position.skipped)} (see the warnings above)")


def task_losses(out, tasks: list[str]) -> dict[str, tuple[float, int]]:
    """{task: (CE sum, labelled tokens)} of one batch, from the model's per-row sums."""
    sums: dict[str, tuple[float, int]] = {}
    for row, task in enumerate(tasks):
        total, count = sums.get(task, (0.0, 0))
        sums[task] = (total + float(out.row_loss_sums[row]), count + int(out.row_num_tokens[row]))
    return sums


@torch.no_grad()
def evaluate(model, loader, max_batches: int, autocast: dict, device) -> dict[str, float]:
    """Collective: mean CE per task (and overall) on a held-out loader, no condition dropout."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(2 * len(TASKS), dtype=torch.float64, device=device)
    loader.batch_sampler.set_epoch(0)
    for i, item in enumerate(loader):
        if i >= max_batches:
            break
        if item.batch is None:
            continue
        with torch.autocast(**autocast):
            out = model(item.batch.to(device))
        for task, (total, count) in task_losses(out, item.tasks).items():
            k = TASKS.index(task)
            totals[2 * k] += total
            totals[2 * k + 1] += count
    model.train(was_training)
    totals = all_reduce_sum(totals)
    record = {f"eval_loss_{t}": (totals[2 * k] / totals[2 * k + 1]).item()
              for k, t in enumerate(TASKS) if totals[2 * k + 1] > 0}
    record["eval_loss"] = (totals[0::2].sum() / totals[1::2].sum().clamp(min=1)).item()
    return record


# ----------------------------------------------------------------------------- training
def train(config: MllmTrainingConfig) -> IllumePlus:
    """Run (or resume) a stage; returns this process's model (sharded under torchrun)."""
    import time

    cfg = config.train
    ctx = init_distributed(cfg.device)
    device = ctx.device
    output_dir = prepare_output_dir(cfg.output_dir, config, ctx.is_main, resume=cfg.resume)

    # ---- model, stage, optimiser (same seed everywhere: identical initial weights) ----
    torch.manual_seed(cfg.seed)
    model, processor = build_model_and_processor(config.model, cfg.init_from)
    groups = assign_groups(model, config.stage.parameter_groups())
    row_masks = RowMasks(model, groups, processor.layout)
    if config.model.gradient_checkpointing:
        model.language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(device)
    bf16 = use_bf16(cfg.mixed_precision, device)
    if ctx.is_distributed:
        shard_model(model, device, bf16=bf16 and device.type == "cuda")
    row_masks.place(model)
    optimizer = build_stage_optimizer(model, groups, config.stage)
    schedule = OptimizerConfig(schedule=config.stage.schedule, min_lr_ratio=config.stage.min_lr_ratio,
                               warmup_steps=int(config.stage.warmup_ratio * cfg.max_steps))
    scheduler = build_scheduler(optimizer, schedule, cfg.max_steps)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    trainable = [p for p in model.parameters() if p.requires_grad]

    # ---- data ----
    vision_tokenizer = config.model.vision_tokenizer
    dataset, loader = build_data(config.data, processor, cfg, ctx, config.data.mixture, config.data.sources,
                                 vision_tokenizer=vision_tokenizer)
    eval_loader = None
    if config.data.eval_mixture:
        # shuffled once (epoch 0, every time): the first eval_batches mix every task
        _, eval_loader = build_data(config.data, processor, cfg, ctx, config.data.eval_mixture, cfg_dropout=0.0,
                                    vision_tokenizer=vision_tokenizer)
    if ctx.is_main:
        logger.info("data: %s; left out at start: %s", dataset.report.per_source, dict(dataset.report.left_out))

    # ---- resume, or start ----
    checkpoints = ShardedCheckpointManager(output_dir / "checkpoints", keep_last=cfg.keep_last)
    metrics_log = MetricsLogger(output_dir / "metrics.jsonl", enabled=ctx.is_main)
    latest = checkpoints.latest() if cfg.resume else None
    position = Position()
    if latest is not None:
        checkpoints.load_sharded(latest, model, optimizer, {"ema": ema.shadow} if ema else None)
        state = latest.training_state()
        scheduler.load_state_dict(state["scheduler"])
        position = Position(**{**state["position"], "skipped": Counter(state["position"]["skipped"])})
        rank_state = latest.rank_state()
        if rank_state is not None:
            restore_rng_state(rank_state)
            position.skipped = Counter(rank_state["skipped"])
        else:
            logger.warning("%s has no state for rank %d (world size changed); reseeding", latest.path, ctx.rank)
            seed_process(cfg.seed, ctx.rank, position.step)
        logger.info("resumed from %s at step %d", latest.path, position.step)
    else:
        seed_process(cfg.seed, ctx.rank)
    metrics_log.start(position.step if latest is not None else None)  # the log reads as one run

    def save_now():  # collective
        state = {"scheduler": scheduler.state_dict(), "config_stage": config.stage.name,
                 "position": {**position.__dict__, "skipped": {}}}
        from .checkpoint import capture_rng_state

        checkpoints.save_sharded(position.step, model, optimizer, state, {"ema": ema.shadow} if ema else None,
                                 rank_state={**capture_rng_state(), "skipped": dict(position.skipped)})
        saved_steps.append(position.step)

    def log_window():  # collective
        record = window.summary()
        samples = int(all_reduce_sum(torch.tensor(window_counts[0], device=device)).item())
        tokens = int(all_reduce_sum(torch.tensor(window_counts[1], device=device)).item())
        elapsed = time.perf_counter() - window_counts[2]
        position.samples_seen += samples
        position.tokens_seen += tokens
        window_counts[:] = [0, 0, time.perf_counter()]
        record.pop("images_per_second", None)
        for task in TASKS:  # per-task mean CE = CE sum / labelled tokens, over the window and processes
            total, count = record.pop(f"loss_sum_{task}"), record.pop(f"tokens_{task}")
            if count > 0:
                record[f"loss_{task}"] = total / count
        skipped = all_reduce_sum(torch.tensor([position.skipped[r] for r in SKIP_REASONS], device=device))
        record.update(tokens_per_second=tokens / max(elapsed, 1e-9), samples_seen=position.samples_seen,
                      tokens_seen=position.tokens_seen, epoch=position.epoch,
                      **{f"lr_{g['name']}": g["lr"] for g in optimizer.param_groups},
                      **{f"skipped_{r}": int(n) for r, n in zip(SKIP_REASONS, skipped.tolist()) if n})
        metrics_log.log(position.step, record)
        return record

    deadline = None if cfg.max_minutes is None else time.perf_counter() + 60 * cfg.max_minutes
    autocast = autocast_settings(cfg.mixed_precision, device)
    window = WindowedMetrics(device)
    window_counts = [0, 0, time.perf_counter()]  # samples, tokens, window start
    saved_steps = [position.step] if latest is not None else []
    bar = ProgressBar(cfg.max_steps, initial=position.step, enabled=ctx.is_main and cfg.progress_bar, desc=config.stage.name,
                      unit="tok")
    if eval_loader is not None and latest is None:  # the held-out loss of the starting weights
        metrics_log.log(0, evaluate(model, eval_loader, config.data.eval_batches, autocast, device))
    model.train()
    for item in batches(loader, position, cfg.max_steps, deadline, device):
        batch = item.batch.to(device)
        with torch.autocast(**autocast):
            out = model(batch)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        row_masks.apply()  # before clipping: the text rows' gradients do not count
        logs = {"loss": out.loss.detach()}
        if cfg.grad_clip > 0:
            logs["grad_norm"] = full_tensor(torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip))
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update(model)

        position.step += 1
        # per-task losses over processes: every process logs every task key (NaN-free: sums, counts)
        sums = task_losses(out, item.tasks)
        for task in TASKS:
            total, count = sums.get(task, (0.0, 0))
            logs[f"loss_sum_{task}"], logs[f"tokens_{task}"] = total, count
        window.add(logs, len(item.tasks))
        window_counts[0] += len(item.tasks)
        window_counts[1] += item.num_tokens
        bar.update(position.step, item.num_tokens, {"loss": out.loss.item(), **{
            t: s / c for t, (s, c) in sums.items() if c}})

        if position.step % cfg.log_every == 0 or position.step == cfg.max_steps:
            log_window()
        if eval_loader is not None and config.data.eval_every and position.step % config.data.eval_every == 0 \
                and position.step < cfg.max_steps:  # the last step's evaluation comes after the loop
            metrics_log.log(position.step, evaluate(model, eval_loader, config.data.eval_batches, autocast, device))
        if position.step % cfg.checkpoint_every == 0:
            save_now()
    bar.close()

    if len(window):
        log_window()
    if eval_loader is not None:  # the held-out loss of the final weights
        record = evaluate(model, eval_loader, config.data.eval_batches, autocast, device)
        metrics_log.log(position.step, {**record, "final": True})
        if ctx.is_main:
            logger.info("held-out loss at step %d: %s", position.step, record)
    if not saved_steps or saved_steps[-1] != position.step:
        save_now()
    export(model, processor, output_dir / "final", ctx)
    if ema is not None:
        with ema.average_parameters(model):
            export(model, processor, output_dir / "final_ema", ctx)
    skipped = all_reduce_sum(torch.tensor([position.skipped[r] for r in SKIP_REASONS], device=device))
    if ctx.is_main:
        logger.info("done at step %d; samples skipped by reason: %s; left out at start: %s", position.step,
                    {r: int(n) for r, n in zip(SKIP_REASONS, skipped.tolist()) if n}, dict(dataset.report.left_out))
    cleanup_distributed()
    return model


SKIP_REASONS = ("too_long", "unreadable_image", "bad_sample", "no_supervised_tokens")


def export(model: IllumePlus, processor: IllumePlusProcessor, directory: Path, ctx: DistributedContext) -> None:
    """Collective: `IllumePlus.save_pretrained` of the (possibly sharded) model, on rank 0."""
    state = full_state_dict(model) if ctx.is_distributed else {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if ctx.is_main:
        IllumePlus.from_state_dict(model.config, state).save_pretrained(directory, tokenizer=processor.tokenizer)


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_recipe_args(
        MllmTrainingConfig, argv, prog="illume-plus train mllm",
        description="Train the ILLUME+ MLLM, one stage per config. Overrides are section.key=value, "
                    "e.g. train.max_steps=100 data.mixture=data/mix.yaml",
        example="configs/mllm/tiny_stage1.yaml")
    train(config)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
