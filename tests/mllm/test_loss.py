import torch
import torch.nn.functional as F

from illume_plus.mllm.loss import linear_cross_entropy


def test_matches_full_logits_loss_and_gradients_for_any_chunking():
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, requires_grad=True)
    weight = torch.randn(101, 16, requires_grad=True)
    targets = torch.randint(0, 101, (37,))
    reference = F.cross_entropy(F.linear(hidden, weight), targets, reduction="none")
    (3.0 * reference.sum()).backward()  # a scale on the loss must reach both gradients
    want = hidden.grad.clone(), weight.grad.clone()
    for chunk in (1, 5, 37, 64):
        hidden.grad = weight.grad = None
        total, losses = linear_cross_entropy(hidden, weight, targets, chunk)
        (3.0 * total).backward()
        torch.testing.assert_close(losses, reference.detach(), rtol=1e-5, atol=1e-5)
        assert not losses.requires_grad
        torch.testing.assert_close(hidden.grad, want[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(weight.grad, want[1], rtol=1e-4, atol=1e-5)


def test_frozen_weight_and_no_grad():
    torch.manual_seed(0)
    hidden = torch.randn(9, 8, requires_grad=True)
    weight = torch.randn(20, 8)
    targets = torch.randint(0, 20, (9,))
    total, _ = linear_cross_entropy(hidden, weight, targets, 4)
    total.backward()
    assert weight.grad is None and hidden.grad is not None
    with torch.no_grad():
        total, losses = linear_cross_entropy(hidden, weight, targets, 4)
    torch.testing.assert_close(total, F.cross_entropy(hidden @ weight.T, targets, reduction="sum"))
