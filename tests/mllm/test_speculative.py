"""Speculative Jacobi decoding is lossless: the rule on a toy LM (many samples, exact reference),
and the engine path on the tiny preset (greedy token identity, batch-mate independence, a
smaller statistical check against the exact distribution)."""

import itertools

import pytest
import torch
from scipy.stats import chisquare

from illume_plus.mllm.sampling import RowSampling, SamplingConfig, cfg_mix, processed_probs
from illume_plus.mllm.speculative import SpeculativeConfig, WindowPolicy, refresh_drafts, verify_window
from tests.standins import tiny_model_and_processor

# ---------------------------------------------------------------------- a toy LM
# Next-token logits at position t depend on the two tokens before it (0 before the start),
# through random tables: a conditional and an unconditional one (CFG). Strong enough
# context dependence that drafts from a stale context are often rejected.
V, L, WINDOW = 4, 5, 3
GUIDANCE = 2.0
CONFIG = SamplingConfig(temperature=0.8, top_k=3, top_p=0.9)


def toy_tables(seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(L, V, V, V, generator=g) * scale, torch.randn(L, V, V, V, generator=g) * scale


def toy_logits(table, seq):
    """(N, L) token ids -> (N, L, V) logits for every position given the tokens before it."""
    n = seq.shape[0]
    zero = torch.zeros(n, 1, dtype=torch.long)
    prev1 = torch.cat([zero, seq[:, :-1]], dim=1)
    prev2 = torch.cat([zero, zero, seq[:, :-2]], dim=1)
    return table[torch.arange(L)[None, :], prev1, prev2]


def reference_probs(cond_logits, uncond_logits):
    """The sequential sampler's distribution, written out independently: CFG on
    log-probabilities, temperature, top-k, then the smallest prefix reaching top-p."""
    lc, lu = cond_logits.log_softmax(-1), uncond_logits.log_softmax(-1)
    scores = (GUIDANCE * (lc - lu) + lu) / CONFIG.temperature
    probs = scores.softmax(-1)
    order = probs.argsort(dim=-1, descending=True)
    ranked = probs.gather(-1, order)
    keep = torch.arange(V) < CONFIG.top_k
    kept = ranked * keep
    kept = kept / kept.sum(-1, keepdim=True)
    before = kept.cumsum(-1) - kept
    keep = keep & (before < CONFIG.top_p)
    out = torch.zeros_like(probs).scatter(-1, order, ranked * keep)
    return out / out.sum(-1, keepdim=True)


def exact_joint(tables):
    """P(x_1..x_L) for all V**L sequences, by the chain rule."""
    seqs = torch.tensor(list(itertools.product(range(V), repeat=L)))
    probs = reference_probs(toy_logits(tables[0].double(), seqs), toy_logits(tables[1].double(), seqs))
    return seqs, probs.gather(-1, seqs[..., None]).squeeze(-1).prod(-1)


def speculative_samples(tables, n, seed, verify=verify_window):
    """n sequences by speculative Jacobi decoding with a fixed window (a batched driver of the
    rule, like the engine's, on the toy LM)."""
    gen = torch.Generator().manual_seed(seed)
    slots = WINDOW + 1
    seq = torch.zeros(n, L + slots, dtype=torch.long)  # fixed tokens, then drafts
    pos = torch.zeros(n, dtype=torch.long)
    ready = torch.zeros(n, dtype=torch.long)
    drafts = torch.zeros(n, WINDOW, dtype=torch.long)
    q = torch.full((n, WINDOW, V), 1.0 / V)
    settings = RowSampling.from_configs([CONFIG] * (n * L))
    rows = torch.arange(n)[:, None]
    forwards = torch.zeros(n)  # per sequence
    accepted_total = 0
    while bool((pos < L).any()):
        active = pos < L
        num = torch.minimum(ready, L - pos).clamp(max=WINDOW) * active
        at = pos[:, None] + torch.arange(WINDOW)
        seq[rows, at] = torch.where(torch.arange(WINDOW) < num[:, None], drafts, seq[rows, at])
        # one "forward": the target at every position given the current tokens
        mixed = cfg_mix(toy_logits(tables[0], seq[:, :L]).reshape(-1, V),
                        toy_logits(tables[1], seq[:, :L]).reshape(-1, V), torch.full((n * L,), GUIDANCE))
        p = processed_probs(mixed, settings).view(n, L, V)
        p = torch.cat([p, p[:, -1:].expand(-1, slots, -1)], dim=1)  # padding past the end
        p = p[rows, pos[:, None] + torch.arange(slots)]
        has_bonus = pos + num < L
        accepted, final = verify(p, q, drafts, num, has_bonus, torch.rand(n, WINDOW, generator=gen),
                                 torch.rand(n, generator=gen))
        new_drafts, new_q = refresh_drafts(p, accepted, num, has_bonus, torch.rand(n, WINDOW, generator=gen))
        drew = final >= 0
        seq[torch.arange(n), pos + accepted] = torch.where(drew & active, final, seq[torch.arange(n), pos + accepted])
        drafts = torch.where(active[:, None], new_drafts, drafts)
        q = torch.where(active[:, None, None], new_q, q)
        ready = torch.where(drew, WINDOW, 0)
        accepted_total += int((accepted * active).sum())
        pos = torch.where(active, torch.where(drew, pos + accepted + 1, pos + num), pos)
        forwards += active
    return seq[:, :L], float(forwards.mean()), accepted_total


def chi_square(samples, seqs, probs):
    """Goodness of fit of sampled sequences to the exact joint (cells with < 5 expected pooled)."""
    index = (samples * V ** torch.arange(L - 1, -1, -1)).sum(-1)
    cells = (seqs * V ** torch.arange(L - 1, -1, -1)).sum(-1)
    observed = torch.bincount(index, minlength=V ** L)[cells].double()
    expected = probs.double() * len(samples)
    assert observed[expected == 0].sum() == 0, "an outcome of probability 0 was sampled"
    observed, expected = observed[expected > 0], expected[expected > 0]
    small = expected < 5
    if small.any():
        observed = torch.cat([observed[~small], observed[small].sum()[None]])
        expected = torch.cat([expected[~small], expected[small].sum()[None]])
    expected = expected * observed.sum() / expected.sum()
    return chisquare(observed.numpy(), expected.numpy()).pvalue


def marginal_p_values(samples, seqs, probs):
    out = []
    for t in range(L):
        exact = torch.zeros(V, dtype=torch.float64).index_add_(0, seqs[:, t], probs.double())
        observed = torch.bincount(samples[:, t], minlength=V).double()
        keep = exact > 0
        assert observed[~keep].sum() == 0, "a token of probability 0 was sampled"
        expected = exact[keep] / exact[keep].sum() * len(samples)
        out.append(chisquare(observed[keep].numpy(), expected.numpy()).pvalue)
    return out


N_SAMPLES = 200_000  # marginal cells of p ~ 0.5 shifted by 0.01: noncentrality N*4e-4 = 80


@pytest.fixture(scope="module")
def toy():
    tables = toy_tables()
    seqs, probs = exact_joint(tables)
    return tables, seqs, probs


def test_speculative_samples_follow_the_sequential_distribution(toy):
    tables, seqs, probs = toy
    samples, forwards, accepted = speculative_samples(tables, N_SAMPLES, seed=1)
    assert forwards < 0.9 * L  # drafts were accepted: fewer forwards than tokens
    print(f"forwards per sequence {forwards:.2f} for {L} tokens")
    assert 0 < accepted < N_SAMPLES * L  # and some were rejected
    joint_p, marginal_p = chi_square(samples, seqs, probs), marginal_p_values(samples, seqs, probs)
    print(f"joint chi-square p = {joint_p:.3f}, marginal p-values {[round(v, 3) for v in marginal_p]}")
    assert joint_p > 1e-3
    assert min(marginal_p) > 1e-3 / L
    tv = 0.5 * (torch.bincount((samples * V ** torch.arange(L - 1, -1, -1)).sum(-1), minlength=V ** L)[
        (seqs * V ** torch.arange(L - 1, -1, -1)).sum(-1)].double() / N_SAMPLES - probs.double()).abs().sum()
    print(f"total variation to the exact joint {tv:.4f}")
    assert tv < 0.03  # sampling noise alone: E[TV] ~ 0.5 * sum sqrt(2 p / (pi N)) ~ 0.02 here


def test_the_test_detects_a_one_percent_shift(toy):
    """Power: samples drawn from the exact joint with 1% of probability moved between two
    outcomes that differ in one position fail the marginal test."""
    _, seqs, probs = toy
    shifted = probs.double().clone()
    big = int(probs.argmax())
    neighbours = (seqs != seqs[big]).sum(-1) == 1  # differ in one position
    other = int(torch.where(neighbours, probs, torch.zeros_like(probs)).argmax())
    shifted[big] -= 0.01
    shifted[other] += 0.01
    draws = torch.multinomial(shifted, N_SAMPLES, replacement=True, generator=torch.Generator().manual_seed(3))
    assert min(marginal_p_values(seqs[draws], seqs, probs)) < 1e-6
    unshifted = torch.multinomial(probs.double(), N_SAMPLES, replacement=True,
                                  generator=torch.Generator().manual_seed(3))
    assert min(marginal_p_values(seqs[unshifted], seqs, probs)) > 1e-3 / L


def test_a_wrong_acceptance_rule_is_detected(toy):
    """Accepting every draft that p allows (no min(1, p/q) coin) biases the output: caught."""
    tables, seqs, probs = toy

    def accept_all(p, q, drafts, num, bonus, coins, u):
        return verify_window(p, q, drafts, num, bonus, torch.zeros_like(coins), u)

    samples, _, _ = speculative_samples(tables, N_SAMPLES // 10, seed=2, verify=accept_all)
    assert chi_square(samples, seqs, probs) < 1e-6


def test_verify_window_by_hand():
    p = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]]])
    q = torch.tensor([[[0.25, 0.75, 0.0], [1.0, 0.0, 0.0]]])
    drafts = torch.tensor([[1, 0]])
    # draft 0: p/q = 0.5/0.75 = 2/3 -> accepted with coin 0.5; draft 1: p = 0 -> rejected,
    # the residual max(0, p - q) at slot 1 is all on id 1
    accepted, final = verify_window(p, q, drafts, torch.tensor([2]), torch.tensor([True]),
                                    torch.tensor([[0.5, 0.0]]), torch.tensor([0.99]))
    assert accepted.tolist() == [1] and final.tolist() == [1]
    accepted, final = verify_window(p, q, drafts, torch.tensor([2]), torch.tensor([True]),
                                    torch.tensor([[0.7, 0.0]]), torch.tensor([0.1]))
    # coin 0.7 > 2/3 rejects draft 0: residual max(0, [0.25, -0.25, 0]) -> id 0
    assert accepted.tolist() == [0] and final.tolist() == [0]
    # all drafts kept, no bonus slot: nothing drawn
    accepted, final = verify_window(p[:, :2], q[:, :1], drafts[:, :1], torch.tensor([1]), torch.tensor([False]),
                                    torch.tensor([[0.1]]), torch.tensor([0.5]))
    assert accepted.tolist() == [1] and final.tolist() == [-1]


