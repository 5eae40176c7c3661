"""The MLLM recipe end to end on the tiny preset: exact resume, stage-1 row mask, export."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from illume_plus.training import mllm
from illume_plus.training.config import load_config
from illume_plus.training.logging import read_metrics
from illume_plus.utils.io import load_safetensors

from ..data.mllm.helpers import make_mllm_data
from .mllm_run import crash_when_step_done

ROOT = Path(__file__).resolve().parents[2]
STAGE1 = ROOT / "configs" / "mllm" / "tiny_stage1.yaml"
STAGE2 = ROOT / "configs" / "mllm" / "tiny_stage2.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mllm_recipe_data")
    return make_mllm_data(root, num=8), root / "dualvitok"


def _overrides(data, out: Path, **more) -> list[str]:
    mixture, dualvitok = data
    values = {"data.mixture": mixture, "data.eval_mixture": "null", "model.vision_tokenizer": dualvitok,
              "train.output_dir": out, "train.max_steps": 4, "train.checkpoint_every": 2, "train.batch_size": 4,
              "train.log_every": 1, "train.progress_bar": "false", **more}
    return [f"{k}={v}" for k, v in values.items()]


def _final(out: Path) -> dict:
    return load_safetensors(out / "final" / "model.safetensors")


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"differ: {different[:5]}"


def test_stage1_killed_and_resumed_equals_uninterrupted_and_text_rows_never_move(data, tmp_path, monkeypatch):
    straight = mllm.train(load_config(mllm.MllmTrainingConfig, STAGE1, _overrides(data, tmp_path / "a")))
    del straight
    config = load_config(mllm.MllmTrainingConfig, STAGE1, _overrides(data, tmp_path / "b"))
    with monkeypatch.context() as patch:
        patch.setattr(mllm, "task_losses", mllm.task_losses)
        crash_when_step_done(3)  # killed after step 3, before step 4; the last checkpoint is step 2
        with pytest.raises(KeyboardInterrupt):
            mllm.train(config)
    assert (tmp_path / "b" / "checkpoints" / "latest").read_text().strip() == "step_00000002"
    mllm.train(config)  # the same command again resumes
    a, b = _final(tmp_path / "a"), _final(tmp_path / "b")
    _assert_same(a, b)
    # the metrics log reads as one run
    steps = [r["step"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4]
    # a sharded checkpoint without its DCP metadata is damaged: resuming falls back past it
    from illume_plus.training.sharded_checkpoint import ShardedCheckpointManager

    (tmp_path / "b" / "checkpoints" / "step_00000004" / "dcp" / ".metadata").unlink()
    assert ShardedCheckpointManager(tmp_path / "b" / "checkpoints").latest().step == 2

    # stage 1: text rows of the tied embedding bit for bit as initialised, image rows trained,
    # everything outside the adaptors and the embedding untouched
    torch.manual_seed(0)
    initial, processor = mllm.build_model_and_processor(config.model, None)
    start = initial.state_dict()
    key = "language_model.model.embed_tokens.weight"
    from illume_plus.training.mllm_stages import image_vocab_rows

    image = image_vocab_rows(processor.layout, start[key].shape[0])
    assert torch.equal(a[key][~image], start[key][~image])
    assert not torch.equal(a[key][image], start[key][image])
    for name, tensor in start.items():
        if not name.startswith(("semantic_adaptor.", "pixel_adaptor.")) and "embed_tokens" not in name \
                and "lm_head" not in name:
            assert torch.equal(a[name], tensor), name


def test_export_loads_in_pipeline_and_next_stage_starts_from_it(data, tmp_path):
    from illume_plus import IllumePlus, Pipeline
    from illume_plus.data.mllm.synthetic import render

    mllm.train(load_config(mllm.MllmTrainingConfig, STAGE1, _overrides(data, tmp_path / "s1", **{
        "train.max_steps": 2})))
    model = IllumePlus.from_pretrained(tmp_path / "s1" / "final")
    answer = Pipeline(model).understand(render("circle", "red", "white", (64, 64), (0.2, 0.2, 0.8, 0.8)),
                                        "What shape?", max_new_tokens=3)
    assert isinstance(answer, str)
    # stage 2 from stage 1's export: the LLM trains now, at the configured LR, logged per group
    mllm.train(load_config(mllm.MllmTrainingConfig, STAGE2, _overrides(data, tmp_path / "s2", **{
        "train.init_from": tmp_path / "s1" / "final", "train.max_steps": 2, "stage.schedule": "constant",
        "stage.warmup_ratio": 0.0})))
    before, after = _final(tmp_path / "s1"), _final(tmp_path / "s2")
    assert not torch.equal(before["language_model.model.layers.0.mlp.up_proj.weight"],
                           after["language_model.model.layers.0.mlp.up_proj.weight"])
    assert torch.equal(before["vision_tower.pixel_encoder.conv_in.weight"],
                       after["vision_tower.pixel_encoder.conv_in.weight"])
    record = read_metrics(tmp_path / "s2" / "metrics.jsonl")[0]
    assert record["lr_llm"] == record["lr_adaptors"] == 1e-3
    assert {"loss_understanding", "loss_t2i", "loss_edit", "tokens_per_second"} <= record.keys()


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(Path(__file__).with_name("mllm_run.py")), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_fsdp2_two_cpu_processes_resume_exactly(data, tmp_path):
    """FSDP2 over two gloo processes: killed after step 3 and resumed ends bit for bit where an
    uninterrupted run ends; DCP shards in the checkpoints; stage-1 text rows untouched."""
    straight = _torchrun([str(STAGE1), *_overrides(data, tmp_path / "a")], tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = _torchrun(["--crash-after=3", str(STAGE1), *_overrides(data, tmp_path / "b")], tmp_path)
    assert killed.returncode != 0 and "simulated kill after step 3" in killed.stderr
    checkpoint = tmp_path / "b" / "checkpoints" / "step_00000002"
    assert (checkpoint / "dcp" / ".metadata").is_file() and (checkpoint / "rank_00001.pt").is_file()
    assert len(list((checkpoint / "dcp").glob("*.distcp"))) == 2  # one shard file per process
    resumed = _torchrun([str(STAGE1), *_overrides(data, tmp_path / "b")], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    a, b = _final(tmp_path / "a"), _final(tmp_path / "b")
    _assert_same(a, b)

    torch.manual_seed(0)
    config = load_config(mllm.MllmTrainingConfig, STAGE1, _overrides(data, tmp_path / "c"))
    initial, processor = mllm.build_model_and_processor(config.model, None)
    from illume_plus.training.mllm_stages import image_vocab_rows

    key = "language_model.model.embed_tokens.weight"
    image = image_vocab_rows(processor.layout, a[key].shape[0])
    assert torch.equal(a[key][~image], initial.state_dict()[key][~image])
    assert not torch.equal(a[key][image], initial.state_dict()[key][image])
