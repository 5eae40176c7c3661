"""A synthetic checkpoint in the authors' origin format (tiny dims, their key names, written
here) must load strictly and give the logits of the same weights loaded from our format."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from illume_plus.mllm.config import IllumePlusConfig
from illume_plus.mllm.model import IllumePlus
from illume_plus.mllm.official import config_from_official, load_official

# Our prefix -> theirs (SPEC §3 "Origin-format checkpoint keys"), written out independently.
THEIR_PREFIX = {
    "language_model.model.": "model.",
    "language_model.lm_head.": "lm_head.",
    "vision_tower.semantic_encoder.": "model.vision_tower.semantic_encoder.",
    "vision_tower.pixel_encoder.": "model.vision_tower.pixel_encoder.",
    "semantic_adaptor.": "model.mm_projector.projector_1.",
    "pixel_adaptor.": "model.mm_projector.projector_2.",
}


def their_state_dict(model):
    out = {}
    for key, tensor in model.state_dict().items():
        prefix = next(p for p in THEIR_PREFIX if key.startswith(p))
        out[THEIR_PREFIX[prefix] + key[len(prefix):]] = tensor.detach().clone().contiguous()
    return out


def their_config(config: IllumePlusConfig) -> dict:
    """The LLM part of their config.json (Qwen2 fields, extended vocab_size)."""
    return {"architectures": ["ILLUMEQwen2ForCausalLM"], "model_type": "illume_qwen2",
            "hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
            "num_attention_heads": config.num_attention_heads, "num_key_value_heads": config.num_key_value_heads,
            "intermediate_size": config.intermediate_size, "rope_theta": config.rope_theta,
            "rms_norm_eps": config.rms_norm_eps, "tie_word_embeddings": config.tie_word_embeddings,
            "max_position_embeddings": config.max_position_embeddings, "vocab_size": config.vocab_size,
            "mm_hidden_size": [config.semantic_feature_dim, config.pixel_feature_dim]}


def write_sharded(folder, state_dict, config, fmt):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(their_config(config)))
    keys = sorted(state_dict)
    shards = {f"model-0000{i + 1}-of-00002.{fmt}": keys[i::2] for i in range(2)}
    for name, names in shards.items():
        part = {k: state_dict[k] for k in names}
        if fmt == "safetensors":
            save_file(part, str(folder / name))
        else:
            torch.save(part, folder / name)
    index = "model.safetensors.index.json" if fmt == "safetensors" else "pytorch_model.bin.index.json"
    weight_map = {k: name for name, names in shards.items() for k in names}
    (folder / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.fixture(scope="module")
def source_model(tiny_config):
    torch.manual_seed(3)
    model = IllumePlus(tiny_config).eval()
    with torch.no_grad():  # the tiny preset ties embeddings; give the adaptors non-trivial biases too
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def understanding_batch(processor):
    g = torch.Generator().manual_seed(0)
    seqs = [processor.encode_understanding(torch.rand(3, 64, 96, generator=g) * 2 - 1, "What is it?"),
            processor.encode_text_to_image("a red circle", (512, 512))]
    return processor.collate(seqs)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_origin_checkpoint_loads_strictly_and_matches_our_format(fmt, tmp_path, source_model, tiny_config,
                                                                 tiny_processor, tiny_tokenizer):
    ours = tmp_path / "ours"
    source_model.save_pretrained(ours, tokenizer=tiny_tokenizer)
    from_ours = IllumePlus.from_pretrained(ours)
    theirs = tmp_path / "theirs"
    write_sharded(theirs, their_state_dict(source_model), tiny_config, fmt)
    from_theirs = load_official(theirs, config=tiny_config)

    batch = understanding_batch(tiny_processor)
    expected = source_model.prefill(batch).logits
    torch.testing.assert_close(from_ours.prefill(batch).logits, expected, atol=0, rtol=0)
    torch.testing.assert_close(from_theirs.prefill(batch).logits, expected, atol=0, rtol=0)
    assert not any(p.requires_grad for p in from_theirs.vision_tower.parameters())


def test_our_format_round_trips_config_and_tokenizer(tmp_path, source_model, tiny_tokenizer, tiny_processor):
    from illume_plus.mllm.processor import IllumePlusProcessor

    source_model.save_pretrained(tmp_path, tokenizer=tiny_tokenizer)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    processor = IllumePlusProcessor.from_pretrained(tmp_path)
    assert processor.layout == tiny_processor.layout
    assert processor.config == source_model.config


def test_loaded_model_carries_the_processor_saved_beside_it(tmp_path, source_model, tiny_tokenizer, tiny_processor):
    source_model.save_pretrained(tmp_path / "with", tokenizer=tiny_tokenizer)
    source_model.save_pretrained(tmp_path / "without")
    with_tokenizer = IllumePlus.from_pretrained(tmp_path / "with")
    assert with_tokenizer.processor is not None and with_tokenizer.processor.layout == tiny_processor.layout
    assert IllumePlus.from_pretrained(tmp_path / "without").processor is None
    with_tokenizer.save_pretrained(tmp_path / "again")  # the attached processor's tokenizer goes along
    assert IllumePlus.from_pretrained(tmp_path / "again").processor.layout == tiny_processor.layout


def test_config_is_read_from_their_config_json(tmp_path, tiny_config):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(their_config(tiny_config)))
    config = config_from_official(folder, tokenizer=tiny_config.tokenizer)
    assert config == tiny_config  # LLM dims, and base rows = vocab_size - image tokens
    full = dict(their_config(IllumePlusConfig.from_name("illume-plus-3b")), vocab_size=283047)
    (folder / "config.json").write_text(json.dumps({"text_config": full}))  # -hf style nesting
    assert config_from_official(folder).text_vocab_rows == 151936


def test_missing_and_unexpected_keys_are_listed(tmp_path, source_model, tiny_config):
    state = their_state_dict(source_model)
    del state["model.mm_projector.projector_2.0.bias"]
    write_sharded(tmp_path / "missing", state, tiny_config, "safetensors")
    with pytest.raises(ValueError, match="missing keys:\n  pixel_adaptor.0.bias"):
        load_official(tmp_path / "missing", config=tiny_config)

    state = their_state_dict(source_model)
    state["model.vision_tower.some_new_head.weight"] = torch.zeros(1)
    write_sharded(tmp_path / "unknown", state, tiny_config, "safetensors")
    with pytest.raises(ValueError, match="model.vision_tower.some_new_head.weight"):
        load_official(tmp_path / "unknown", config=tiny_config)

    state = their_state_dict(source_model)
    state["model.layers.0.mlp.gate_proj.weight"] = torch.zeros(3, 3)
    write_sharded(tmp_path / "shape", state, tiny_config, "safetensors")
    with pytest.raises(ValueError, match="shape mismatches"):
        load_official(tmp_path / "shape", config=tiny_config)

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_official(tmp_path / "empty", config=tiny_config)


def test_untied_checkpoint_keeps_a_separate_head(tmp_path, tiny_processor):
    config = IllumePlusConfig.from_name("tiny", tie_word_embeddings=False)
    torch.manual_seed(4)
    model = IllumePlus(config).eval()
    state = their_state_dict(model)
    write_sharded(tmp_path / "untied", state, config, "safetensors")
    loaded = load_official(tmp_path / "untied", config=config)
    assert loaded.language_model.lm_head.weight is not loaded.language_model.model.embed_tokens.weight
    batch = understanding_batch(tiny_processor)
    torch.testing.assert_close(loaded.prefill(batch).logits, model.prefill(batch).logits, atol=0, rtol=0)

    del state["lm_head.weight"]  # untied: the head cannot be borrowed from the embedding
    write_sharded(tmp_path / "headless", state, config, "safetensors")
    with pytest.raises(ValueError, match="language_model.lm_head.weight"):
        load_official(tmp_path / "headless", config=config)


def test_bf16_loading_keeps_rope_frequencies_in_fp32(tmp_path, source_model, tiny_processor):
    source_model.save_pretrained(tmp_path)
    model = IllumePlus.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    inv_freq = model.language_model.model.rotary_emb.inv_freq
    assert inv_freq.dtype == torch.float32
    torch.testing.assert_close(inv_freq, source_model.language_model.model.rotary_emb.inv_freq)
    batch = understanding_batch(tiny_processor)
    logits = model.prefill(batch).logits
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, source_model.prefill(batch).logits, atol=0.1, rtol=0.05)


# ----------------------------------------------------------------------------- what the folder says
DUALVITOK_FIXTURE = Path(__file__).resolve().parents[1] / "data" / "dualvitok_public.json"


def write_their_tokenizer_config(folder, semantic_codes=None):
    """Their DualViTok .py config (the tiny fixture's, written as their config files are: dict(...)
    calls and arithmetic) and the ViT folder it names, as config.json's mm_vision_tower points to."""
    meta = json.loads(DUALVITOK_FIXTURE.read_text())
    cfg = meta["dualvitok_config"]
    cfg["semantic_encoder"]["semantic_encoder"] = "qwen2vit_tiny"
    if semantic_codes:
        cfg["semantic_quantizer"]["codebook_size"] = semantic_codes
    text = (f"vq_model = dict(type='DualViTok', config={cfg!r})\n"
            "vq_loss = dict(disc_weight=0.5, disc_start=20000)\nlr = 1e-4\n")
    text = text.replace("'codebook_size': 512", "'codebook_size': 256 * 2")  # arithmetic, as theirs (32768 * 3)
    (folder / "dualvitok_config.py").write_text(text)
    (folder / "qwen2vit_tiny").mkdir()
    (folder / "qwen2vit_tiny" / "config.json").write_text(json.dumps(meta["vit_config"]))


