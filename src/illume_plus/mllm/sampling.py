"""How the next token is picked: per-phase settings and one batched, per-row sampler.

A request decodes in up to three phases (text, semantic codes, pixel codes), each with its
own `SamplingConfig`. The engine scores only the active phase's vocabulary range, so every
function here works on *sliced* logits (rows x range size), never on the full vocabulary.

Warpers are applied exactly once, in this order (as transformers' generate would, minus
the authors' double application): repetition penalty (on the conditional logits, before
CFG; see the engine) -> temperature -> top-k -> top-p -> draw.

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
    "SamplingConfig",
    "GenerationSettings",
    "RowSampling",
    "apply_repetition_penalty",
    "sample_rows",
    "draw_uniforms",
    "make_generator",
]


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings of one phase. Defaults mean plain sampling at temperature 1."""

    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    repetition_penalty: float = 1.0  # 1.0 = off; > 1 discourages tokens already generated
    greedy: bool = False

    def __post_init__(self):
        if not self.greedy and not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be > 0 (use greedy=True for argmax), got {self.temperature}")
        if int(self.top_k) != self.top_k or self.top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 disables it), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


def _image_phases(temperature: float, top_k: int, top_p: float, pixel_top_k_ratio: int) -> dict:
    semantic = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    pixel = SamplingConfig(temperature=temperature, top_k=top_k * pixel_top_k_ratio, top_p=top_p)
    return {"semantic": semantic, "pixel": pixel}


@dataclass(frozen=True)
class GenerationSettings:
    """Per-phase sampling settings of one request (SPEC §3 "Decoding")."""

    text: SamplingConfig = field(default_factory=lambda: SamplingConfig(greedy=True))
    semantic: SamplingConfig = field(default_factory=SamplingConfig)
    pixel: SamplingConfig = field(default_factory=SamplingConfig)

    PHASES = ("text", "semantic", "pixel")

    # Paper/release defaults. The pixel codebook is 3x the semantic one, so is its top-k.
    @classmethod
    def text_to_image(cls, temperature=1.0, top_k=2048, top_p=1.0, pixel_top_k_ratio=3):
        return cls(**_image_phases(temperature, top_k, top_p, pixel_top_k_ratio))

    @classmethod
    def editing(cls, temperature=0.7, top_k=512, top_p=0.8, pixel_top_k_ratio=3):
        return cls(**_image_phases(temperature, top_k, top_p, pixel_top_k_ratio))

    @classmethod
    def understanding(cls):
        return cls(text=SamplingConfig(greedy=True))

    def for_phase(self, phase: str) -> SamplingConfig:
        if phase not in self.PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {self.PHASES}")
        return getattr(self, phase)

    def updated(self, **overrides) -> "GenerationSettings":
        """Override settings by keyword, as the Pipeline's `**sampling` does.

        `temperature=0.8` sets every phase; `semantic_top_k=1024` or `text_greedy=False`
        sets one phase; `top_k=N` sets semantic top-k N and pixel top-k 3N (text unchanged);
        `phase={...}` / a SamplingConfig replaces a whole phase.
        """
        phases = {p: getattr(self, p) for p in self.PHASES}
        names = {f.name for f in fields(SamplingConfig)}
        for key, value in overrides.items():
            if key in self.PHASES:
                phases[key] = value if isinstance(value, SamplingConfig) else replace(phases[key], **value)
            elif key == "top_k":
                phases["semantic"] = replace(phases["semantic"], top_k=value)
                phases["pixel"] = replace(phases["pixel"], top_k=3 * value)
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


