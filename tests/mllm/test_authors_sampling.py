"""The "authors" sampling preset reproduces what the authors' scripts sample from.

The reference below is written from their code's documented order, not from ours:
transformers 4.44's generate runs its logits processors (repetition penalty from the
checkpoint's generation_config, then their InterleavedLogitsProcessor: log-softmax, CFG,
range mask, their temperature / top-k / top-p), THEN its own warpers built from the same
command-line values (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper), then
softmax and a multinomial draw.
"""

import pytest
import torch

from illume_plus.mllm.sampling import GenerationSettings, RowSampling, apply_repetition_penalty, warped_scores

NEG_INF = float("-inf")


# ---------------------------------------------------------------- the authors' order, written out
def hf_repetition_penalty(scores, generated_ids, penalty):
    # RepetitionPenaltyLogitsProcessor: gather the generated ids, divide positives, multiply negatives
    picked = scores.gather(1, generated_ids)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    return scores.scatter(1, generated_ids, picked)


def their_processor_pass(scores, temperature, top_k, top_p):
    # InterleavedLogitsProcessor._apply_sampling
    scores = scores / temperature
    if top_k > 0:
        kth = torch.topk(scores, min(top_k, scores.size(-1)))[0][:, -1:]
        scores = scores.masked_fill(scores < kth, NEG_INF)
    if top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(scores, descending=True)
        cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
        remove = cumulative > top_p
        remove[:, 1:] = remove[:, :-1].clone()
        remove[:, 0] = False
        scores = scores.masked_fill(remove.scatter(1, sorted_indices, remove), NEG_INF)
    return scores


def hf_warpers(scores, temperature, top_k, top_p):
    # generate's _get_logits_warper: Temperature (if != 1), TopK (if != 0), TopP (if < 1), min_tokens_to_keep 1
    if temperature != 1.0:
        scores = scores / temperature
    if top_k != 0:
        kth = torch.topk(scores, min(top_k, scores.size(-1)))[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, NEG_INF)
    if top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(1, sorted_indices, remove), NEG_INF)
    return scores


def authors_distribution(cond, uncond, generated_ids, *, penalty, guidance, level_params, script_params,
                         hf_second_pass=True):
    """Probabilities over one code range as their generate computes them."""
    scores = hf_repetition_penalty(cond, generated_ids, penalty)
    scores = guidance * (scores.log_softmax(-1) - uncond.log_softmax(-1)) + uncond.log_softmax(-1)
    scores = their_processor_pass(scores, *level_params)
    if hf_second_pass:
        scores = hf_warpers(scores, *script_params)
    return scores.softmax(-1)


# ---------------------------------------------------------------- ours
def our_distribution(cond, uncond, generated_ids, settings, *, guidance):
    seen = torch.zeros_like(cond, dtype=torch.bool).scatter(1, generated_ids, True)
    rows = RowSampling.from_configs([settings] * cond.shape[0])
    scores = apply_repetition_penalty(cond, seen, rows.repetition_penalty)
    scores = guidance * (scores.log_softmax(-1) - uncond.log_softmax(-1)) + uncond.log_softmax(-1)
    return warped_scores(scores, rows).softmax(-1)


def logits_pair(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(2, vocab, generator=g) * 3
    uncond = torch.randn(2, vocab, generator=g) * 3
    generated = torch.randint(0, vocab, (2, 40), generator=g)
    return cond, uncond, generated


# (task, phase, vocabulary size of the range, CFG scale, their script's values)
CASES = [
    ("text_to_image", "semantic", 32768, 2.0, (1.0, 2048, 1.0)),
    ("text_to_image", "pixel", 98304, 2.0, (1.0, 2048, 1.0)),
    ("editing", "semantic", 32768, 1.25, (0.7, 512, 0.8)),
    ("editing", "pixel", 98304, 1.25, (0.7, 512, 0.8)),
]


@pytest.mark.parametrize("task,phase,vocab,guidance,script", CASES)
def test_authors_preset_matches_their_generate(task, phase, vocab, guidance, script):
    temperature, top_k, top_p = script
    # their InferenceConfig: semantic = the script's values, pixel top-k = 3 x top-k
    level = (temperature, top_k * (3 if phase == "pixel" else 1), top_p)
    cond, uncond, generated = logits_pair(vocab, seed=vocab + int(guidance * 100))
    theirs = authors_distribution(cond, uncond, generated, penalty=1.05, guidance=guidance,
                                  level_params=level, script_params=script)
    settings = GenerationSettings.for_task(task).updated(repetition_penalty=1.05).for_phase(phase)
    ours = our_distribution(cond, uncond, generated, settings, guidance=guidance)
    assert torch.equal(ours > 0, theirs > 0)  # the same support
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("task,phase,vocab,guidance,script", CASES)
def test_clean_preset_applies_each_setting_once(task, phase, vocab, guidance, script):
    temperature, top_k, top_p = script
    level = (temperature, top_k * (3 if phase == "pixel" else 1), top_p)
    cond, uncond, generated = logits_pair(vocab, seed=7)
    once = authors_distribution(cond, uncond, generated, penalty=1.05, guidance=guidance, level_params=level,
                                script_params=script, hf_second_pass=False)
    settings = GenerationSettings.for_task(task, preset="clean").updated(repetition_penalty=1.05).for_phase(phase)
    torch.testing.assert_close(our_distribution(cond, uncond, generated, settings, guidance=guidance), once,
                               atol=1e-6, rtol=1e-4)


def test_effective_settings_of_their_scripts():
    """The figures docs/reproducing.md quotes: how many candidates survive, and the sharpening."""
    cond, uncond, generated = logits_pair(98304, seed=3)
    t2i_pixel = GenerationSettings.text_to_image().pixel
    support = (our_distribution(cond, uncond, generated, t2i_pixel, guidance=2.0) > 0).sum(-1)
    assert support.tolist() == [2048, 2048]  # not 6144
    clean = GenerationSettings.text_to_image(preset="clean").pixel
    assert (our_distribution(cond, uncond, generated, clean, guidance=2.0) > 0).sum(-1).tolist() == [6144, 6144]

    edit_pixel = GenerationSettings.editing().pixel
    support = (our_distribution(cond, uncond, generated, edit_pixel, guidance=1.25) > 0).sum(-1)
    assert (support <= 512).all()
    # temperature 0.7 twice = 0.49 once, when no truncation is involved
    twice = GenerationSettings.editing(top_k=0, top_p=1.0).semantic
    once = GenerationSettings.editing(temperature=0.49, top_k=0, top_p=1.0, preset="clean").semantic
    torch.testing.assert_close(our_distribution(cond[:, :1000], uncond[:, :1000], generated % 1000, twice,
                                                guidance=1.25),
                               our_distribution(cond[:, :1000], uncond[:, :1000], generated % 1000, once,
                                                guidance=1.25), atol=1e-6, rtol=1e-4)


def test_overrides_reach_both_passes():
    s = GenerationSettings.editing().updated(temperature=0.9, top_k=100, top_p=0.95)
    assert (s.pixel.temperature, s.pixel.top_k, s.pixel.top_p) == (0.9, 300, 0.95)
    assert (s.pixel.second_pass.temperature, s.pixel.second_pass.top_k, s.pixel.second_pass.top_p) == (0.9, 100, 0.95)
    assert GenerationSettings.editing().updated(second_pass=None).pixel.second_pass is None
    with pytest.raises(ValueError, match="unknown sampling preset"):
        GenerationSettings.for_task("editing", preset="twice")
