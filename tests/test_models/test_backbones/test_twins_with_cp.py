"""TwinsSVT's activation checkpointing gives the same outputs and gradients."""
import copy

import torch

from mmttsrn.models.backbones import TwinsSVT

TINY = dict(
    embed_dims=(16, 32, 64, 128),
    num_heads=(1, 2, 4, 8),
    depths=(2, 1, 2, 1),
    window_sizes=(3, 3, 3, 3))


def _outputs_and_grads(model, images):
    torch.manual_seed(1)  # the same drop-path draws in both runs
    outs = model(images)
    loss = sum((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()
               for out in outs)
    model.zero_grad()
    loss.backward()
    return [o.detach() for o in outs], {
        name: p.grad.clone()
        for name, p in model.named_parameters() if p.grad is not None
    }


def test_with_cp_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = TwinsSVT(**TINY, drop_path_rate=0.2).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.with_cp = True
    images = torch.randn(2, 3, 40, 72)
    outs, grads = _outputs_and_grads(plain, images)
    cp_outs, cp_grads = _outputs_and_grads(checkpointed, images)
    for out, cp_out in zip(outs, cp_outs):
        torch.testing.assert_close(cp_out, out, rtol=0, atol=0)
    assert grads.keys() == cp_grads.keys()
    assert len(grads) == len(list(plain.parameters()))
    for name, grad in grads.items():
        torch.testing.assert_close(cp_grads[name], grad, msg=name)


def test_with_cp_is_off_by_default_and_unused_without_grad():
    assert not TwinsSVT(**TINY).with_cp
    model = TwinsSVT(**TINY, with_cp=True).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 32))
    assert outs[0].shape == (1, 16, 8, 8)