def folder_config(config, **changes):
    raw = their_config(config)
    raw["mm_vision_tower"] = {"type": "DualVisionTower", "vq_config": "configs/dualvitok_config.py",
                              "use_ema": False}
    raw.update(changes)
    return raw


def test_vision_tokenizer_comes_from_the_config_the_folder_names(tmp_path, source_model, tiny_config, tiny_tokenizer,
                                                                  tiny_processor):
    folder = tmp_path / "theirs"
    write_sharded(folder, their_state_dict(source_model), tiny_config, "safetensors")
    (folder / "config.json").write_text(json.dumps(folder_config(tiny_config)))
    write_their_tokenizer_config(folder)
    tiny_tokenizer.save_pretrained(folder)
    model = load_official(folder)  # no config given: everything from the folder
    tok = model.config.tokenizer
    assert (tok.semantic_codebook_size, tok.pixel_codebook_size) == (256, 512)
    assert (tok.vit_hidden_size, tok.vit_depth) == (96, 2)  # the ViT folder their config names
    assert model.config.text_vocab_rows == tiny_config.text_vocab_rows
    assert model.processor is not None
    batch = understanding_batch(tiny_processor)
    torch.testing.assert_close(model.prefill(batch).logits, source_model.prefill(batch).logits, atol=0, rtol=0)


