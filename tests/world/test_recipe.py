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


def test_stage2_trains_the_mllm_stages_and_writes_a_loadable_pipeline(tmp_path):
    """Recipe step 2 end to end at toy size: data + pretokenised codes, three stages, final folder;
    a rerun finds every part done and changes nothing."""
    from illume_plus.pipeline import Pipeline
    from illume_plus.world.mllm_recipe import stage2_mllm

    torch.set_num_threads(1)
    torch.manual_seed(0)
    DualViTok(world_tokenizer_config(**SMALL_VIT)).save_pretrained(tmp_path / "tok")
    small_llm = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                     intermediate_size=64)
    final = stage2_mllm(tmp_path / "run", tmp_path / "tok", num_train=6, num_val=4, batch_size=4, steps=(1, 2, 1),
                        model_overrides=small_llm)
    steps = {s: [json.loads(line)["step"] for line in (tmp_path / "run" / f"mllm_{s}" / "metrics.jsonl").read_text()
                 .splitlines() if "loss" in json.loads(line)] for s in ("stage1", "stage2", "stage3")}
    assert steps == {"stage1": [1], "stage2": [2], "stage3": [1]}
    # stage 2 trains the LLM's layers, which stage 1 leaves frozen
    from safetensors.torch import load_file
    weights = {s: load_file(tmp_path / "run" / f"mllm_{s}" / "final" / "model.safetensors") for s in ("stage1", "stage2")}
    layer = next(k for k in weights["stage1"] if "layers.0.mlp.up_proj" in k)
    assert not torch.equal(weights["stage2"][layer], weights["stage1"][layer])

    pipe = Pipeline.from_pretrained(final)
    assert pipe.card.trained and pipe.default_size() == ((128, 128), False)
    image = pipe.generate("a red circle in the center", seed=0).image
    assert image.size == (128, 128)
    before = (final / "mllm" / "model.safetensors").read_bytes()
    assert stage2_mllm(tmp_path / "run", tmp_path / "tok", num_train=6, num_val=4, batch_size=4, steps=(1, 2, 1),
                       model_overrides=small_llm) == final
    assert (final / "mllm" / "model.safetensors").read_bytes() == before
