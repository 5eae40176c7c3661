"""How the next token is picked: per-phase settings and one batched, per-row sampler.

A request decodes in up to three phases (text, semantic codes, pixel codes), each with its
own `SamplingConfig`. The engine scores only the active phase's vocabulary range, so every
function here works on *sliced* logits (rows x range size), never on the full vocabulary.

Order, as transformers' generate runs it: repetition penalty (on the conditional logits,
before CFG; see the engine) -> one warper pass (temperature -> top-k -> top-p) -> an
optional second warper pass -> draw.

Two presets (docs/reproducing.md, "Inference defaults"):
- "authors" (the default): what the authors' scripts effectively sample from. Their logits
  processor applies CFG and its own temperature / top-k / top-p, and transformers 4.44's
  generate then applies ITS temperature / top-k / top-p warpers (built from the same
  command-line values) once more. So every image phase gets a second pass: text-to-image
  pixel top-k 6144 is cut to 2048 by the second pass; editing applies temperature 0.7 and
  top-p 0.8 twice and cuts pixel top-k 1536 to 512.
- "clean": each setting applied once, as the paper describes them.

Randomness: each request owns a `torch.Generator`, from which the engine draws one
uniform number per decoding step up front (`draw_uniforms`). A row's token is then picked
by inverse-CDF sampling with its own uniform, so a request's output depends only on its
own seed and logits, never on its batch mates, and the loop draws nothing per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch

__all__ = [
    "WarperPass",
    "SamplingConfig",
    "GenerationSettings",
    "SAMPLING_PRESETS",
    "PassRows",
    "RowSampling",
    "warp",
    "warped_scores",
    "apply_repetition_penalty",
    "sample_rows",
    "processed_probs",
    "draw_from_probs",
    "cfg_mix",
    "draw_uniforms",
    "make_generator",
]

SAMPLING_PRESETS = ("authors", "clean")
PIXEL_TOP_K_RATIO = 3  # the pixel codebook is 3x the semantic one, so is its own top-k (theirs)


def _check_warpers(temperature: float, top_k: int, top_p: float) -> None:
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be > 0 (use greedy=True for argmax), got {temperature}")
    if int(top_k) != top_k or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 disables it), got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


@dataclass(frozen=True)
class WarperPass:
    """One pass of transformers-style warpers: temperature -> top-k -> top-p."""

    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off

    def __post_init__(self):
        _check_warpers(self.temperature, self.top_k, self.top_p)


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings of one phase. Defaults mean plain sampling at temperature 1.

    temperature / top_k / top_p form the first warper pass; `second_pass` (None: none) is
    applied to its result, as transformers' generate does after a custom logits processor.
    """

    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    repetition_penalty: float = 1.0  # 1.0 = off; > 1 discourages tokens already generated
    greedy: bool = False
    second_pass: WarperPass | None = None

    def __post_init__(self):
        _check_warpers(1.0 if self.greedy else self.temperature, self.top_k, self.top_p)
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.second_pass is not None and not isinstance(self.second_pass, WarperPass):
            raise TypeError(f"second_pass must be a WarperPass or None, got {type(self.second_pass).__name__}")

    @property
    def first_pass(self) -> WarperPass:
        return WarperPass(1.0 if self.greedy else self.temperature, self.top_k, self.top_p)


def _image_phases(temperature: float, top_k: int, top_p: float, preset: str,
                  pixel_top_k_ratio: int = PIXEL_TOP_K_RATIO) -> dict:
    """Semantic and pixel settings from one (temperature, top_k, top_p), as the authors'
    scripts derive them (pixel top-k = 3 x top-k). The "authors" preset adds the second
    pass their generate call applies: the same values, with the plain top-k for pixels too."""
    if preset not in SAMPLING_PRESETS:
        raise ValueError(f"unknown sampling preset {preset!r}; expected one of {SAMPLING_PRESETS}")
    second = WarperPass(temperature, top_k, top_p) if preset == "authors" else None
    semantic = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, second_pass=second)
    pixel = SamplingConfig(temperature=temperature, top_k=top_k * pixel_top_k_ratio, top_p=top_p,
                           second_pass=second)
    return {"semantic": semantic, "pixel": pixel}


