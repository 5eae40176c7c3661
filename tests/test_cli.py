"""The `illume-plus` dispatcher: help, routing, one-line user errors with exit 2, --debug."""

import subprocess
import sys

import pytest

from illume_plus import cli
from illume_plus.cli import main


def test_help_lists_every_registered_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in cli.COMMANDS:
        assert f"  {verb} " in out
    for group, target in cli.GROUPS:
        assert f"{group} {target}" in out


@pytest.mark.parametrize("group", ["train", "eval", "tokenize"])
def test_group_help_exits_zero_and_lists_its_targets(group, capsys):
    assert main([group, "--help"]) == 0
    out = capsys.readouterr().out
    assert all(target in out for g, target in cli.GROUPS if g == group)


def test_unknown_command_and_target_fail_with_usage(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main(["train", "llama"]) == 2
    assert "unknown target 'llama'" in capsys.readouterr().err
    assert main(["train"]) == 2


def test_a_new_subcommand_is_one_registration(monkeypatch, capsys):
    monkeypatch.setitem(cli.GROUPS, ("train", "toy"), ("tests.test_cli:_toy_command", "a toy"))
    assert main(["train", "toy", "x"]) == 7
    assert main(["train", "--help"]) == 0 and "toy" in capsys.readouterr().out


def _toy_command(argv):
    return 7 if argv == ["x"] else 1


def _failing_command(argv):
    raise ValueError("the thing is\n  wrong")


def test_user_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "fail", ("tests.test_cli:_failing_command", ""))
    assert main(["fail"]) == 2
    err = capsys.readouterr().err
    assert err == "illume-plus fail: error: the thing is wrong\n"
    with pytest.raises(ValueError, match="the thing is"):
        main(["fail", "--debug"])


@pytest.mark.parametrize("argv, message", [
    (["generate", "a cat", "--size", "0x0"], "size must be positive"),
    (["generate", "a cat", "--size", "100x100", "--any-size"], "multiple of 64"),
    (["generate", "   "], "the prompt is empty"),
    (["generate", "a cat", "--out", "picture.txt"], "ending in .png"),
    (["edit", "missing.png", "make it blue"], "image not found: missing.png"),
    (["generate", "a cat", "--model", "no/such/folder"], "--model not found"),
    (["understand", "missing.png", "what?"], "image not found"),
])
def test_bad_arguments_fail_before_anything_is_loaded(argv, message, monkeypatch, capsys):
    import illume_plus.pipeline_folder as folder

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(folder, "load_pipeline", never)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_console_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "illume_plus", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "illume-plus" in done.stdout
    done = subprocess.run([sys.executable, "-m", "illume_plus", "train", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "tokenizer" in done.stdout


def test_mllm_training_commands_are_routed(capsys, tmp_path):
    assert main(["train", "llama"]) == 2
    assert "mllm" in capsys.readouterr().err
    missing = tmp_path / "nope.yaml"
    assert main(["train", "mllm", str(missing)]) == 2  # the recipe was reached and named its config
    assert str(missing) in capsys.readouterr().err
    assert main(["pretokenize", "--help"]) == 0
    assert "--max-crop" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "tokenizer", "configs/tokenizer/tiny_cpu.yaml", "bogus.key=3"], "unknown keys in config: ['bogus']"),
    (["train", "tokenizer", "no/such.yaml"], "config file not found: no/such.yaml"),
])
def test_recipe_errors_are_one_line(argv, message, capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
