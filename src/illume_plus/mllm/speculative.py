"""Speculative Jacobi decoding (SJD, arXiv 2410.01699): the model-independent rule.

A window of draft tokens for the next code slots is verified in ONE forward; every draft is
accepted or rejected so that each kept token is distributed exactly as under one-token-at-
a-time sampling (the speculative-sampling rule of Leviathan et al. / Chen et al.):

- draft x at a slot was drawn from a known distribution q (its *draft distribution*);
  the forward gives the target distribution p at that slot given everything before it;
- accept x with probability min(1, p(x) / q(x)), slot by slot, left to right;
- at the first rejection draw the slot's token from norm(max(0, p − q)) and stop; if every
  draft was accepted, draw the next slot (the *bonus* slot) from p, whose context is then
  exactly the accepted one.

Why this is lossless: at a slot whose prefix is accepted, x ~ q independently of the
coins that decided the earlier slots (those depend only on earlier tokens), so
P(token = y) = min(q(y), p(y)) + (1 − Σ min(p, q))·max(0, p(y) − q(y)) / Σ max(0, p − q)
= p(y), for ANY q. The draft distributions only decide how often drafts survive.

Jacobi drafting: after a forward, the slots past the newly fixed token get new drafts
sampled from the distributions this forward computed for them (their context was the old
drafts: close to the true one once the window converges), and slots beyond the window are
initialised by sampling from the last distribution computed. Those distributions become
the drafts' q for the next verification.

Window length (per request, per phase): `WindowPolicy` below.

`verify_window` and `refresh_drafts` work on batched tensors (rows x window x vocabulary);
`speculative_engine.py` runs them on IllumePlus with CFG, forced structure tokens and the two
code grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .sampling import draw_from_probs

__all__ = ["SpeculativeConfig", "WindowPolicy", "verify_window", "refresh_drafts", "uniforms_per_iteration"]


@dataclass(frozen=True)
class SpeculativeConfig:
    """Window bounds (in code slots; forced structure tokens ride along for free).

    window_init: drafts verified by a request's first speculative forward in a phase.
    window_min / window_max: bounds of the adapted window; window_max also sets how many
        drafts are kept ready between forwards.
    smoothing: weight of the newest accepted length in the running mean (WindowPolicy).
    """

    window_init: int = 8
    window_min: int = 2
    window_max: int = 16
    smoothing: float = 0.5

    def __post_init__(self):
        if not 1 <= self.window_min <= self.window_init <= self.window_max:
            raise ValueError("need 1 <= window_min <= window_init <= window_max, got "
                             f"{self.window_min}, {self.window_init}, {self.window_max}")
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {self.smoothing}")

    @property
    def uniforms_per_iteration(self) -> int:
        return uniforms_per_iteration(self.window_max)


def uniforms_per_iteration(window_max: int) -> int:
    """Coins for up to window_max drafts, one draw for the fixed token, window_max draft draws."""
    return 2 * window_max + 1


class WindowPolicy:
    """How many drafts a request verifies next in one phase.

    Rule: keep a running mean m of the drafts accepted per forward (m <- (1 − s)·m + s·a,
    s = `smoothing`, starting from the first forward's a) and draft `2·m + 2` next time,
    within [window_min, window_max]. A window about twice the typical accepted run keeps the
    chance of cutting a run short low while not paying for slots that are almost always
    discarded; a fully accepted window roughly doubles the next one. Each phase (semantic,
    pixel) keeps its own policy: the pixel grid's tokens are far less predictable.
    """

    def __init__(self, config: SpeculativeConfig):
        self.config = config
        self.window = config.window_init
        self.mean: float | None = None

    def update(self, drafted: int, accepted: int) -> None:
        if drafted == 0:  # a plain step: nothing learned about acceptance
            return
        s = self.config.smoothing
        self.mean = float(accepted) if self.mean is None else (1 - s) * self.mean + s * accepted
        self.window = int(min(self.config.window_max, max(self.config.window_min, round(2 * self.mean) + 2)))


def verify_window(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, num_drafts: torch.Tensor,
                  has_bonus: torch.Tensor, coins: torch.Tensor, final_uniform: torch.Tensor):
    """Accept or reject each row's drafts; draw the token that ends the row's run.

    p: (R, S, V) target distributions at the window's slots: slot j < num_drafts holds
        draft j, slot num_drafts is the bonus slot (S >= max(num_drafts) + 1).
    q: (R, W, V) the drafts' distributions, drafts: (R, W) their indices (W >= S - 1).
    num_drafts (R,) long; has_bonus (R,) bool: whether the slot after the drafts is sampled
        in this window (False at the end of a phase: only forced tokens follow).
    coins (R, W) and final_uniform (R,) uniforms in [0, 1).
    Returns (accepted (R,) long: leading drafts kept, final (R,) long: the token drawn at slot
    `accepted` — from the residual after a rejection, from p at the bonus slot — or -1 where
    every draft was kept and there is no bonus slot).
    """
    rows, slots, _ = p.shape
    width = min(slots - 1, drafts.shape[1])
    drafts, q, coins = drafts[:, :width], q[:, :width], coins[:, :width]
    p_x = p[:, :width].gather(-1, drafts[..., None]).squeeze(-1)
    q_x = q.gather(-1, drafts[..., None]).squeeze(-1)
    # u < p(x)/q(x), written without the division; q(x) > 0 since x was drawn from q
    keep = coins * q_x < p_x
    keep &= torch.arange(width, device=p.device)[None, :] < num_drafts[:, None]
    accepted = keep.long().cumprod(dim=-1).sum(dim=-1)
    rejected = accepted < num_drafts

    p_end = p.gather(1, accepted[:, None, None].expand(-1, 1, p.shape[-1])).squeeze(1)
    at = accepted.clamp(max=max(width - 1, 0))
    if width:
        q_end = q.gather(1, at[:, None, None].expand(-1, 1, q.shape[-1])).squeeze(1)
        residual = (p_end - q_end).clamp(min=0)
        # p == q up to rounding leaves no residual mass (and rejection then has probability ~0)
        residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, p_end)
        target = torch.where(rejected[:, None], residual, p_end)
    else:
        target = p_end
    final = draw_from_probs(target, final_uniform)
    final = torch.where(rejected | has_bonus, final, torch.full_like(final, -1))
    return accepted, final


def refresh_drafts(p: torch.Tensor, accepted: torch.Tensor, num_drafts: torch.Tensor, has_bonus: torch.Tensor,
                   uniforms: torch.Tensor):
    """New drafts for the slots after each row's fixed token (the Jacobi update).

    Draft k is for window slot accepted + 1 + k. Where this forward computed that slot's
    distribution (slots up to num_drafts, or num_drafts − 1 without a bonus slot) the draft is
    sampled from it; further slots are initialised by sampling from the last one computed.
    uniforms (R, W) give W drafts. Returns (drafts (R, W) long, q (R, W, V) their distributions).
    """
    rows, _, vocab = p.shape
    width = uniforms.shape[1]
    last = torch.where(has_bonus, num_drafts, num_drafts - 1).clamp(min=0)
    source = (accepted[:, None] + 1 + torch.arange(width, device=p.device)[None, :]).clamp(max=last[:, None])
    q = p.gather(1, source[..., None].expand(-1, -1, vocab))
    drafts = draw_from_probs(q.reshape(rows * width, vocab), uniforms.reshape(-1)).view(rows, width)
    return drafts, q
