import json

import torch

from illume_plus.cli import main as cli_main
from illume_plus.tokenizer.model import DualViTok
from illume_plus.world.encoder_pretraining import AlignmentConfig, train_text_aligned_vit
from illume_plus.world.recipe import world_tokenizer_config, write_images
from illume_plus.world.text_tokenizer import build_world_text_tokenizer

SMALL_VIT = dict(vit_depth=1, vit_embed_dim=32, vit_num_heads=2, vit_hidden_size=64)


def test_alignment_writes_a_loadable_vit_and_resumes(tmp_path):
    torch.set_num_threads(1)
    tokenizer_config = world_tokenizer_config(**SMALL_VIT)
    config = AlignmentConfig(steps=2, batch_size=4, eval_size=4, checkpoint_every=1, eval_every=2, text_width=32,
                             text_layers=1, embed_dim=16)
    text_tokenizer = build_world_text_tokenizer()
    figures = train_text_aligned_vit(tmp_path, tokenizer_config, text_tokenizer, 128, config, progress_bar=False)
    assert figures["retrieval_chance"] == 0.25 and 0 <= figures["image_to_text_top1"] <= 1
    tok = DualViTok(tokenizer_config)
    tok.load_vit_weights(tmp_path / "vit.safetensors")  # strict: every ViT key present
    # A longer run in the same folder continues from step 2 instead of starting over.
    config.steps = 3
    train_text_aligned_vit(tmp_path, tokenizer_config, text_tokenizer, 128, config, progress_bar=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_write_images_is_deterministic(tmp_path):
    write_images(tmp_path / "a", "train", 3)
    write_images(tmp_path / "b", "train", 3)
    for name in ("train_0000000.png", "train_0000002.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_train_world_rejects_unknown_stages(capsys):
    assert cli_main(["train", "world", "--stages", "7"]) == 2
    assert "unknown stages" in capsys.readouterr().err


def test_eval_world_scores_a_tokenizer_folder(tmp_path):
    torch.manual_seed(0)
    DualViTok(world_tokenizer_config(**SMALL_VIT)).save_pretrained(tmp_path / "tok")
    out = tmp_path / "figures.json"
    assert cli_main(["eval", "world", "--tokenizer", str(tmp_path / "tok"), "--count", "2", "--threads", "1",
                     "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["detector_accuracy_clean"] == 1.0
    assert 0 < figures["tokenizer_psnr"] < 60 and 0 < figures["tokenizer_pixel_codebook_usage"] <= 1
