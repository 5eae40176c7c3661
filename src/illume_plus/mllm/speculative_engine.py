"""Speculative Jacobi decoding of image requests on IllumePlus (the rule: speculative.py).

`SpeculativeDecoder(engine, config).generate(requests)` decodes a batch of image requests
(text-to-image or editing, any sizes, with or without CFG) and returns the same
`GenerationOutput`s as `DecodingEngine.generate`, with every token distributed exactly as
the sequential engine samples it (not the same sample for a given seed: the random numbers
are used differently). Per forward, top to bottom:

1. Windows (host). A request's frame is fixed by its size: forced structure tokens
   (`<end_of_line>`, level markers, ...) and sampled code slots. Its window is its pending
   token (the last fixed one, not yet in the KV cache), then up to `W` drafted code slots of
   the current phase with the forced tokens among and after them (they are known, so they
   cost no draft slot and are always "accepted"), up to the next code slot — the bonus slot.
   A window never drafts across the semantic -> pixel boundary (the two grids score different
   vocabulary ranges); the first forward of a phase drafts nothing (no distribution yet).
2. One forward of every row's window: conditional and unconditional (CFG) rows of a request
   carry the same tokens, on one shared KV cache, with a (rows, 1, k, keys) boolean mask.
3. Targets (per phase group): the LM head on the phase's range at the drafted and bonus
   slots, repetition penalty on the conditional logits over the tokens before each slot
   (fixed ones and the drafts before it), the CFG mix, then the request's temperature /
   top-k / top-p — the sequential engine's exact processing (sampling.py).
4. `verify_window` / `refresh_drafts` (speculative.py), with uniforms pre-drawn from each
   request's own generator (one row per forward it takes part in), so a request's tokens
   never depend on its batch mates.
5. KV rollback: one `PreallocatedKVCache` (kv_cache.py) holds the whole request, sized up
   front for the prompt, the longest frame and the widest window. Each row keeps the columns
   of its own accepted tokens (`rollback`: the valid length set back, nothing reallocated or
   copied); the next forward writes each row right after them, so rows of batch mates with
   different acceptance never leave holes, and the mask hides a shorter row's stale columns.

`last_stats` holds the forwards run and the tokens fixed per forward, per phase.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

import torch

from .engine import PHASE_FORCED, PHASE_PIXEL, PHASE_SEMANTIC
from .kv_cache import PreallocatedKVCache
from .sampling import RowSampling, apply_repetition_penalty, cfg_mix, make_generator, processed_probs
from .speculative import SpeculativeConfig, WindowPolicy, refresh_drafts, verify_window

__all__ = ["SpeculativeDecoder", "SpeculativeStats"]

PHASE_NAMES = {PHASE_SEMANTIC: "semantic", PHASE_PIXEL: "pixel"}


@dataclass
class SpeculativeStats:
    forwards: int = 0  # model calls after the prefill (the sequential engine: frame tokens - 1)
    # per phase: Counter {code tokens fixed by one forward: how many forwards}
    accepted: dict = field(default_factory=lambda: {name: Counter() for name in PHASE_NAMES.values()})

    def mean_accepted(self, phase: str) -> float:
        counts = self.accepted[phase]
        total = sum(counts.values())
        return sum(k * v for k, v in counts.items()) / total if total else 0.0


class _Request:
    """Host-side bookkeeping of one request's frame."""

    def __init__(self, schedule, config: SpeculativeConfig):
        tokens, phases = schedule
        self.length = len(tokens)
        self.phases = phases.tolist()
        if self.phases[0] != PHASE_FORCED:  # frames open with <start_of_image>
            raise ValueError("an image frame must start with a forced token")
        self.slots = {p: [i for i, q in enumerate(self.phases) if q == p] for p in PHASE_NAMES}
        self.all_slots = [i for i, q in enumerate(self.phases) if q in PHASE_NAMES]
        self.policy = {p: WindowPolicy(config) for p in PHASE_NAMES}
        self.pos = 1  # tokens fixed (the forced <start_of_image> needs no forward)
        self.ready = 0  # drafts ready for the slots right after the next fixed one
        self.iteration = 0  # forwards this request sampled in (its row of uniforms)
        self.cached = 0  # frame tokens in the KV cache (pos - 1 while decoding: the pending one is fed next)
        # The widest window a forward can feed: its pending token, at most window_max code
        # slots and the forced tokens among them, up to the next code slot (or the frame end).
        edges, w = self.all_slots + [self.length], config.window_max
        self.max_width = max(e - (edges[m - w - 1] if m > w else 0) for m, e in enumerate(edges))

    @property
    def done(self) -> bool:
        return self.pos >= self.length

    def window(self):
        """(phase, first slot index, drafts, bonus?, end): input positions pos-1 .. end-1."""
        at = bisect.bisect_left(self.all_slots, self.pos)
        if at == len(self.all_slots):
            return None  # only forced tokens left
        phase = self.phases[self.all_slots[at]]
        slots = self.slots[phase]
        first = bisect.bisect_left(slots, self.pos)
        drafts = min(self.policy[phase].window, self.ready, len(slots) - first)
        bonus = first + drafts < len(slots)
        if bonus:
            end = slots[first + drafts]
        else:  # the phase ends: forced tokens up to the next code slot (or the frame end)
            later = bisect.bisect_right(self.all_slots, slots[-1])
            end = self.all_slots[later] if later < len(self.all_slots) else self.length
        return phase, first, drafts, bonus, end