@dataclass(frozen=True)
class GenerationSettings:
    """Per-phase sampling settings of one request (SPEC §3 "Decoding")."""

    text: SamplingConfig = field(default_factory=lambda: SamplingConfig(greedy=True))
    semantic: SamplingConfig = field(default_factory=SamplingConfig)
    pixel: SamplingConfig = field(default_factory=SamplingConfig)

    PHASES = ("text", "semantic", "pixel")
    TASKS = ("text_to_image", "editing", "understanding")

    # The values of the authors' scripts (inference_text_to_image.sh / inference_image_editing.sh).
    @classmethod
    def text_to_image(cls, temperature=1.0, top_k=2048, top_p=1.0, preset: str = "authors"):
        return cls(**_image_phases(temperature, top_k, top_p, preset))

    @classmethod
    def editing(cls, temperature=0.7, top_k=512, top_p=0.8, preset: str = "authors"):
        return cls(**_image_phases(temperature, top_k, top_p, preset))

    @classmethod
    def understanding(cls, preset: str = "authors"):
        """Greedy (their lmms-eval runs: temperature 0), the same in both presets."""
        if preset not in SAMPLING_PRESETS:
            raise ValueError(f"unknown sampling preset {preset!r}; expected one of {SAMPLING_PRESETS}")
        return cls(text=SamplingConfig(greedy=True))

    @classmethod
    def for_task(cls, task: str, preset: str = "authors") -> "GenerationSettings":
        if task not in cls.TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {cls.TASKS}")
        return getattr(cls, task)(preset=preset)

    def for_phase(self, phase: str) -> SamplingConfig:
        if phase not in self.PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {self.PHASES}")
        return getattr(self, phase)

    def updated(self, **overrides) -> "GenerationSettings":
        """Override settings by keyword, as the Pipeline's `**sampling` does.

        `temperature=0.8` / `top_p=0.9` set every phase, in both warper passes where a phase
        has two (as the authors' single command-line value does); `top_k=N` sets semantic
        top-k N and pixel top-k 3N (second passes: N; text unchanged); `semantic_top_k=1024`
        or `text_greedy=False` sets one phase's first pass; `second_pass=None` drops the
        second passes; `phase={...}` / a SamplingConfig replaces a whole phase.
        """
        phases = {p: getattr(self, p) for p in self.PHASES}
        names = {f.name for f in fields(SamplingConfig)}
        for key, value in overrides.items():
            if key in self.PHASES:
                phases[key] = value if isinstance(value, SamplingConfig) else replace(phases[key], **value)
            elif key == "top_k":
                phases["semantic"] = _with_warper(phases["semantic"], "top_k", value, value)
                phases["pixel"] = _with_warper(phases["pixel"], "top_k", PIXEL_TOP_K_RATIO * value, value)
            elif key in ("temperature", "top_p"):
                phases = {p: _with_warper(c, key, value, value) for p, c in phases.items()}
            elif key in names:
                phases = {p: replace(c, **{key: value}) for p, c in phases.items()}
            elif "_" in key and key.split("_", 1)[0] in self.PHASES and key.split("_", 1)[1] in names:
                phase, name = key.split("_", 1)
                phases[phase] = replace(phases[phase], **{name: value})
            else:
                raise TypeError(
                    f"unknown sampling option {key!r}; use one of {sorted(names)} (all phases), "
                    f"'top_k', or '<phase>_<option>' with phase in {self.PHASES}"
                )
        return GenerationSettings(**phases)


def _with_warper(config: SamplingConfig, name: str, first, second) -> SamplingConfig:
    """`config` with warper `name` set to `first` in its own pass and `second` in its second pass."""
    if config.second_pass is not None:
        config = replace(config, second_pass=replace(config.second_pass, **{name: second}))
    return replace(config, **{name: first})


