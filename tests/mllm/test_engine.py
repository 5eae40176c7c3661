"""The decoding engine against plain references, on the tiny preset with random weights."""

from dataclasses import replace

import pytest
import torch

from illume_plus.mllm.engine import DecodingEngine, GenerationRequest
from illume_plus.mllm.sampling import GenerationSettings, RowSampling, draw_uniforms, make_generator, sample_rows
from tests.standins import tiny_model_and_processor

SAMPLED = GenerationSettings.text_to_image(temperature=0.9, top_k=40, top_p=0.95)


@pytest.fixture(scope="module")
def tiny():
    model, processor = tiny_model_and_processor()
    return model, processor, DecodingEngine(model, processor)


def t2i(processor, caption, size, guidance=None, settings=SAMPLED, seed=0):
    return GenerationRequest(
        prompt=processor.encode_text_to_image(caption, size=size),
        unconditional_prompt=processor.encode_text_to_image(None, size=size) if guidance is not None else None,
        image_size=size, guidance_scale=guidance if guidance is not None else 1.0, settings=settings, seed=seed)


def expected_structure(layout, spec):
    """(token or None for a code slot, level) per step, written out from SPEC §3."""
    (h1, w1), (h2, w2) = spec.semantic_grid, spec.pixel_grid
    steps = [(layout.start_of_image, None), (layout.start_of_level0, None)]
    for _ in range(h1):
        steps += [(None, 0)] * w1 + [(layout.end_of_line, None)]
    steps += [(layout.end_of_level0, None), (layout.start_of_level1, None)]
    for _ in range(h2):
        steps += [(None, 1)] * w2 + [(layout.end_of_line, None)]
    return steps + [(layout.end_of_level1, None), (layout.end_of_image, None)]


@torch.no_grad()
def reference_decode(model, processor, request):
    """Two-pass CFG without a KV cache: every step recomputes the full conditional sequence,
    then (separately) the full unconditional one, and mixes log-probabilities."""
    layout = processor.layout
    ranges = {0: layout.semantic_range, 1: layout.pixel_range}
    phase_settings = {0: request.settings.semantic, 1: request.settings.pixel}
    steps = expected_structure(layout, processor.frame_spec(*request.image_size))
    uniforms = draw_uniforms(make_generator(request.seed), len(steps))
    generated = []

    prompt_embeds = {}

    def last_logits(sequence):
        # the prompt's embeddings (continuous image features included) are computed once;
        # the language model reruns on the whole sequence every step, with no cache
        if id(sequence) not in prompt_embeds:
            prompt_embeds[id(sequence)] = model.embed_inputs(processor.collate([sequence]))
        extra = model.embed_tokens(torch.tensor([generated], dtype=torch.long))
        embeds = torch.cat([prompt_embeds[id(sequence)], extra], dim=1)
        positions = torch.arange(embeds.shape[1])[None]
        hidden = model.language_model.model(inputs_embeds=embeds, position_ids=positions,
                                            use_cache=False).last_hidden_state
        return model.logits_from_hidden(hidden[0, -1])  # full vocabulary

    for step, (forced, level) in enumerate(steps):
        if forced is not None:
            generated.append(forced)
            continue
        start, stop = ranges[level]
        config = phase_settings[level]
        cond = last_logits(request.prompt)[start:stop]
        if config.repetition_penalty != 1.0:
            for token in set(generated):
                if start <= token < stop:
                    value, p = cond[token - start], config.repetition_penalty
                    cond[token - start] = value / p if value > 0 else value * p
        scores = cond.log_softmax(-1)
        if request.unconditional_prompt is not None:
            uncond = last_logits(request.unconditional_prompt)[start:stop].log_softmax(-1)
            scores = request.guidance_scale * (scores - uncond) + uncond
        pick = sample_rows(scores[None], RowSampling.from_configs([config]), uniforms[step : step + 1])
        generated.append(int(pick) + start)
    return generated


