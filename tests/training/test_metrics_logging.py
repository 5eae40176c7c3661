import torch

from illume_plus.training.logging import MetricsLogger, read_metrics


def test_log_lines_and_truncation_on_resume(tmp_path):
    logger = MetricsLogger(tmp_path / "m.jsonl")
    for step in (10, 20, 30):
        logger.log(step, {"loss": torch.tensor(step / 10), "lr": 1e-4})
    assert [m["loss"] for m in read_metrics(tmp_path / "m.jsonl")] == [1.0, 2.0, 3.0]
    logger.truncate_after(20)  # resumed from the step-20 checkpoint: step 30 will be logged again
    logger.log(30, {"loss": 9.0})
    assert [(m["step"], m["loss"]) for m in read_metrics(tmp_path / "m.jsonl")] == [(10, 1.0), (20, 2.0), (30, 9.0)]


def test_disabled_logger_writes_nothing(tmp_path):
    MetricsLogger(tmp_path / "off.jsonl", enabled=False).log(1, {"loss": 1.0})
    assert not (tmp_path / "off.jsonl").exists()