def test_refresh_drafts_samples_from_this_forwards_distributions():
    p = torch.eye(4)[None, :3]  # slot j certainly holds token j
    drafts, q = refresh_drafts(p, torch.tensor([0]), torch.tensor([1]), torch.tensor([True]), torch.rand(1, 3))
    # after slot 0: slot 1 from its own distribution, slots 2, 3 initialised from slot 1's (the last one)
    assert drafts.tolist() == [[1, 1, 1]]
    assert torch.equal(q[0], p[0, [1, 1, 1]])


def test_window_policy_tracks_accepted_runs():
    policy = WindowPolicy(SpeculativeConfig(window_init=8, window_min=2, window_max=16))
    policy.update(8, 8)
    assert policy.window == 16  # 2 * 8 + 2, capped
    for _ in range(10):
        policy.update(policy.window, 0)
    assert policy.window == 2
    policy.update(0, 0)  # a forward without drafts changes nothing
    assert policy.window == 2
    with pytest.raises(ValueError, match="window_min"):
        SpeculativeConfig(window_min=4, window_init=2)



# ---------------------------------------------------------------------- the engine path
@pytest.fixture(scope="module")
def tiny_engine():
    from illume_plus.mllm.engine import DecodingEngine

    return DecodingEngine(*tiny_model_and_processor())


