"""Batched decoding for ILLUME+: text replies and images, with CFG, in one loop.

One call decodes a batch of requests, each with its own prompt, task (text reply or an
image of a given size), sampling settings and seed. The loop, top to bottom:

1. Rows. Every request has a conditional row; a request with an unconditional prompt
   (CFG) also gets an unconditional row. All rows are left-padded into ONE batch with
   per-row position ids, prefilled once, and share ONE KV cache (kv_cache.py, preallocated
   for the whole request): CFG costs doubled rows in the same forward, never a second call.
2. Schedule. An image's token structure is fixed by its size (SPEC §3): the engine lays out
   every step up front — forced structural tokens (`<start_of_image>`, level markers,
   `<end_of_line>`, ...) are inserted, code slots are sampled. A text reply samples every
   step until a stop id (`<|im_end|>`, `<|endoftext|>`). Which rows sample from which
   vocabulary range at which step is therefore known on the host before decoding starts:
   no per-step device->host sync.
3. Each step (thread count chosen by threads.StepThreads; every tensor it reads is built
   before the loop): the LM head is applied to the last hidden state only, only to the rows
   that sample, and only to the active range — semantic codes, pixel codes, or the text
   vocabulary (which excludes every image token). Image phases mix
   g·(logsoftmax(cond) − logsoftmax(uncond)) + logsoftmax(uncond); the phase's warper
   passes (sampling.py) are applied to the result; each request draws with its own
   pre-drawn uniforms.
4. The chosen token of each request is fed to its conditional row and its unconditional
   row alike (the unconditional context is its prompt + the same generated tokens).

Outputs come straight from the ids: the text reply, or the (h1, w1) semantic and (h2, w2)
pixel code grids of the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from .frames import frame_code_levels, parse_frame, structure_template
from .kv_cache import PreallocatedKVCache
from .limits import check_guidance_scale, check_image_size
from .sampling import (GenerationSettings, RowSampling, apply_repetition_penalty, draw_uniforms, make_generator,
                       sample_rows)
from .threads import StepThreads

__all__ = ["GenerationRequest", "GeneratedImage", "GenerationOutput", "DecodingEngine", "ImageSchedule"]

# Phase codes of a schedule step.
PHASE_FORCED, PHASE_TEXT, PHASE_SEMANTIC, PHASE_PIXEL, PHASE_DONE = 0, 1, 2, 3, 4
_PHASE_NAMES = {PHASE_TEXT: "text", PHASE_SEMANTIC: "semantic", PHASE_PIXEL: "pixel"}


@dataclass
class GenerationRequest:
    """One thing to decode.

    prompt: the conditional context (an `EncodedSequence` from the processor; for an image
        it must end where `<start_of_image>` comes next, i.e. after the resolution tag).
    unconditional_prompt: the CFG context (random-image prompt for text-to-image, the
        reconstruction prompt with the same source image for editing), or None for no CFG.
    image_size: (H, W) to generate an image of that size; None for a text reply.
    guidance_scale: g in the CFG mix (image tokens only); 1.0 with an unconditional prompt
        still runs the mix (equal to no CFG up to rounding).
    """

    prompt: object
    unconditional_prompt: object | None = None
    image_size: tuple[int, int] | None = None
    guidance_scale: float = 1.0
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    seed: int | torch.Generator | None = 0
    max_new_tokens: int = 256

    def __post_init__(self):
        if self.unconditional_prompt is not None and self.image_size is None:
            raise ValueError("CFG (an unconditional prompt) applies to image requests only; set image_size")
        if int(self.max_new_tokens) != self.max_new_tokens or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {self.max_new_tokens}")
        self.guidance_scale = check_guidance_scale(self.guidance_scale)  # NaN/inf would silently give one code
        if self.image_size is not None:
            self.image_size = check_image_size(self.image_size, "image_size")


@dataclass
class GeneratedImage:
    semantic_ids: torch.Tensor  # (h1, w1) codebook indices
    pixel_ids: torch.Tensor  # (h2, w2) codebook indices
    size: tuple[int, int]  # (H, W) pixels


@dataclass
class GenerationOutput:
    token_ids: torch.Tensor  # (n,) every token the request produced, structural ones included
    text: str = ""
    images: list[GeneratedImage] = field(default_factory=list)
    finish_reason: str = "length"  # "stop" (a stop id), "image" (<end_of_image>) or "length"


@dataclass
class ImageSchedule:
    """What each step of an image does: the forced token, or the level to sample."""

    tokens: torch.Tensor  # (n,) forced id, or -1 where a code is sampled
    phases: torch.Tensor  # (n,) PHASE_FORCED / PHASE_SEMANTIC / PHASE_PIXEL

    @classmethod
    def build(cls, layout, spec) -> "ImageSchedule":
        """From <start_of_image> to <end_of_image>, as the frame layout defines it."""
        levels = frame_code_levels(spec)
        phases = torch.full_like(levels, PHASE_FORCED)
        phases[levels == 0] = PHASE_SEMANTIC
        phases[levels == 1] = PHASE_PIXEL
        return cls(structure_template(layout, spec), phases)


@dataclass
class _Group:
    """Rows that sample from the same vocabulary range at one step (host-side indices)."""

    phase: int
    requests: list[int]  # request indices (= conditional rows)
    cfg_requests: list[int]  # the subset with an unconditional row


@dataclass
class _GroupPlan:
    """A group's device index tensors and settings, built once per distinct group."""

    rows: torch.Tensor  # (R,) the group's requests (= their conditional rows)
    head_rows: torch.Tensor  # (R + C,) the rows the head runs on: conditional, then unconditional
    cfg_positions: torch.Tensor | None  # (C,) where the CFG requests sit among `rows`; None: no CFG
    all_cfg: bool  # every request of the group has CFG
    guidance: torch.Tensor | None  # (C, 1) their guidance scales
    settings: RowSampling  # the rows' own settings for the group's phase

    @classmethod
    def build(cls, group: _Group, uncond_row: dict, settings: RowSampling, guidance: torch.Tensor, device):
        def index(values):
            return torch.tensor(values, dtype=torch.long, device=device)

        rows = index(group.requests)
        cfg = group.cfg_requests
        return cls(rows=rows, head_rows=index(group.requests + [uncond_row[i] for i in cfg]),
                   cfg_positions=index([group.requests.index(i) for i in cfg]) if cfg else None,
                   all_cfg=len(cfg) == len(group.requests),
                   guidance=guidance[index(cfg)][:, None] if cfg else None,
                   settings=settings.select(rows, group.requests))