@dataclass
class RowSampling:
    """The settings of one phase for a set of rows, as device tensors plus host summaries.

    Host summaries (`truncation_width`, `all_greedy`, ...) let the sampler choose its path without
    reading tensors back from the device.
    """

    temperature: torch.Tensor  # (R,) float
    top_k: torch.Tensor  # (R,) long, 0 = off
    top_p: torch.Tensor  # (R,) float
    repetition_penalty: torch.Tensor  # (R,) float
    greedy: torch.Tensor  # (R,) bool
    configs: tuple[SamplingConfig, ...]

    @classmethod
    def from_configs(cls, configs, device=None) -> "RowSampling":
        configs = tuple(configs)

        def column(name, dtype):
            return torch.tensor([getattr(c, name) for c in configs], dtype=dtype, device=device)

        return cls(
            temperature=column("temperature", torch.float32),
            top_k=column("top_k", torch.long),
            top_p=column("top_p", torch.float32),
            repetition_penalty=column("repetition_penalty", torch.float32),
            greedy=column("greedy", torch.bool),
            configs=configs,
        )

    def select(self, rows: torch.Tensor, host_rows) -> "RowSampling":
        """The settings of `rows` (device index tensor; `host_rows` the same as a list)."""
        return RowSampling(
            temperature=self.temperature[rows],
            top_k=self.top_k[rows],
            top_p=self.top_p[rows],
            repetition_penalty=self.repetition_penalty[rows],
            greedy=self.greedy[rows],
            configs=tuple(self.configs[i] for i in host_rows),
        )

    @property
    def uses_repetition_penalty(self) -> bool:
        return any(c.repetition_penalty != 1.0 for c in self.configs)

    def truncation_width(self, vocab_size: int) -> int:
        """How many sorted candidates the widest truncating row needs (0: no row truncates).

        A row truncates when it has a top-k below the vocabulary or a top-p below 1; a top-p
        row without top-k needs the whole (sliced) vocabulary sorted.
        """
        widths = [min(c.top_k, vocab_size) if c.top_k > 0 else vocab_size
                  for c in self.configs if not c.greedy and ((0 < c.top_k < vocab_size) or c.top_p < 1.0)]
        return max(widths, default=0)

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

    Returns (R,) long indices into the V columns. Greedy rows take the argmax. Other rows:
    divide by temperature, keep the top-k, keep the most likely candidates until their
    probability reaches top-p (at least one), then draw by inverse CDF with `uniforms`
    (R,) in [0, 1).
    """
    if logits.dim() != 2 or logits.shape[0] != len(settings.configs):
        raise ValueError(f"logits must be (rows, vocab) with {len(settings.configs)} rows, got {tuple(logits.shape)}")
    scores = logits.float()
    if settings.all_greedy:
        return scores.argmax(dim=-1)
    vocab = scores.shape[-1]
    temperature = torch.where(settings.greedy, torch.ones_like(settings.temperature), settings.temperature)
    scores = scores / temperature[:, None]

    width = settings.truncation_width(vocab)
    if width:
        scores = _truncate(scores, settings, width)

    # Inverse CDF in vocabulary order (so a row's draw never depends on its batch mates'
    # settings), in float64: 98k-entry cumulative sums in fp32 drift by ~1e-5.
    probs = scores.softmax(dim=-1).double()
    cdf = probs.cumsum(dim=-1)
    target = uniforms.double()[:, None] * cdf[:, -1:]
    pick = torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp(max=vocab - 1)
    return torch.where(settings.greedy, scores.argmax(dim=-1), pick)


def _truncate(scores: torch.Tensor, settings: RowSampling, width: int) -> torch.Tensor:
    """Mask (to -inf) what each row's top-k and top-p drop, keeping ties at the boundary as
    transformers does. Only `width` candidates of the slice are sorted (a partial top-k)."""
    top, _ = scores.topk(width, dim=-1)  # (R, width), descending
    rank = torch.arange(width, device=scores.device)
    row_k = torch.where(settings.top_k > 0, settings.top_k.clamp(max=width), width)
    keep = rank[None, :] < row_k[:, None]
    if any(c.top_p < 1.0 for c in settings.configs):
        probs = top.masked_fill(~keep, float("-inf")).softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        keep = keep & (mass_before < settings.top_p[:, None])
        keep[:, 0] = True  # the most likely token always survives
    threshold = top.gather(-1, keep.sum(-1, keepdim=True) - 1)  # smallest kept score
    vocab = scores.shape[-1]
    truncates = ((settings.top_k > 0) & (settings.top_k < vocab)) | (settings.top_p < 1.0)
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
