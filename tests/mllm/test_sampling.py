import math

import pytest
import torch

from illume_plus.mllm.sampling import (
    GenerationSettings,
    RowSampling,
    SamplingConfig,
    apply_repetition_penalty,
    draw_uniforms,
    make_generator,
    sample_rows,
)


def rows(*configs):
    return RowSampling.from_configs(configs)


def log_probs(*probs):
    return torch.tensor([[math.log(p) for p in row] for row in probs])


def test_inverse_cdf_follows_the_probabilities():
    # probabilities 0.25 / 0.75: u below 0.25 picks 0, above picks 1
    logits = log_probs([0.25, 0.75]).expand(4, 2)
    picks = sample_rows(logits, rows(*[SamplingConfig()] * 4), torch.tensor([0.0, 0.2, 0.3, 0.99]))
    assert picks.tolist() == [0, 0, 1, 1]


def test_temperature_is_applied_once():
    # T = 0.5 squares the probabilities: 0.25², 0.75² -> 0.1, 0.9 after renormalising.
    # Applied twice it would give 0.012 / 0.988; applied not at all, 0.25 / 0.75.
    logits = log_probs([0.25, 0.75]).expand(3, 2)
    cfg = SamplingConfig(temperature=0.5)
    picks = sample_rows(logits, rows(cfg, cfg, cfg), torch.tensor([0.05, 0.095, 0.105]))
    assert picks.tolist() == [0, 0, 1]


def test_top_k_per_row():
    torch.manual_seed(1)
    logits = torch.randn(2, 50)
    settings = rows(SamplingConfig(top_k=2), SamplingConfig(top_k=5))
    picked = [set(), set()]
    for u in torch.linspace(0, 0.999, 200):
        out = sample_rows(logits, settings, torch.stack([u, u]))
        picked[0].add(int(out[0]))
        picked[1].add(int(out[1]))
    assert picked[0] == set(logits[0].topk(2).indices.tolist())
    assert picked[1] == set(logits[1].topk(5).indices.tolist())


def test_top_p_keeps_smallest_prefix_reaching_p():
    # sorted probabilities 0.5, 0.3, 0.15, 0.05: top-p 0.7 keeps {0.5, 0.3}
    logits = log_probs([0.15, 0.5, 0.05, 0.3])
    settings = rows(SamplingConfig(top_p=0.7))
    picked = {int(sample_rows(logits, settings, u.view(1))) for u in torch.linspace(0, 0.999, 100)}
    assert picked == {1, 3}
    # the renormalised kept mass: 0.5/0.8 for token 1, so u = 0.6 picks 1 and u = 0.65 picks 3
    assert int(sample_rows(logits, settings, torch.tensor([0.6]))) == 1
    assert int(sample_rows(logits, settings, torch.tensor([0.65]))) == 3


def test_tiny_top_p_keeps_the_argmax():
    logits = log_probs([0.1, 0.6, 0.3])
    assert int(sample_rows(logits, rows(SamplingConfig(top_p=0.01)), torch.tensor([0.99]))) == 1


def test_greedy_rows_next_to_sampled_rows():
    torch.manual_seed(2)
    logits = torch.randn(3, 40)
    settings = rows(SamplingConfig(greedy=True), SamplingConfig(top_k=10), SamplingConfig(greedy=True, top_k=3))
    for u in (0.0, 0.5, 0.999):
        out = sample_rows(logits, settings, torch.full((3,), u))
        assert out[0] == logits[0].argmax() and out[2] == logits[2].argmax()


def test_all_greedy_is_argmax():
    logits = torch.randn(4, 30)
    settings = rows(*[SamplingConfig(greedy=True)] * 4)
    assert torch.equal(sample_rows(logits, settings, torch.rand(4)), logits.argmax(-1))


def test_rows_are_independent_of_batch_mates():
    torch.manual_seed(3)
    logits = torch.randn(3, 100)
    u = torch.tensor([0.3, 0.7, 0.5])
    configs = [SamplingConfig(top_k=7, top_p=0.9), SamplingConfig(temperature=0.7), SamplingConfig(top_k=50)]
    together = sample_rows(logits, rows(*configs), u)
    alone = [int(sample_rows(logits[i : i + 1], rows(configs[i]), u[i : i + 1])) for i in range(3)]
    assert together.tolist() == alone


def test_repetition_penalty_rule():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    seen = torch.tensor([[True, True, False, False]])
    out = apply_repetition_penalty(logits, seen, torch.tensor([2.0]))
    assert out.tolist() == [[1.0, -4.0, 2.0, -2.0]]


def test_uniforms_depend_only_on_the_seed():
    a = draw_uniforms(make_generator(7), 10)
    b = draw_uniforms(make_generator(7), 25)
    c = draw_uniforms(make_generator(8), 10)
    assert torch.equal(a, b[:10]) and not torch.equal(a, c)
    assert ((a >= 0) & (a < 1)).all()


def test_settings_presets_and_overrides():
    t2i = GenerationSettings.text_to_image()
    assert (t2i.semantic.top_k, t2i.pixel.top_k, t2i.semantic.temperature) == (2048, 6144, 1.0)
    edit = GenerationSettings.editing()
    assert (edit.semantic.top_k, edit.semantic.top_p, edit.semantic.temperature) == (512, 0.8, 0.7)
    assert GenerationSettings.understanding().text.greedy

    s = t2i.updated(top_k=100, temperature=0.9, text_greedy=False, pixel_top_p=0.5)
    assert (s.semantic.top_k, s.pixel.top_k) == (100, 300)
    assert s.text.temperature == s.semantic.temperature == s.pixel.temperature == 0.9
    assert not s.text.greedy and s.pixel.top_p == 0.5 and s.semantic.top_p == 1.0
    with pytest.raises(TypeError, match="unknown sampling option"):
        t2i.updated(topk=3)


@pytest.mark.parametrize("kwargs", [dict(temperature=0.0), dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5),
                                    dict(repetition_penalty=0.0)])
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        SamplingConfig(**kwargs)