def test_adaptor_widths_that_disagree_with_the_vision_tokenizer_are_named(tmp_path, tiny_config):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(dict(their_config(tiny_config), mm_hidden_size=[3584, 32])))
    with pytest.raises(ValueError, match=r"mm_hidden_size \[3584, 32\].*\[96, 32\]"):
        config_from_official(folder, tokenizer=tiny_config.tokenizer)


def test_codebooks_that_disagree_with_the_vocabulary_are_named(tmp_path, tiny_config, tiny_tokenizer):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(folder_config(tiny_config)))
    write_their_tokenizer_config(folder, semantic_codes=128)  # the folder's vocabulary has 256
    tiny_tokenizer.save_pretrained(folder)
    with pytest.raises(ValueError, match="holds 256 semantic code tokens .* semantic codebook has 128 codes"):
        config_from_official(folder)


def test_missing_tokenizer_config_falls_back_to_the_paper_with_a_warning(tmp_path, tiny_config):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    full = IllumePlusConfig.from_name("illume-plus-3b")
    raw = dict(their_config(full), mm_vision_tower={"vq_config": "configs/elsewhere.py"}, vocab_size=283047)
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.warns(UserWarning, match="elsewhere.py"):
        config = config_from_official(folder)
    assert config.tokenizer.semantic_codebook_size == 32768


def test_their_python_config_is_read_without_running_it(tmp_path):
    from illume_plus.mllm.official import read_official_config_file

    path = tmp_path / "cfg.py"
    path.write_text("vq_model = dict(config=dict(a=32768 * 3, b=[1, 2], c=None, d=-1))\n")
    assert read_official_config_file(path) == {"vq_model": {"config": {"a": 98304, "b": [1, 2], "c": None, "d": -1}}}
    path.write_text("vq_model = dict(a=__import__('os').getcwd())\n")
    with pytest.raises(ValueError, match="only literal values"):
        read_official_config_file(path)


def test_model_module_does_not_import_the_official_loader():
    """Data flows one way: official.py builds IllumePlus; model.py never imports official.py."""
    import ast
    import inspect

    import illume_plus.mllm.model as model_module

    tree = ast.parse(inspect.getsource(model_module))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "official" not in imported and not any(m and m.endswith(".official") for m in imported)