def test_mixed_size_batch_yields_well_formed_grids(tiny):
    model, processor, engine = tiny
    layout = processor.layout
    # Make every token outside the code ranges, and every pixel code, far likelier than the
    # semantic codes: only a decoder that forces structure and slices the active level's
    # range can still produce well-formed images.
    head = model.language_model.lm_head.weight
    original = head.detach().clone()
    with torch.no_grad():
        head[: layout.semantic_range[0]] *= 50
        head[layout.pixel_range[0]:] *= 50
    try:
        sizes = [(64, 64), (128, 64), (64, 192)]
        requests = [t2i(processor, f"image {i}", s, guidance=2.0 if i % 2 else None, seed=i)
                    for i, s in enumerate(sizes)]
        outputs = engine.generate(requests)
    finally:
        with torch.no_grad():
            head.copy_(original)
    for size, out in zip(sizes, outputs):
        spec = processor.frame_spec(*size)
        steps = expected_structure(layout, spec)
        ids = out.token_ids.tolist()
        assert len(ids) == len(steps)
        for token, (forced, level) in zip(ids, steps):
            if forced is not None:
                assert token == forced
            else:
                start, stop = (layout.semantic_range, layout.pixel_range)[level]
                assert start <= token < stop
        [image] = out.images
        assert image.size == size
        assert tuple(image.semantic_ids.shape) == spec.semantic_grid
        assert tuple(image.pixel_ids.shape) == spec.pixel_grid
        assert torch.equal(image.semantic_ids.flatten() + layout.semantic_range[0],
                           torch.tensor([t for t, (_, lv) in zip(ids, steps) if lv == 0]))
        assert torch.equal(image.pixel_ids.flatten() + layout.pixel_range[0],
                           torch.tensor([t for t, (_, lv) in zip(ids, steps) if lv == 1]))


@pytest.mark.parametrize("guidance, settings", [
    (2.0, SAMPLED),                                           # batched CFG vs two passes
    (None, SAMPLED),                                          # cached vs full recompute
    (3.0, GenerationSettings.text_to_image(temperature=1.0, top_k=0).updated(repetition_penalty=1.3)),
    (1.5, GenerationSettings(semantic=SAMPLED.semantic.__class__(greedy=True),
                             pixel=SAMPLED.pixel.__class__(greedy=True))),
])
def test_batched_cached_decoding_equals_uncached_reference(tiny, guidance, settings):
    model, processor, engine = tiny
    requests = [t2i(processor, "a red circle", (64, 64), guidance, settings, seed=11),
                t2i(processor, "two blue squares side by side", (64, 64), guidance, settings, seed=12)]
    if guidance == 2.0:  # one case with a second size in the batch
        requests[1] = t2i(processor, "two blue squares side by side", (64, 128), guidance, settings, seed=12)
    outputs = engine.generate(requests)
    for request, out in zip(requests, outputs):
        assert out.token_ids.tolist() == reference_decode(model, processor, request)


def test_editing_with_continuous_source_equals_reference(tiny):
    model, processor, engine = tiny
    source = torch.rand(3, 64, 64) * 2 - 1
    edit = GenerationRequest(prompt=processor.encode_edit(source, "make it blue", size=(64, 64)),
                             unconditional_prompt=processor.encode_edit(source, None, size=(64, 64)),
                             image_size=(64, 64), guidance_scale=1.5, settings=GenerationSettings.editing(), seed=8)
    outputs = engine.generate([t2i(processor, "a red circle", (64, 64), guidance=2.0), edit])
    assert outputs[1].token_ids.tolist() == reference_decode(model, processor, edit)


def test_request_does_not_depend_on_batch_mates(tiny):
    _, processor, engine = tiny
    mine = t2i(processor, "a red circle", (64, 64), guidance=2.0, seed=5)
    alone = engine.generate([mine])[0]
    mates = [t2i(processor, "a much longer prompt about a cat sitting on a mat", (64, 128), guidance=1.5, seed=5),
             t2i(processor, "x", (64, 64), settings=GenerationSettings.text_to_image(top_k=3), seed=9),
             GenerationRequest(prompt=processor.encode_understanding(torch.zeros(3, 64, 64), "What is it?"),
                               max_new_tokens=8)]
    together = engine.generate([mates[0], mine, *mates[1:]])[1]
    assert torch.equal(alone.token_ids, together.token_ids)
    assert torch.equal(alone.images[0].pixel_ids, together.images[0].pixel_ids)


def test_seed_changes_the_sample(tiny):
    _, processor, engine = tiny
    a, b = engine.generate([t2i(processor, "a red circle", (64, 64), seed=1),
                            t2i(processor, "a red circle", (64, 64), seed=2)])
    assert not torch.equal(a.token_ids, b.token_ids)


