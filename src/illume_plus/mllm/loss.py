"""Cross-entropy through the LM head without full-vocabulary logits (SPEC §6).

`linear_cross_entropy(hidden, weight, targets, chunk)` is the sum over N positions of
CE(hidden @ weight.T, targets), computed `chunk` rows at a time. Under autograd the gradients
are computed in the same pass, chunk by chunk (softmax minus one-hot, then the two products),
and kept for backward: the hidden states' gradient (N x D) and ONE weight-sized buffer that every
chunk accumulates into. So at most one chunk's fp32 logits exist at any time, nothing is
recomputed, and the head's gradient exists once (a per-chunk autograd graph would hold a second
vocabulary x width gradient while it sums the chunks').
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int, compute_dtype):
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        w = weight.to(compute_dtype)
        losses = torch.empty(targets.numel(), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, targets.numel(), chunk):
                h, t = hidden[start:start + chunk].to(compute_dtype), targets[start:start + chunk]
                logits = F.linear(h, w).float()
                lse = torch.logsumexp(logits, dim=-1)
                losses[start:start + chunk] = lse - logits.gather(1, t[:, None])[:, 0]
                if need_hidden or need_weight:
                    grad_logits = logits.sub_(lse[:, None]).exp_()  # softmax, in place
                    grad_logits[torch.arange(t.numel(), device=t.device), t] -= 1.0  # minus one-hot
                    if need_hidden:
                        grad_hidden[start:start + chunk] = (grad_logits.to(compute_dtype) @ w).to(hidden.dtype)
                    if need_weight:
                        grad_weight.addmm_(grad_logits.t(), h.float())
                del logits
        # intermediates, kept on ctx (not save_for_backward) so backward can drop its reference
        # and autograd adopts the buffer as .grad instead of copying it
        ctx.grads = [grad_hidden, grad_weight]
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(losses)
        return losses.sum(), losses

    @staticmethod
    def backward(ctx, grad_sum, _grad_losses):
        grad_hidden, grad_weight = ctx.grads
        ctx.grads = None
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_sum.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight.mul_(grad_sum)).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of CE, (N,) per-position CE detached) of `hidden` (N, D) through `weight` (V, D)
    against `targets` (N,). The products run in the autocast dtype when autocast is on (as
    `F.linear` would), else in the weight's dtype; the CE itself in fp32."""
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
    if not torch.is_grad_enabled() or not (hidden.requires_grad or weight.requires_grad):
        with torch.no_grad():
            _, losses = _LinearCrossEntropy.forward(_NoGrad, hidden, weight, targets, chunk, dtype)
        return losses.sum(), losses
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk, dtype)


class _NoGrad:
    """Stands in for autograd's ctx when no gradient is wanted."""

    needs_input_grad = (False, False, False, False, False)

    @staticmethod
    def mark_non_differentiable(*_):
        pass


__all__ = ["linear_cross_entropy"]