def image_request(processor, caption, size, guidance=2.0, settings=None, seed=0):
    from illume_plus.mllm.engine import GenerationRequest
    from illume_plus.mllm.sampling import GenerationSettings

    return GenerationRequest(
        prompt=processor.encode_text_to_image(caption, size=size),
        unconditional_prompt=processor.encode_text_to_image(None, size=size) if guidance != 1.0 else None,
        image_size=size, guidance_scale=guidance, seed=seed,
        settings=settings or GenerationSettings.text_to_image(temperature=0.9, top_k=40, top_p=0.95))


def test_greedy_speculative_equals_sequential_token_for_token(tiny_engine):
    """With argmax targets the rule keeps a draft iff it is the argmax: the frames must be the
    sequential engine's exactly — across both grids, forced tokens, CFG and no CFG, repetition
    penalty over drafts, a batch of different sizes (cache holes) and window rollbacks."""
    from illume_plus.mllm.sampling import GenerationSettings, SamplingConfig

    greedy = GenerationSettings(semantic=SamplingConfig(greedy=True), pixel=SamplingConfig(greedy=True))
    processor = tiny_engine.processor
    requests = [image_request(processor, "a cat", (64, 64), settings=greedy),
                image_request(processor, "two dogs", (128, 64), guidance=1.0, settings=greedy),
                image_request(processor, "x", (64, 128), settings=greedy.updated(repetition_penalty=1.3))]
    sequential = tiny_engine.generate(requests, speculative=False)
    speculative = tiny_engine.generate(requests, speculative=SpeculativeConfig(window_init=4, window_max=6))
    stats = tiny_engine.last_speculative_stats
    for a, b in zip(sequential, speculative):
        assert torch.equal(a.token_ids, b.token_ids)
        assert torch.equal(a.images[0].pixel_ids, b.images[0].pixel_ids)
    assert stats.forwards < max(len(o.token_ids) for o in sequential) - 1
    assert any(k > 1 for k in stats.accepted["pixel"])  # runs of several tokens per forward