class DecodingEngine:
    """Decodes batches of `GenerationRequest`s with an `IllumePlus` model and its processor.

    `engine.generate(requests)` returns one `GenerationOutput` per request;
    `engine.stream(requests)` yields `(step, tokens)` after every step (tokens (B,) on the
    device; reading them is the caller's sync) and returns the outputs at the end.
    """

    def __init__(self, model, processor, check_stop_every: int = 16, stop_token_ids=(),
                 num_threads: int | None = None, speculative=None):
        self.model = model
        # None/False: one token per forward; True or a SpeculativeConfig: image-only batches
        # given to `generate` decode by speculative Jacobi decoding (speculative_engine.py)
        self.speculative = speculative
        self.last_speculative_stats = None
        self.processor = processor
        self.layout = processor.layout
        # Text replies score the original text vocabulary only, [0, first added id): this
        # bans the codes, level markers and <end_of_line> (SPEC §3), and also the resolution
        # tags and <start_of_image> — an image starts only when a request asks for one.
        added = [*self.layout.structural_ids, *(i for _, i in self.layout.height_tags),
                 *(i for _, i in self.layout.width_tags), self.layout.semantic_code_start, self.layout.pixel_code_start]
        self.text_range = (0, min(added))
        if int(self.layout.text_banned_ids().min()) < self.text_range[1] or self.layout.im_end >= self.text_range[1]:
            raise ValueError("the tokenizer does not place the image vocabulary after the text vocabulary")
        self.ranges = {PHASE_TEXT: self.text_range, PHASE_SEMANTIC: self.layout.semantic_range,
                       PHASE_PIXEL: self.layout.pixel_range}
        self.check_stop_every = check_stop_every
        # a text reply ends at <|im_end|>, <|endoftext|> or any extra id (a checkpoint's eos ids)
        self.stop_token_ids = tuple(sorted({*self.layout.stop_ids, *(int(i) for i in stop_token_ids)}))
        self.num_threads = num_threads  # None: threads.StepThreads' policy; k: k threads per step

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def generate(self, requests: list[GenerationRequest], on_step: Callable | None = None,
                 speculative=None) -> list[GenerationOutput]:
        """Decode `requests`. `speculative` (None: the engine's setting; False, True or a
        SpeculativeConfig) applies to batches of image requests only (other batches decode one
        token per forward); there `on_step(step, None)` follows each forward, `step` the
        furthest frame position fixed."""
        speculative = self.speculative if speculative is None else speculative
        if speculative and requests and all(r.image_size is not None for r in requests):
            from .speculative import SpeculativeConfig
            from .speculative_engine import SpeculativeDecoder

            decoder = SpeculativeDecoder(self, speculative if isinstance(speculative, SpeculativeConfig) else None)
            outputs = decoder.generate(requests, on_step=on_step)
            self.last_speculative_stats = decoder.last_stats
            return outputs
        stream = self.stream(requests)
        while True:
            try:
                step, tokens = next(stream)
            except StopIteration as done:
                return done.value
            if on_step is not None:
                on_step(step, tokens)

    @torch.no_grad()
    def stream(self, requests: list[GenerationRequest]) -> Iterator:
        """Decode `requests` together, yielding `(step, tokens (B,))` after every step; the
        generator's return value is the list of `GenerationOutput`s."""
        if not requests:
            return []
        device = self._device()
        n_requests = len(requests)
        schedules = [self._schedule(r) for r in requests]

        # ---- 1. rows: conditional rows first, then one unconditional row per CFG request
        cfg_requests = [i for i, r in enumerate(requests) if r.unconditional_prompt is not None]
        sequences = [r.prompt for r in requests] + [requests[i].unconditional_prompt for i in cfg_requests]
        row_request = torch.tensor(list(range(n_requests)) + cfg_requests, device=device)
        uncond_row = {i: n_requests + j for j, i in enumerate(cfg_requests)}
        batch = self.processor.collate(sequences, padding_side="left").to(device)

        # ---- 2. schedule: phases (B, T) and forced tokens (B, T), known before decoding
        num_steps = max(len(s[0]) for s in schedules)
        phases = torch.full((n_requests, num_steps), PHASE_DONE, dtype=torch.long)
        forced_tokens = torch.full((n_requests, num_steps), self.layout.pad_token_id, dtype=torch.long)
        for i, (tokens, request_phases) in enumerate(schedules):
            phases[i, : len(request_phases)] = request_phases
            forced_tokens[i, : len(tokens)] = torch.where(tokens >= 0, tokens, self.layout.pad_token_id)
        groups = self._step_groups(phases, cfg_requests)
        forced_tokens = forced_tokens.to(device)

        settings = {p: RowSampling.from_configs([r.settings.for_phase(name) for r in requests], device)
                    for p, name in _PHASE_NAMES.items()}
        uniforms = torch.zeros(n_requests, num_steps)
        for i, r in enumerate(requests):
            own = draw_uniforms(make_generator(r.seed), len(schedules[i][0]))
            uniforms[i, : len(own)] = own
        uniforms = uniforms.to(device)
        guidance = torch.tensor([float(r.guidance_scale) for r in requests], device=device)
        text_rows = [i for i, r in enumerate(requests) if r.image_size is None]
        image_steps = max((len(schedules[i][0]) for i, r in enumerate(requests) if r.image_size), default=0)
        track_seen = any(settings[p].uses_repetition_penalty for p in settings)
        seen = torch.zeros(n_requests, self._vocab_size(), dtype=torch.bool, device=device) if track_seen else None

        # ---- 3. prefill, then one token per row per step on the shared cache
        # Everything a step touches is allocated here, once: the KV cache for the whole
        # request, the padding mask, every step's position ids, the generated-token buffer,
        # and the index tensors of each sampling group.
        prompt_len = batch.attention_mask.shape[1]
        cache = PreallocatedKVCache(self.model.config.num_hidden_layers, prompt_len + num_steps)
        out = self.model.prefill(batch, past_key_values=cache, compute_logits=False)  # the head runs per group
        hidden = out.hidden
        # Every new token attends to all real tokens before it, so a step's mask is just the
        # padding mask, handed over as (rows, 1, 1, keys) booleans: transformers then uses it
        # as it is instead of rebuilding (and inspecting) a mask every step.
        attention_mask = torch.ones(len(sequences), 1, 1, prompt_len + num_steps, dtype=torch.bool, device=device)
        attention_mask[:, 0, 0, :prompt_len] = batch.attention_mask.bool()
        positions = batch.attention_mask.sum(-1, keepdim=True) + torch.arange(num_steps, device=device)
        generated = torch.empty(n_requests, num_steps, dtype=torch.long, device=device)
        finished = torch.zeros(n_requests, dtype=torch.bool, device=device)
        text_row_mask = torch.zeros(n_requests, dtype=torch.bool, device=device)
        text_row_mask[text_rows] = True
        stop_ids = torch.tensor(self.stop_token_ids, device=device)
        request_index = torch.arange(n_requests, device=device)
        plans: dict[tuple, _GroupPlan] = {}

        def plan_of(group):  # index tensors and settings of a group, built once per distinct group
            key = (group.phase, tuple(group.requests))
            if key not in plans:
                plans[key] = _GroupPlan.build(group, uncond_row, settings[group.phase], guidance, device)
            return plans[key]

        steps_run = 0
        with StepThreads.for_model(self.model, self.num_threads) as threads:
            for step in range(num_steps):
                threads.begin()
                tokens = generated[:, step]  # filled in place: forced tokens, then each group's draw
                tokens.copy_(forced_tokens[:, step])
                for group in groups[step]:
                    plan = plan_of(group)
                    tokens.index_copy_(0, plan.rows, self._sample_group(group.phase, plan, hidden,
                                                                        uniforms[:, step], seen))
                if text_rows:
                    # finished text rows keep running (their tokens are dropped at the end)
                    tokens.masked_fill_(finished, self.layout.pad_token_id)
                    finished |= text_row_mask & torch.isin(tokens, stop_ids)
                if seen is not None:
                    seen[request_index, tokens] = True
                steps_run = step + 1
                last = step + 1 == num_steps
                if not last:
                    hidden = self.model.step(input_ids=tokens[row_request][:, None],
                                             attention_mask=attention_mask[..., : prompt_len + step + 1],
                                             position_ids=positions[:, step:step + 1], past_key_values=cache,
                                             compute_logits=False).hidden
                threads.end()
                yield step, tokens
                if last:
                    break
                if text_rows and step + 1 >= image_steps and (step + 1) % self.check_stop_every == 0:
                    if bool(finished[text_rows].all()):  # the loop's only host sync, every few steps
                        break

        return self._outputs(requests, generated[:, :steps_run].cpu(), schedules)

    # ------------------------------------------------------------------ pieces
    def _sample_group(self, phase, plan, hidden, uniforms, seen):
        """Tokens (len(plan.rows),) for rows that sample from one vocabulary range."""
        start, stop = self.ranges[phase]
        # one head matmul for the conditional and unconditional rows, on the range only
        logits = self.model.logits_from_hidden(hidden[plan.head_rows], vocab_range=(start, stop))
        n = len(plan.rows)
        cond, uncond = logits[:n], logits[n:]
        if seen is not None and plan.settings.uses_repetition_penalty:
            # the authors' generate penalises the conditional logits only, before CFG
            cond = apply_repetition_penalty(cond, seen[plan.rows, start:stop], plan.settings.repetition_penalty)
        if phase != PHASE_TEXT:
            cond = cond.log_softmax(dim=-1)
            if plan.cfg_positions is not None:
                uncond = uncond.log_softmax(dim=-1)
                mixed = plan.guidance * (cond[plan.cfg_positions] - uncond) + uncond
                cond = mixed if plan.all_cfg else cond.index_copy(0, plan.cfg_positions, mixed)
        return sample_rows(cond, plan.settings, uniforms[plan.rows]) + start

    def _schedule(self, request: GenerationRequest):
        if request.image_size is None:
            n = request.max_new_tokens
            return torch.full((n,), -1, dtype=torch.long), torch.full((n,), PHASE_TEXT, dtype=torch.long)
        spec = self.processor.frame_spec(*request.image_size)
        schedule = ImageSchedule.build(self.layout, spec)
        return schedule.tokens, schedule.phases

    def _step_groups(self, phases: torch.Tensor, cfg_requests: list[int]) -> list[list[_Group]]:
        """For every step, the sampling groups (one per active phase). Host-side, once."""
        cfg = set(cfg_requests)
        groups = []
        for column in phases.t().tolist():
            step_groups = []
            for phase in (PHASE_TEXT, PHASE_SEMANTIC, PHASE_PIXEL):
                rows = [i for i, p in enumerate(column) if p == phase]
                if rows:
                    step_groups.append(_Group(phase, rows, [i for i in rows if i in cfg]))
            groups.append(step_groups)
        return groups

    def _outputs(self, requests, generated: torch.Tensor, schedules) -> list[GenerationOutput]:
        outputs = []
        for i, request in enumerate(requests):
            tokens, _ = schedules[i]
            ids = generated[i, : len(tokens)]
            if request.image_size is None:
                stops = torch.isin(ids, torch.tensor(self.stop_token_ids)).nonzero()
                if len(stops):
                    ids, reason = ids[: int(stops[0])], "stop"
                else:
                    reason = "length"
                outputs.append(GenerationOutput(token_ids=ids, text=self.processor.decode_text(ids),
                                                finish_reason=reason))
                continue
            spec = self.processor.frame_spec(*request.image_size)
            semantic, pixel = parse_frame(self.layout, ids, spec)
            image = GeneratedImage(semantic_ids=semantic, pixel_ids=pixel, size=(spec.height, spec.width))
            outputs.append(GenerationOutput(token_ids=ids, images=[image], finish_reason="image"))
        return outputs

    def _device(self) -> torch.device:
        return self.model.device

    def _vocab_size(self) -> int:
        return self.model.config.vocab_size