class SpeculativeDecoder:
    """Speculative Jacobi decoding for the image requests of a `DecodingEngine`."""

    def __init__(self, engine, config: SpeculativeConfig | None = None):
        self.engine = engine
        self.model = engine.model
        self.layout = engine.layout
        self.config = config or SpeculativeConfig()
        self.last_stats = SpeculativeStats()

    @torch.no_grad()
    def generate(self, requests, on_step=None) -> list:
        if any(r.image_size is None for r in requests):
            raise ValueError("speculative decoding handles image requests only")
        cfg, model, device = self.config, self.model, self.model.device
        stats = self.last_stats = SpeculativeStats()
        n = len(requests)
        schedules = [self.engine._schedule(r) for r in requests]
        states = [_Request(s, cfg) for s in schedules]

        # rows: conditional rows, then an unconditional row per CFG request (as the engine)
        cfg_requests = [i for i, r in enumerate(requests) if r.unconditional_prompt is not None]
        row_request = list(range(n)) + cfg_requests
        uncond_row = {i: n + j for j, i in enumerate(cfg_requests)}
        batch = self.engine.processor.collate([r.prompt for r in requests]
                                              + [requests[i].unconditional_prompt for i in cfg_requests],
                                              padding_side="left").to(device)
        prompt_columns = batch.attention_mask.shape[1]
        prompt_length = batch.attention_mask.sum(-1).tolist()
        longest = max(s.length for s in states)
        reach = max(s.max_width for s in states)  # a row writes at most this far past its kept columns
        # allocated once: no forward allocates cache memory, a rejection only sets lengths back
        cache = PreallocatedKVCache(model.config.num_hidden_layers, prompt_columns + longest + reach)
        model.prefill(batch, past_key_values=cache, compute_logits=False)
        # (rows, keys): a row attends to its real prompt tokens and to its frame columns
        visible = torch.ones(len(row_request), prompt_columns + longest + reach, dtype=torch.bool, device=device)
        visible[:, :prompt_columns] = batch.attention_mask.bool()
        key_index = torch.arange(visible.shape[1], device=device)

        # the frame being written: forced tokens in place, drafts and fixed codes go into the slots
        seq = torch.full((n, longest + reach), self.layout.pad_token_id, dtype=torch.long)
        for i, (tokens, _) in enumerate(schedules):
            seq[i, : len(tokens)] = torch.where(tokens >= 0, tokens, self.layout.pad_token_id)
        seq = seq.to(device)
        uniforms = self._uniforms(requests, states, device)
        guidance = torch.tensor([float(r.guidance_scale) for r in requests], device=device)
        settings = {p: RowSampling.from_configs([r.settings.for_phase(name) for r in requests], device)
                    for p, name in PHASE_NAMES.items()}
        track_seen = any(settings[p].uses_repetition_penalty for p in settings)
        seen = torch.zeros(n, model.config.vocab_size, dtype=torch.bool, device=device) if track_seen else None
        drafts = {p: None for p in PHASE_NAMES}  # (n, W) ids in the phase range, (n, W, V) their q
        q = {p: None for p in PHASE_NAMES}

        while True:
            for s in states:  # a frame's forced tail needs no forward
                if not s.done and s.window() is None:
                    s.pos = s.length
            active = [i for i, s in enumerate(states) if not s.done]
            if not active:
                break
            windows = {i: states[i].window() for i in active}
            width = max(w[4] - states[i].pos + 1 for i, w in windows.items())
            # every row feeds the `width` frame tokens after its cached ones (a finished
            # request's row too: one batch tensor; those columns are rolled back unread)
            starts = torch.tensor([s.cached for s in states])
            for i in active:  # drafts into their slots of the frame
                phase, first, count, _, _ = windows[i]
                if count:
                    where = torch.tensor(states[i].slots[phase][first:first + count], device=device)
                    seq[i, where] = drafts[phase][i, :count] + self.engine.ranges[phase][0]
            ids = seq.gather(1, (starts[:, None] + torch.arange(width)).to(device))[row_request]
            base = torch.tensor([prompt_length[r] + starts[row_request[r]] for r in range(len(row_request))])
            positions = (base[:, None] + torch.arange(width)).to(device)
            # row r writes its window at columns held[r] .. held[r] + width - 1: query j sees
            # the columns up to its own (causal), past any stale ones of the longest row
            held = cache.row_lengths()  # host ints: no device sync for the key count
            keys = max(held) + width
            limit = torch.tensor(held, device=device)[:, None] + torch.arange(width, device=device)  # (rows, width)
            mask = visible[:, None, None, :keys] & (key_index[:keys] <= limit[:, :, None])[:, None]
            out = model.step(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                             all_positions=True)
            stats.forwards += 1

            fixed_upto = {}
            for phase in PHASE_NAMES:
                group = [i for i in active if windows[i][0] == phase]
                if group:
                    fixed_upto.update(self._verify_group(
                        phase, group, windows, states, out.hidden, uncond_row, seq, seen, settings, guidance,
                        uniforms, drafts, q, stats))

            for i in active:
                if seen is not None:
                    seen[i, seq[i, states[i].pos:fixed_upto[i]]] = True
                states[i].pos = fixed_upto[i]
                states[i].cached = fixed_upto[i] - 1  # the accepted run; the new pending token comes next
            # the one rollback: each row keeps its prompt and its request's accepted tokens
            cache.rollback([prompt_columns + states[request].cached for request in row_request])
            if on_step is not None:
                on_step(max(s.pos for s in states) - 1, None)

        generated = seq[:, :longest].cpu()
        return self.engine._outputs(requests, generated, schedules)

    # ------------------------------------------------------------------ pieces
    def _uniforms(self, requests, states, device) -> torch.Tensor:
        """(n, forwards, K) uniforms: a request's row t serves the t-th forward it samples in.
        A request samples in at most one forward per code slot."""
        per_iteration = self.config.uniforms_per_iteration
        most = max(len(s.all_slots) for s in states)
        table = torch.zeros(len(requests), most, per_iteration)
        for i, (r, s) in enumerate(zip(requests, states)):
            own = torch.rand((len(s.all_slots), per_iteration), generator=make_generator(r.seed))
            table[i, : len(own)] = own
        return table.to(device)

    def _verify_group(self, phase, group, windows, states, hidden, uncond_row, seq, seen, settings, guidance,
                      uniforms, drafts, q, stats) -> dict:
        """Verify the drafts of the requests in one phase; returns {request: new pos}."""
        device = hidden.device
        start, stop = self.engine.ranges[phase]
        wmax = self.config.window_max
        counts = [windows[i][2] for i in group]
        slots_n = max(counts) + 1
        # output index of each drafted/bonus slot (padding repeats the last real one)
        out_index, slot_pos = [], []
        for i, c in zip(group, counts):
            _, first, _, bonus, end = windows[i]
            slots = states[i].slots[phase][first:first + c + (1 if bonus else 0)] or [end]
            slots = slots + [slots[-1]] * (slots_n - len(slots))
            slot_pos.append(slots)
            out_index.append([p - states[i].pos for p in slots])
        g = torch.tensor(group, device=device)
        index = torch.tensor(out_index, device=device)
        cond = hidden[g[:, None], index]  # (G, S, D)
        logits = self.model.logits_from_hidden(cond, vocab_range=(start, stop))
        num_drafts = torch.tensor(counts, device=device)
        has_bonus = torch.tensor([windows[i][3] for i in group], device=device)
        if drafts[phase] is None:
            drafts[phase] = torch.zeros(len(states), wmax, dtype=torch.long, device=device)
            q[phase] = torch.zeros(len(states), wmax, stop - start, device=device)
        group_drafts, group_q = drafts[phase][g], q[phase][g]

        flat_rows = [i for i in group for _ in range(slots_n)]
        rows_t = torch.tensor(flat_rows, device=device)
        row_settings = settings[phase].select(rows_t, flat_rows)
        logits = logits.flatten(0, 1)
        if seen is not None and row_settings.uses_repetition_penalty:
            before = seen[g, start:stop][:, None, :].expand(-1, slots_n, -1).clone()
            # slot j also sees the drafts of slots < j
            one_hot = torch.zeros(len(group), slots_n, stop - start, dtype=torch.long, device=device)
            one_hot[:, : slots_n - 1].scatter_(-1, group_drafts[:, : slots_n - 1, None], 1)
            one_hot = one_hot * (torch.arange(slots_n, device=device)[None, :, None] < num_drafts[:, None, None])
            before |= (one_hot.cumsum(1) - one_hot) > 0
            logits = apply_repetition_penalty(logits, before.flatten(0, 1), row_settings.repetition_penalty)
        cfg_members = [k for k, i in enumerate(group) if i in uncond_row]
        logits = logits.log_softmax(dim=-1)  # image phases mix log-probabilities (as the engine)
        if cfg_members:
            members = torch.tensor(cfg_members, device=device)
            u_rows = torch.tensor([uncond_row[group[k]] for k in cfg_members], device=device)
            uncond = self.model.logits_from_hidden(hidden[u_rows[:, None], index[members]], vocab_range=(start, stop))
            flat = (members[:, None] * slots_n + torch.arange(slots_n, device=device)).flatten()
            mixed = cfg_mix(logits[flat], uncond.flatten(0, 1), guidance[g[members]].repeat_interleave(slots_n))
            logits = logits.index_copy(0, flat, mixed)
        p = processed_probs(logits, row_settings).view(len(group), slots_n, -1)

        its = torch.tensor([states[i].iteration for i in group], device=device)
        u = uniforms[g, its]  # (G, K)
        accepted, final = verify_window(p, group_q, group_drafts, num_drafts, has_bonus, u[:, :wmax], u[:, wmax])
        new_drafts, new_q = refresh_drafts(p, accepted, num_drafts, has_bonus, u[:, wmax + 1:])
        drafts[phase][g] = new_drafts
        q[phase][g] = new_q
        positions = torch.tensor(slot_pos, device=device).gather(1, accepted[:, None]).squeeze(1)
        current = seq[g, positions]
        seq[g, positions] = torch.where(final >= 0, final + start, current)

        fixed = {}
        for i, c, a, f in zip(group, counts, accepted.tolist(), (final >= 0).tolist()):
            s = states[i]
            _, first, _, bonus, end = windows[i]
            s.policy[phase].update(c, a)
            s.iteration += 1
            stats.accepted[PHASE_NAMES[phase]][a + int(f)] += 1
            if f:  # the run ends at slot a with a drawn token; drafts continue after it
                fixed[i] = s.slots[phase][first + a] + 1
                s.ready = min(self.config.window_max, len(s.slots[phase]) - (first + a + 1))
            else:  # the phase's last drafts all kept: its forced tail is fixed too
                fixed[i] = end
                s.ready = 0
        return fixed