def test_guidance_one_equals_no_cfg(tiny):
    _, processor, engine = tiny
    with_uncond = t2i(processor, "a red circle", (64, 64), guidance=1.0, seed=3)
    without = t2i(processor, "a red circle", (64, 64), guidance=None, seed=3)
    a, b = engine.generate([with_uncond, without])
    assert torch.equal(a.token_ids, b.token_ids)
    c = engine.generate([t2i(processor, "a red circle", (64, 64), guidance=4.0, seed=3)])[0]
    assert not torch.equal(a.token_ids, c.token_ids)  # guidance does act when g != 1


def test_text_replies_never_emit_image_tokens(tiny):
    model, processor, engine = tiny
    layout = processor.layout
    head = model.language_model.lm_head.weight
    original = head.detach().clone()
    with torch.no_grad():  # image tokens would win every step if they were scored
        head[layout.start_of_image:] *= 100
    try:
        settings = GenerationSettings(text=SAMPLED.semantic.__class__(temperature=2.0))
        requests = [GenerationRequest(prompt=processor.encode_understanding(torch.rand(3, 64, 64) * 2 - 1, q),
                                      settings=settings, seed=i, max_new_tokens=24)
                    for i, q in enumerate(["What is in the picture?", "Describe it."])]
        requests.append(replace(requests[0], settings=GenerationSettings.understanding()))
        outputs = engine.generate(requests)
    finally:
        with torch.no_grad():
            head.copy_(original)
    for out in outputs:
        assert out.token_ids.numel() > 0
        assert (out.token_ids < layout.start_of_image).all()
        assert not layout.is_image_token(out.token_ids).any()


def test_text_stops_at_im_end_per_row(tiny):
    model, processor, engine = tiny
    im_end = processor.layout.im_end
    calls = {"n": 0}
    original = model.logits_from_hidden

    def end_second_row_early(hidden, vocab_range=None):
        logits = original(hidden, vocab_range)
        calls["n"] += 1
        if vocab_range == engine.text_range and calls["n"] == 3 and logits.shape[0] == 2:
            logits[1, im_end] = 1e4  # the second text row says <|im_end|> at its third token
        return logits

    model.logits_from_hidden = end_second_row_early
    try:
        prompt = processor.encode_understanding(torch.zeros(3, 64, 64), "What is it?")
        requests = [GenerationRequest(prompt=prompt, max_new_tokens=10),
                    GenerationRequest(prompt=prompt, max_new_tokens=10),
                    t2i(processor, "a red circle", (64, 64), guidance=2.0)]
        first, second, image = engine.generate(requests)
    finally:
        del model.logits_from_hidden
    assert (first.finish_reason, first.token_ids.numel()) == ("length", 10)
    assert (second.finish_reason, second.token_ids.numel()) == ("stop", 2)
    assert torch.equal(second.token_ids, first.token_ids[:2])
    assert image.images[0].pixel_ids.shape == (4, 4)


def test_head_runs_on_code_slots_only_and_on_the_active_range(tiny):
    model, processor, engine = tiny
    layout = processor.layout
    calls = []
    original = model.logits_from_hidden

    def record(hidden, vocab_range=None):
        calls.append((hidden.shape[0], vocab_range))
        return original(hidden, vocab_range)

    model.logits_from_hidden = record
    try:
        engine.generate([t2i(processor, "a red circle", (64, 64), guidance=2.0)])
    finally:
        del model.logits_from_hidden
    spec = processor.frame_spec(64, 64)
    # one head call per code slot (structural tokens are inserted), each on cond + uncond rows
    expected = [(2, layout.semantic_range)] * spec.num_semantic_codes + [(2, layout.pixel_range)] * spec.num_pixel_codes
    assert calls == expected


def test_stream_yields_every_step(tiny):
    _, processor, engine = tiny
    request = t2i(processor, "a red circle", (64, 64), guidance=2.0, seed=4)
    seen = []
    out = engine.generate([request], on_step=lambda step, tokens: seen.append(int(tokens[0])))[0]
    assert seen == out.token_ids.tolist()


def test_bad_requests_are_rejected(tiny):
    _, processor, _ = tiny
    prompt = processor.encode_text_to_image("a", size=(64, 64))
    with pytest.raises(ValueError, match="image requests only"):
        GenerationRequest(prompt=prompt, unconditional_prompt=prompt)
    with pytest.raises(ValueError, match="image.size"):
        GenerationRequest(prompt=prompt, image_size=(64, -64))
