import contextlib

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import mmttsrn.models.layers.low_precision_norm as low_precision_norm
from mmttsrn.models.layers import (LowPrecisionGroupNorm,
                                   LowPrecisionLayerNorm, low_precision_norms)


def norms():
    return [
        (nn.LayerNorm(8), LowPrecisionLayerNorm(8), (2, 5, 8)),
        (nn.GroupNorm(2, 8), LowPrecisionGroupNorm(2, 8), (2, 8, 3, 4)),
    ]


@pytest.mark.parametrize('index', [0, 1])
@pytest.mark.parametrize('autocast', [False, True])
def test_cpu_behaves_as_torch_norm(index, autocast):
    """Off CUDA it is the torch norm: CPU autocast already keeps bf16."""
    torch.manual_seed(0)
    reference, norm, shape = norms()[index]
    nn.init.normal_(reference.weight)
    nn.init.normal_(reference.bias)
    norm.load_state_dict(reference.state_dict())
    x = torch.randn(shape)
    context = torch.autocast('cpu', torch.bfloat16) if autocast else \
        contextlib.nullcontext()
    with context:
        x = x.bfloat16() if autocast else x
        assert torch.equal(norm(x), reference(x))


class CastLog(TorchDispatchMode):
    """The (source, target) dtypes of every cast of a tensor of more than
    ``min_numel`` elements (the activations, not the weights)."""

    def __init__(self, min_numel):
        super().__init__()
        self.min_numel = min_numel
        self.casts = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._to_copy.default and \
                args[0].numel() > self.min_numel:
            self.casts.append((args[0].dtype, out.dtype))
        return out


@contextlib.contextmanager
def fake_cuda_autocast(dtype):
    """CUDA tensors without a GPU (fake tensors) and CUDA autocast on:
    what dtypes flow, not what values."""
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        torch.set_autocast_dtype('cuda', dtype)
        torch.set_autocast_enabled('cuda', True)
        try:
            yield mode
        finally:
            torch.set_autocast_enabled('cuda', False)


def to_fake_cuda(module, mode):
    for m in module.modules():
        for name, p in list(m.named_parameters(recurse=False)):
            setattr(m, name, nn.Parameter(mode.from_tensor(p).to('cuda')))
    return module


@pytest.mark.parametrize('index', [0, 1])
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_cuda_autocast_inference_keeps_input_dtype(index, dtype):
    reference, norm, shape = norms()[index]
    with fake_cuda_autocast(dtype) as mode:
        reference, norm = (to_fake_cuda(m, mode) for m in (reference, norm))
        x = torch.empty(shape, device='cuda', dtype=dtype)
        with torch.no_grad():
            with CastLog(min_numel=8) as log:
                out = norm(x)
            assert out.dtype == dtype and log.casts == []
            with CastLog(min_numel=8) as log:
                out = reference(x)
            # What CUDA autocast does without it: a float32 copy in and out.
            assert out.dtype == torch.float32
            assert log.casts == [(dtype, torch.float32)]
        # Training keeps autocast's float32 norm.
        assert norm(x).dtype == torch.float32
        # So does a float32 input.
        with torch.no_grad():
            assert norm(x.float()).dtype == torch.float32


@pytest.mark.parametrize('index', [0, 1])
def test_low_precision_branch_is_close_to_float32(index, monkeypatch):
    """The branch CUDA inference takes, run on the CPU: the norm of a bf16
    input comes out in bf16, close to the float32 norm of the same values
    with the float32 weights."""
    monkeypatch.setattr(low_precision_norm, '_keeps_dtype',
                        lambda x: x.dtype == torch.bfloat16)
    torch.manual_seed(0)
    reference, norm, shape = norms()[index]
    nn.init.normal_(reference.weight)
    nn.init.normal_(reference.bias)
    norm.load_state_dict(reference.state_dict())
    x = torch.randn(shape).bfloat16()
    with torch.no_grad():
        out = norm(x)
        expected = reference(x.float())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=0.05, rtol=0.02)
    # Not the float32 path: that returns float32.
    assert norm(x.float()).dtype == torch.float32


class Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(8, bias=False)
        self.shared = self.ln
        self.block = ConvModule(
            8, 8, 3, padding=1, norm_cfg=dict(type='GN', num_groups=2))
        self.bn = nn.BatchNorm2d(8)


def test_low_precision_norms_replaces_in_place():
    torch.manual_seed(0)
    net = Net().eval()
    nn.init.normal_(net.block.gn.weight)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(2, 8, 5, 5)
    expected = net.block(x)
    assert low_precision_norms(net) == 2
    assert type(net.ln) is LowPrecisionLayerNorm and net.ln.bias is None
    assert net.shared is net.ln
    assert type(net.block.norm) is LowPrecisionGroupNorm
    assert type(net.bn) is nn.BatchNorm2d
    assert not net.ln.training
    assert net.state_dict().keys() == state.keys()
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert torch.equal(net.block(x), expected)
    assert low_precision_norms(net) == 0
