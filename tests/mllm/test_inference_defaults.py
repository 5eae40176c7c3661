"""Decoding defaults the released checkpoints carry: rotary frequencies kept fp32 under any
cast, the folder's generation_config.json (repetition penalty, stop ids)."""

import json

import pytest
import torch

from illume_plus.mllm.generation_config import GenerationDefaults
from illume_plus.mllm.model import IllumePlus


def reference_inv_freq(config):
    # RoPE: 1 / theta^(2i / d), in fp32 (what the authors' model holds)
    head_dim = config.hidden_size // config.num_attention_heads
    return 1.0 / (config.rope_theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


CASTS = {
    "to(dtype)": lambda m: m.to(dtype=torch.bfloat16),
    "to(bf16)": lambda m: m.to(torch.bfloat16),
    "to(device, dtype)": lambda m: m.to("cpu", torch.bfloat16),
    "bfloat16()": lambda m: m.bfloat16(),
    "half()": lambda m: m.half(),
    "half then float": lambda m: m.half().float(),
}


@pytest.mark.parametrize("cast", list(CASTS))
def test_every_cast_keeps_rotary_frequencies_fp32(cast, tiny_config):
    torch.manual_seed(0)
    model = CASTS[cast](IllumePlus(tiny_config))
    assert model.language_model.lm_head.weight.dtype != torch.float32 or cast == "half then float"
    buffers = {n: b for n, b in model.named_buffers() if "inv_freq" in n}
    assert any(n.startswith("language_model.") for n in buffers)
    for name, buffer in buffers.items():
        assert buffer.dtype == torch.float32, name
        if name.startswith("language_model."):
            torch.testing.assert_close(buffer, reference_inv_freq(tiny_config), rtol=0, atol=0)


def test_bf16_logits_use_fp32_rotary_frequencies(tiny_config):
    torch.manual_seed(0)
    model = IllumePlus(tiny_config).eval().to(torch.bfloat16)
    rotary = model.language_model.model.rotary_emb
    captured = {}
    rotary.register_forward_hook(lambda module, args, out: captured.update(cos=out[0], positions=args[1]))
    ids = torch.randint(0, 200, (1, 8))
    positions = torch.arange(1500, 1508)[None]  # ~1,500 tokens in: inside one 512² image

    def logits():
        out = model.step(attention_mask=torch.ones(1, 8, dtype=torch.long), position_ids=positions,
                         past_key_values=None, input_ids=ids)
        return out.logits

    fp32_logits = logits()
    angles = positions[0, :, None].float() * reference_inv_freq(tiny_config)
    expected_cos = torch.cat([angles, angles], -1).cos().to(torch.bfloat16)
    assert torch.equal(captured["cos"][0], expected_cos)

    # the same model with bf16-rounded frequencies (what a plain nn.Module cast gives) differs
    for name in ("inv_freq", "original_inv_freq"):
        if rotary._buffers.get(name) is not None:
            rotary._buffers[name] = rotary._buffers[name].to(torch.bfloat16)
    assert not torch.equal(logits(), fp32_logits)


QWEN25_GENERATION_CONFIG = {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True,
                            "eos_token_id": [151645, 151643], "repetition_penalty": 1.05, "temperature": 0.7,
                            "top_p": 0.8, "top_k": 20, "transformers_version": "4.44.2"}


def test_generation_config_of_the_folder_is_read(tmp_path, tiny_config):
    (tmp_path / "generation_config.json").write_text(json.dumps(QWEN25_GENERATION_CONFIG))
    defaults = GenerationDefaults.from_folder(tmp_path)
    assert defaults == GenerationDefaults(repetition_penalty=1.05, eos_token_ids=(151645, 151643))
    assert GenerationDefaults.from_folder(tmp_path / "missing") == GenerationDefaults()
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": "x"}))
    with pytest.raises(ValueError, match="eos_token_id"):
        GenerationDefaults.from_folder(tmp_path)


def test_save_and_load_keep_the_generation_defaults(tmp_path, tiny_config):
    model = IllumePlus(tiny_config)
    model.generation_defaults = GenerationDefaults(repetition_penalty=1.05, eos_token_ids=(7,))
    model.save_pretrained(tmp_path)
    assert IllumePlus.from_pretrained(tmp_path).generation_defaults == model.generation_defaults


@pytest.mark.parametrize("stop", ["<|endoftext|>", "<|im_end|>"])
def test_text_replies_stop_at_either_eos(stop, tiny_model, tiny_processor):
    from illume_plus.mllm.engine import DecodingEngine, GenerationRequest

    engine = DecodingEngine(tiny_model, tiny_processor)
    stop_id = tiny_processor.tokenizer.convert_tokens_to_ids(stop)
    assert stop_id in engine.stop_token_ids
    calls = {"n": 0}

    def says_stop_third(hidden, vocab_range=None):
        logits = IllumePlus.logits_from_hidden(tiny_model, hidden, vocab_range)
        calls["n"] += 1
        if calls["n"] == 3:
            logits[:, stop_id] = 1e4
        return logits

    tiny_model.logits_from_hidden = says_stop_third
    try:
        prompt = tiny_processor.encode_understanding(torch.zeros(3, 64, 64), "What is it?")
        [out] = engine.generate([GenerationRequest(prompt=prompt, max_new_tokens=10)])
    finally:
        del tiny_model.logits_from_hidden
    assert (out.finish_reason, out.token_ids.numel()) == ("stop", 2)


def test_pipeline_defaults_follow_the_checkpoint(tiny_config, tiny_processor):
    from illume_plus.pipeline import Pipeline

    model = IllumePlus(tiny_config).eval()
    model.generation_defaults = GenerationDefaults(repetition_penalty=1.05, eos_token_ids=(5,))
    pipe = Pipeline(model, processor=tiny_processor)
    assert 5 in pipe.engine.stop_token_ids and tiny_processor.layout.im_end in pipe.engine.stop_token_ids
    assert pipe.diffusion_steps == 50
    for task in ("text_to_image", "editing", "understanding"):
        settings = pipe._settings(task, {})
        assert {settings.for_phase(p).repetition_penalty for p in settings.PHASES} == {1.05}
    assert pipe._settings("editing", {}).pixel.second_pass is not None
    clean = pipe._settings("editing", {"preset": "clean", "repetition_penalty": 1.0})
    assert clean.pixel.second_pass is None and clean.pixel.repetition_penalty == 1.0
    assert pipe._settings("understanding", {}).text.greedy