@dataclass
class PassRows:
    """One warper pass for a set of rows: device tensors, plus the host-side passes (None for
    a row without this pass) so that the sampler picks its path without reading the device."""

    temperature: torch.Tensor  # (R,) float, 1 where off
    top_k: torch.Tensor  # (R,) long, 0 = off
    top_p: torch.Tensor  # (R,) float, 1 = off
    passes: tuple[WarperPass | None, ...]

    @classmethod
    def from_passes(cls, passes, device=None) -> "PassRows":
        passes = tuple(passes)
        plain = [p or WarperPass() for p in passes]
        return cls(
            temperature=torch.tensor([p.temperature for p in plain], dtype=torch.float32, device=device),
            top_k=torch.tensor([p.top_k for p in plain], dtype=torch.long, device=device),
            top_p=torch.tensor([p.top_p for p in plain], dtype=torch.float32, device=device),
            passes=passes,
        )

    def select(self, rows: torch.Tensor, host_rows) -> "PassRows":
        return PassRows(self.temperature[rows], self.top_k[rows], self.top_p[rows],
                        tuple(self.passes[i] for i in host_rows))

    @property
    def active(self) -> bool:
        return any(p is not None for p in self.passes)

    def truncation_width(self, vocab_size: int) -> int:
        """How many sorted candidates the widest truncating row needs (0: no row truncates).

        A row truncates when it has a top-k below the vocabulary or a top-p below 1; a top-p
        row without top-k needs the whole (sliced) vocabulary sorted.
        """
        widths = [min(p.top_k, vocab_size) if p.top_k > 0 else vocab_size
                  for p in self.passes if p is not None and ((0 < p.top_k < vocab_size) or p.top_p < 1.0)]
        return max(widths, default=0)


@dataclass
class RowSampling:
    """The settings of one phase for a set of rows: the first and second warper passes,
    repetition penalties and greedy flags as device tensors, plus the host-side configs."""

    first: PassRows
    second: PassRows
    repetition_penalty: torch.Tensor  # (R,) float
    greedy: torch.Tensor  # (R,) bool
    configs: tuple[SamplingConfig, ...]

    @classmethod
    def from_configs(cls, configs, device=None) -> "RowSampling":
        configs = tuple(configs)
        return cls(
            first=PassRows.from_passes([None if c.greedy else c.first_pass for c in configs], device),
            second=PassRows.from_passes([None if c.greedy else c.second_pass for c in configs], device),
            repetition_penalty=torch.tensor([c.repetition_penalty for c in configs], dtype=torch.float32,
                                            device=device),
            greedy=torch.tensor([c.greedy for c in configs], dtype=torch.bool, device=device),
            configs=configs,
        )

    def select(self, rows: torch.Tensor, host_rows) -> "RowSampling":
        """The settings of `rows` (device index tensor; `host_rows` the same as a list)."""
        host_rows = list(host_rows)
        return RowSampling(
            first=self.first.select(rows, host_rows),
            second=self.second.select(rows, host_rows),
            repetition_penalty=self.repetition_penalty[rows],
            greedy=self.greedy[rows],
            configs=tuple(self.configs[i] for i in host_rows),
        )

    @property
    def uses_repetition_penalty(self) -> bool:
        return any(c.repetition_penalty != 1.0 for c in self.configs)

    @property
    def all_greedy(self) -> bool:
        return all(c.greedy for c in self.configs)


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor
) -> torch.Tensor:
    """transformers' rule on tokens already generated: positive logits / p, negative * p.

    logits (R, V) and seen (R, V) bool cover the same vocabulary slice; penalty (R,).
    """
    penalty = penalty[:, None].to(logits.dtype)
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def sample_rows(logits: torch.Tensor, settings: RowSampling, uniforms: torch.Tensor) -> torch.Tensor:
    """Pick one index per row of `logits` (R, V) with each row's own settings and uniform.

    Returns (R,) long indices into the V columns. Greedy rows take the argmax. Other rows
    go through their first warper pass and, where set, their second (each: divide by the
    temperature, keep the top-k, keep the most likely candidates until their probability
    reaches top-p, at least one), then draw by inverse CDF with `uniforms` (R,) in [0, 1).
    """
    _check_rows(logits, settings)
    if settings.all_greedy:
        return logits.float().argmax(dim=-1)
    greedy_pick = logits.float().argmax(dim=-1)
    pick = draw_from_probs(warped_scores(logits, settings).softmax(dim=-1), uniforms)
    return torch.where(settings.greedy, greedy_pick, pick)


def processed_probs(logits: torch.Tensor, settings: RowSampling) -> torch.Tensor:
    """The distribution (R, V) `sample_rows` draws from: softmax of `warped_scores`, and a
    one-hot at the argmax for greedy rows (speculative decoding verifies against it)."""
    _check_rows(logits, settings)
    greedy = any(c.greedy for c in settings.configs)
    probs = torch.zeros_like(logits, dtype=torch.float32) if settings.all_greedy else \
        warped_scores(logits, settings).softmax(dim=-1)
    if greedy:
        one_hot = torch.zeros_like(probs).scatter_(-1, logits.float().argmax(dim=-1, keepdim=True), 1.0)
        probs = torch.where(settings.greedy[:, None], one_hot, probs)
    return probs


