"""Runs the MLLM recipe in a test subprocess (torchrun), optionally crashing after a step.

    python -m torch.distributed.run --standalone --nproc_per_node 2 mllm_run.py [--crash-after=N] CONFIG k=v ...
"""

import logging
import sys

from illume_plus.training import mllm
from illume_plus.training.config import load_config


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO)
    crash_after = None
    if argv[0].startswith("--crash-after="):
        crash_after, argv = int(argv[0].split("=")[1]), argv[1:]
    config = load_config(mllm.MllmTrainingConfig, argv[0], argv[1:])
    if crash_after is not None:
        crash_when_step_done(crash_after)
    mllm.train(config)


def crash_when_step_done(step: int) -> None:
    """Raise right after optimiser step `step` (before its checkpoint): a killed run."""
    real, calls = mllm.task_losses, [0]

    def task_losses(*args):
        calls[0] += 1
        if calls[0] == step:
            raise KeyboardInterrupt(f"simulated kill after step {step}")
        return real(*args)

    mllm.task_losses = task_losses


if __name__ == "__main__":
    main(sys.argv[1:])