def test_a_request_does_not_depend_on_its_batch_mates(tiny_engine):
    processor = tiny_engine.processor
    alone = tiny_engine.generate([image_request(processor, "a red circle", (64, 64), seed=5)], speculative=True)
    mates = tiny_engine.generate([image_request(processor, "noise", (128, 128), seed=1),
                                  image_request(processor, "a red circle", (64, 64), seed=5),
                                  image_request(processor, "more", (64, 128), guidance=1.0, seed=2)],
                                 speculative=True)
    assert torch.equal(alone[0].token_ids, mates[1].token_ids)
    # sampled frames are well formed (parse_frame re-checks every forced token)
    assert [tuple(o.images[0].pixel_ids.shape) for o in mates] == [(8, 8), (4, 4), (4, 8)]


def test_the_engine_allocates_its_kv_cache_once(tiny_engine, monkeypatch):
    """Every forward of a request runs on the same cache buffers, allocated by the prefill,
    across rejections and a batch whose rows keep different lengths (no growth, no copies)."""
    from illume_plus.mllm.kv_cache import PreallocatedKVCache

    seen = []
    step = tiny_engine.model.step

    def recording_step(*args, past_key_values=None, **kwargs):
        buffers = [(layer.keys.data_ptr(), tuple(layer.keys.shape), layer.values.data_ptr())
                   for layer in past_key_values.layers]
        seen.append((past_key_values, buffers, past_key_values.row_lengths()))
        return step(*args, past_key_values=past_key_values, **kwargs)

    monkeypatch.setattr(tiny_engine.model, "step", recording_step)
    processor = tiny_engine.processor
    tiny_engine.generate([image_request(processor, "a", (64, 64), seed=1),
                          image_request(processor, "b", (64, 128), seed=2)],
                         speculative=SpeculativeConfig(window_init=4, window_max=6))
    assert len(seen) > 2
    assert len({id(cache) for cache, _, _ in seen}) == 1 and isinstance(seen[0][0], PreallocatedKVCache)
    assert all(buffers == seen[0][1] for _, buffers, _ in seen)
    assert any(len(set(lengths)) > 1 for _, _, lengths in seen)  # rows did keep different lengths


@pytest.mark.parametrize("speculative", [True, False])
def test_decoding_logs_no_cache_deprecation(tiny_engine, monkeypatch, speculative):
    """transformers 5.24 logs once that `past_key_values` is deprecated when it is asked for
    by that name (our decoder call once read the output that way, on both paths)."""
    from transformers.utils import generic

    messages = []
    monkeypatch.setattr(generic.logger, "warning_once", lambda *args, **kwargs: messages.append(args))
    tiny_engine.generate([image_request(tiny_engine.processor, "a", (64, 64))], speculative=speculative)
    assert not messages