def draw_from_probs(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw of one index per row of `probs` (R, V) (need not sum to 1) with
    `uniforms` (R,) in [0, 1)."""
    # Inverse CDF in vocabulary order (so a row's draw never depends on its batch mates'
    # settings), in float64: 98k-entry cumulative sums in fp32 drift by ~1e-5.
    cdf = probs.double().cumsum(dim=-1)
    target = uniforms.double()[:, None] * cdf[:, -1:]
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp(max=probs.shape[-1] - 1)


def cfg_mix(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance on log-probabilities, per row: g·(log p_c − log p_u) + log p_u.
    cond/uncond (R, V) over the same vocabulary slice, guidance (R,)."""
    uncond = uncond_logits.log_softmax(dim=-1)
    return guidance[:, None] * (cond_logits.log_softmax(dim=-1) - uncond) + uncond


def _check_rows(logits: torch.Tensor, settings: RowSampling) -> None:
    if logits.dim() != 2 or logits.shape[0] != len(settings.configs):
        raise ValueError(f"logits must be (rows, vocab) with {len(settings.configs)} rows, got {tuple(logits.shape)}")


def warped_scores(logits: torch.Tensor, settings: RowSampling) -> torch.Tensor:
    """fp32 scores (R, V) whose softmax is what non-greedy rows sample from: the first warper
    pass, then the second where a row has one (-inf marks what a pass dropped)."""
    scores = warp(logits.float(), settings.first)
    return warp(scores, settings.second) if settings.second.active else scores


def warp(scores: torch.Tensor, rows: PassRows) -> torch.Tensor:
    """One warper pass on fp32 scores (R, V): temperature, then top-k and top-p masking."""
    scores = scores / rows.temperature[:, None]
    width = rows.truncation_width(scores.shape[-1])
    return _truncate(scores, rows, width) if width else scores


def _truncate(scores: torch.Tensor, rows: PassRows, width: int) -> torch.Tensor:
    """Mask (to -inf) what each row's top-k and top-p drop, keeping ties at the boundary as
    transformers does. Only `width` candidates of the slice are sorted (a partial top-k)."""
    top, _ = scores.topk(width, dim=-1)  # (R, width), descending
    rank = torch.arange(width, device=scores.device)
    row_k = torch.where(rows.top_k > 0, rows.top_k.clamp(max=width), width)
    keep = rank[None, :] < row_k[:, None]
    if any(p is not None and p.top_p < 1.0 for p in rows.passes):
        probs = top.masked_fill(~keep, float("-inf")).softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        keep = keep & (mass_before < rows.top_p[:, None])
        keep[:, 0] = True  # the most likely token always survives
    threshold = top.gather(-1, keep.sum(-1, keepdim=True) - 1)  # smallest kept score
    vocab = scores.shape[-1]
    truncates = ((rows.top_k > 0) & (rows.top_k < vocab)) | (rows.top_p < 1.0)
    threshold = torch.where(truncates[:, None], threshold, float("-inf"))
    return scores.masked_fill(scores < threshold, float("-inf"))


def make_generator(seed_or_generator, device="cpu") -> torch.Generator:
    """A request's own generator: an int seed, or a Generator used as it is."""
    if isinstance(seed_or_generator, torch.Generator):
        return seed_or_generator
    if seed_or_generator is None:
        seed_or_generator = torch.seed()
    if int(seed_or_generator) != seed_or_generator:
        raise TypeError(f"seed must be an int or a torch.Generator, got {seed_or_generator!r}")
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed_or_generator))
    return generator


def draw_uniforms(generator: torch.Generator, num_steps: int) -> torch.Tensor:
    """All the uniforms one request will use, one per decoding step, on the CPU.

    Drawn one at a time so that the i-th value does not depend on how many are drawn
    (a request's randomness must not depend on its batch mates' lengths).
    """
    device = generator.device
    values = [torch.rand((), generator=generator, device=device) for _ in range(num_steps)]
    return torch.stack(values).cpu() if values else torch.zeros(0)
