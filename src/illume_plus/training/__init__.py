"""Training infrastructure shared by the recipes (tokenizer, diffusion decoder) and the recipes.

- `distributed`: process group from torchrun's environment (gloo on CPU, nccl on GPU), collectives
- `checkpoint`:  atomic checkpoint directories, keep-last-N, `latest` pointer, RNG states, exact resume
- `ema`:         exponential moving average of trainable parameters
- `logging`:     JSON-lines metrics and a rank-0 progress bar
- `metrics`:     per-step scalars averaged over a logging window (each key over the steps it was logged)
- `run`:         what both recipes' step loops share: the `train` config section, run bookkeeping
                 (step, epoch, images seen summed across processes), the batch stream with
                 collective stop/skip, checkpoint/resume of that state, `final/` export
- `optim`:       Adam(W) with weight decay on matrices only, constant / warmup+cosine schedules
- `config`:      YAML recipe configs as nested dataclasses with `section.key=value` overrides
- `tokenizer`:   the DualViTok recipe (`illume-plus train tokenizer CONFIG [k=v ...]`)
- `decoder`:     the diffusion-decoder recipe (`illume-plus train decoder CONFIG [k=v ...]`)

Recipes are imported on demand (`illume_plus.training.tokenizer`), so this package stays light;
`run` too, as it imports the data package: `from illume_plus.training.run import ...`.
"""

from .checkpoint import Checkpoint, CheckpointManager, capture_rng_state, restore_rng_state
from .config import apply_overrides, load_config, parse_recipe_args, to_dict
from .distributed import (
    DistributedContext,
    all_gather_object,
    all_reduce_max,
    all_reduce_mean,
    all_reduce_sum,
    average_gradients,
    barrier,
    broadcast_buffers,
    broadcast_object,
    cleanup_distributed,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
)
from .ema import EMA
from .logging import MetricsLogger, ProgressBar, read_metrics
from .metrics import WindowedMetrics
from .optim import OptimizerConfig, build_optimizer, build_scheduler, lr_multiplier

__all__ = [
    "Checkpoint", "CheckpointManager", "capture_rng_state", "restore_rng_state",
    "apply_overrides", "load_config", "parse_recipe_args", "to_dict",
    "DistributedContext", "all_gather_object", "all_reduce_max", "all_reduce_mean", "all_reduce_sum",
    "average_gradients", "barrier", "broadcast_buffers", "broadcast_object", "cleanup_distributed",
    "get_rank", "get_world_size", "init_distributed", "is_distributed", "is_main_process",
    "EMA", "MetricsLogger", "ProgressBar", "read_metrics", "WindowedMetrics",
    "OptimizerConfig", "build_optimizer", "build_scheduler", "lr_multiplier",
]
