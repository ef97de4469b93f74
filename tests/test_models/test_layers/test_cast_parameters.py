"""CastParameters: which parameters a function only casts, and that running
on their copies gives the same result with fewer casts (CPU autocast here;
CUDA graphs in test_cuda_graph.py)."""
import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from mmttsrn.models.layers import CastParameters

BF16 = torch.bfloat16


class CountCasts(TorchDispatchMode):

    def __init__(self):
        super().__init__()
        self.casts = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._to_copy.default:
            self.casts += 1
        return func(*args, **(kwargs or {}))


class Net(nn.Module):
    """Linears (their weights and biases cast by CPU autocast), a LayerNorm
    (CPU autocast normalises bf16 with its float32 weights), a parameter
    used in float32 and a linear whose weight is also read in float32."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.norm = nn.LayerNorm(8)
        self.fc2 = nn.Linear(8, 4)
        self.scale = nn.Parameter(torch.rand(4) + 0.5)
        self.both = nn.Linear(4, 4, bias=False)

    def forward(self, x):
        x = self.fc2(self.norm(self.fc1(x)))
        x = x.float() * self.scale
        return self.both(x).float() + self.both.weight.sum()


def run(net, x):
    with torch.no_grad(), torch.autocast('cpu', dtype=BF16):
        return net(x)


@pytest.fixture
def net_and_input():
    torch.manual_seed(0)
    return Net(), torch.randn(5, 6)


def test_finds_the_parameters_only_cast(net_and_input):
    net, x = net_and_input
    with torch.autocast('cpu', dtype=BF16):
        params = CastParameters.find(net, BF16, net, x)
    assert sorted(params._params) == [
        'fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight'
    ]
    assert all(c.dtype == BF16 for c in params._copies.values())


@torch.no_grad()
def test_copies_give_the_same_result_with_fewer_casts(net_and_input):
    net, x = net_and_input
    expected = run(net, x)
    with torch.autocast('cpu', dtype=BF16):
        params = CastParameters.find(net, BF16, net, x)
    plain, on_copies = CountCasts(), CountCasts()
    with plain:
        run(net, x)
    with params.swapped(), on_copies:
        got = run(net, x)
    assert torch.equal(got, expected)
    assert on_copies.casts == plain.casts - len(params) < plain.casts
    # The module has its own parameters back.
    assert isinstance(net.fc1.weight, nn.Parameter)
    assert net.fc1.weight.dtype == torch.float32


@torch.no_grad()
def test_refresh_recasts_parameters_changed_in_place(net_and_input):
    net, x = net_and_input
    with torch.autocast('cpu', dtype=BF16):
        params = CastParameters.find(net, BF16, net, x)
    net.load_state_dict(Net().state_dict())  # in place, as a checkpoint
    expected = run(net, x)
    with params.swapped():
        stale = run(net, x)
    assert not torch.equal(stale, expected)
    params.refresh()
    with params.swapped():
        assert torch.equal(run(net, x), expected)


def test_shared_parameters_are_swapped_everywhere_and_restored():
    shared = nn.Linear(3, 3)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    x = torch.randn(2, 3)
    with torch.autocast('cpu', dtype=BF16):
        params = CastParameters.find(net, BF16, net, x)
    assert sorted(params._params) == ['0.bias', '0.weight']
    with pytest.raises(RuntimeError, match='inside'):
        with params.swapped():
            assert net[0].weight.dtype == BF16
            assert net[2].weight is net[0].weight
            raise RuntimeError('inside')
    assert isinstance(net[2].weight, nn.Parameter)
    assert net[2].weight.dtype == torch.float32


def test_without_autocast_nothing_qualifies(net_and_input):
    net, x = net_and_input
    assert len(CastParameters.find(net, BF16, net, x)) == 0


def test_find_runs_compiled_code_eagerly(net_and_input):
    """``torch.compile``'d code (here fullgraph, which refuses to run under
    a dispatch mode) runs eagerly for the search, which sees its ops."""
    net, x = net_and_input
    compiled = torch.compile(net, fullgraph=True)
    with torch.autocast('cpu', dtype=BF16):
        params = CastParameters.find(net, BF16, compiled, x)
    assert sorted(params._params) == [
        'fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight'
    ]
