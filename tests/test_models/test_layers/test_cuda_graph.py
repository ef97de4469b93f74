"""CUDAGraphCache: eager on the CPU and with autograd; on a GPU, replays
that give the eager results (GPU tests skip without CUDA)."""
import copy

import pytest
import torch

from mmttsrn.models.layers import CUDAGraphCache, is_graph_capture

cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device')


def affine(x, y):
    """Two outputs, one nested: graphs return what the function does."""
    return dict(sum=x * 2 + y, parts=[x.relu(), (y - 1, )])


def test_cpu_calls_and_autograd_run_the_function_as_it_is():
    calls = []

    def fn(x):
        calls.append(x)
        return x * 3

    cache = CUDAGraphCache(fn, max_graphs=2)
    x = torch.arange(4.)
    assert torch.equal(cache(x), x * 3)
    assert calls[-1] is x and len(cache) == 0
    w = torch.ones(4, requires_grad=True)
    cache(w).sum().backward()
    assert torch.equal(w.grad, torch.full((4, ), 3.))
    assert len(calls) == 2 and len(cache) == 0


@pytest.mark.parametrize('bad', [0, -1, 1.5, None])
def test_max_graphs_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match='max_graphs'):
        CUDAGraphCache(affine, max_graphs=bad)


def test_copies_start_without_graphs():
    cache = CUDAGraphCache(affine, max_graphs=2)
    cache._graphs['key'] = object()
    cache._pool = object()
    clone = copy.deepcopy(cache)
    assert len(clone) == 0 and clone._pool is None
    assert clone.max_graphs == 2 and len(cache) == 1


@cuda
@torch.no_grad()
def test_replays_give_the_eager_outputs_of_new_inputs():
    cache = CUDAGraphCache(affine, max_graphs=2)
    first = None
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        x, y = (torch.randn(5, 7, generator=gen).cuda() for _ in range(2))
        out = cache(x, y)
        expected = affine(x, y)
        torch.testing.assert_close(out['sum'], expected['sum'])
        torch.testing.assert_close(out['parts'][0], expected['parts'][0])
        torch.testing.assert_close(out['parts'][1][0],
                                   expected['parts'][1][0])
        if first is None:
            first = (out, expected)
    # One graph for the one signature; earlier outputs were not rewritten.
    assert len(cache) == 1
    torch.testing.assert_close(first[0]['sum'], first[1]['sum'])


@cuda
@torch.no_grad()
def test_one_graph_per_signature_least_recently_used_dropped():
    cache = CUDAGraphCache(lambda x: x + 1, max_graphs=2)
    a, b, c = (torch.zeros(n, device='cuda') for n in (2, 3, 4))
    cache(a)
    cache(b)
    cache(a)
    cache(c)  # drops b's graph, used longer ago than a's
    assert len(cache) == 2
    shapes = [key[0][0][0] for key in cache._graphs]
    assert shapes == [torch.Size([2]), torch.Size([4])]
    with torch.autocast('cuda', dtype=torch.bfloat16):
        cache(a)
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0
    torch.testing.assert_close(cache(c), c + 1)


@cuda
@torch.no_grad()
def test_the_function_sees_a_capture_and_autocast():
    seen = []

    def fn(x):
        seen.append(is_graph_capture())
        return torch.mm(x, x)

    cache = CUDAGraphCache(fn, max_graphs=1, warmup=1)
    x = torch.randn(8, 8, device='cuda')
    with torch.autocast('cuda', dtype=torch.bfloat16):
        out = cache(x)
    assert seen == [False, True]
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), x @ x, atol=0.1, rtol=0.05)


@cuda
@torch.no_grad()
def test_graphs_under_autocast_run_on_parameters_cast_once():
    """With ``module``, a bf16 graph reads copies of the parameters it only
    casts, made at the capture and cast again after an in-place load."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16,
                                                                 4)).cuda()
    cache = CUDAGraphCache(net, max_graphs=1, module=net)
    x = torch.randn(5, 8, device='cuda')
    with torch.autocast('cuda', dtype=torch.bfloat16):
        expected = net(x)
        torch.testing.assert_close(cache(x), expected)
        (entry, ) = cache._graphs.values()
        assert len(entry.params) == 4
        other = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
        net.load_state_dict(other.state_dict())
        torch.testing.assert_close(cache(x), net(x))
    assert isinstance(net[0].weight, torch.nn.Parameter)


def test_capture_paths_switch_is_graph_capture_on_and_back():
    from mmttsrn.models.layers import capture_paths
    assert not is_graph_capture()
    with pytest.raises(RuntimeError, match='inside'):
        with capture_paths():
            assert is_graph_capture()
            with capture_paths():
                assert is_graph_capture()
            assert is_graph_capture()
            raise RuntimeError('inside')
    assert not is_graph_capture()


@cuda
@torch.no_grad()
def test_runs_before_a_capture_take_its_paths():
    """The search for parameters cast once and the warm-ups run what the
    capture records (a function may branch on is_graph_capture)."""
    net = torch.nn.Linear(4, 4).cuda()
    seen = []

    def fn(x):
        seen.append(is_graph_capture())
        return net(x)

    cache = CUDAGraphCache(fn, max_graphs=1, module=net)
    with torch.autocast('cuda', dtype=torch.bfloat16):
        cache(torch.randn(2, 4, device='cuda'))
    assert seen == [True] * 4  # search, two warm-ups, capture


def test_compiled_code_is_not_compiled_again_outside_capture_paths():
    """Code compiled inside ``capture_paths`` (a CUDA graph's warm-ups) and
    run again outside it (the capture) keeps its one compilation: compiling
    during a capture would record the compiler's own kernels."""
    from mmttsrn.models.layers import capture_paths
    compilations = []

    def backend(graph_module, example_inputs):
        compilations.append(graph_module)
        return graph_module.forward

    compiled = torch.compile(
        lambda x: x * 2 if is_graph_capture() else x * 3, backend=backend)
    x = torch.ones(2)
    with capture_paths():
        assert torch.equal(compiled(x), x * 2)
    assert torch.equal(compiled(x), x * 2)
    assert len(compilations) == 1
