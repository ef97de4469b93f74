"""Count the kernels, casts and copies of TT-SRN's GPU forward, without a GPU.

Runs the clip forward that ``test_cfg.cuda_graphs`` captures (backbone,
transformer, heads; no post-processing) on fake CUDA tensors (shapes and
dtypes only, ``torch._subclasses.FakeTensorMode``) under CUDA autocast as a
graph capture has it (autocast's cache off; with
``test_cfg.cast_parameters_once``, on copies of the parameters that are only
cast), and logs every ATen op that reaches the dispatcher. Prints one JSON
line: the number of kernels (ops that are not views), the bytes they read
and write (every input and output tensor counted once per op, an expanded
dim once: a measure of the memory traffic of a forward that is bound by
it), the same per op, and the casts
(``_to_copy`` to another dtype) and layout copies (``clone``, ``copy_``,
``_to_copy`` to the same dtype) with the modules they come from.

Fused attention is counted as one kernel (on the GPU
``F.scaled_dot_product_attention`` runs flash or memory-efficient
attention; under fake tensors it would decompose into its math path).
Figures are counts, not times: what a change removes or adds, to be timed
on a GPU with ``gpu_benchmark.sh`` (docs/benchmark.md).

Example, the paper config in bf16::

    python tools/analysis_tools/gpu_op_census.py configs/ttsrn/ttsrn_yvis.py \\
        --frames 36 --size 300 540 --dtype bf16
"""
import argparse
import collections
import json
import os.path as osp
import sys
from contextlib import ExitStack
from unittest import mock

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.config import DictAction
from mmengine.registry import init_default_scope
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from benchmark import load_config, padded_size, strip_pretrained  # noqa: E402

import mmttsrn.models.layers.graph_capture as graph_capture  # noqa: E402
from mmttsrn.models.layers import CastParameters  # noqa: E402

DTYPES = dict(fp32=None, bf16=torch.bfloat16, fp16=torch.float16)
# ATen ops that launch no kernel, besides the views their schema names.
VIEW_OPS = {
    '_unsafe_view', 'lift_fresh', 'empty', 'empty_strided', 'empty_like',
    'new_empty', 'new_empty_strided'
}
COPY_OPS = {'_to_copy', 'clone', 'copy_'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a TT-SRN config file')
    parser.add_argument('--frames', type=int, default=36)
    parser.add_argument('--size', type=int, nargs=2, default=(300, 540),
                        metavar=('H', 'W'))
    parser.add_argument('--dtype', choices=sorted(DTYPES), default='bf16')
    parser.add_argument('--top', type=int, default=15,
                        help='how many ops and copy sources to list')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def _nbytes(tensor: torch.Tensor) -> int:
    """The bytes a tensor addresses (an expanded dim counts once)."""
    numel = 1
    for size, stride in zip(tensor.shape, tensor.stride()):
        numel *= size if stride else 1
    return numel * tensor.element_size()


class OpLog(TorchDispatchMode):
    """Logs kernels, their bytes, and copies by module (``where``)."""

    def __init__(self, where):
        super().__init__()
        self.where = where
        self.kernels = 0
        self.bytes = collections.Counter()
        self.calls = collections.Counter()
        self.copies = collections.defaultdict(lambda: [0, 0])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if func.is_view or name in VIEW_OPS or func.namespace == 'prim':
            return out
        tensors = {
            id(t): t
            for t in tree_leaves((args, kwargs, out))
            if isinstance(t, torch.Tensor)
        }
        moved = sum(map(_nbytes, tensors.values()))
        self.kernels += 1
        self.calls[name] += 1
        self.bytes[name] += moved
        if name in COPY_OPS:
            src = args[1] if name == 'copy_' else args[0]
            kind = 'cast' if src.dtype != out.dtype else 'layout'
            entry = self.copies[(kind, self.where[-1])]
            entry[0] += 1
            entry[1] += moved
        return out


def fused_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                    is_causal=False, scale=None, enable_gqa=False):
    """One kernel, as flash/memory-efficient attention is on the GPU: casts
    its inputs under autocast and writes (..., L, Ev); for 4-D inputs the
    (B, heads, L, Ev) view of a (B, L, heads, Ev) tensor, as those kernels
    return it (so transposing the heads back is a view)."""
    dtype = torch.get_autocast_dtype('cuda')
    if torch.is_autocast_enabled('cuda') and query.dtype != dtype:
        query, key, value = (t.to(dtype) for t in (query, key, value))
    shape = [*query.shape[:-1], value.shape[-1]]
    if query.dim() == 4:
        shape[1], shape[2] = shape[2], shape[1]
    out = torch.ops.aten.empty.memory_format(
        shape, dtype=query.dtype, device=query.device)
    return out.transpose(1, 2) if query.dim() == 4 else out


def to_fake_cuda(model: nn.Module, mode: FakeTensorMode) -> None:
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            setattr(module, name,
                    nn.Parameter(mode.from_tensor(param).to('cuda')))
        for name, buf in list(module.named_buffers(recurse=False)):
            module._buffers[name] = mode.from_tensor(buf).to('cuda')


def census(cfg, frames: int, size, dtype, top: int) -> dict:
    strip_pretrained(cfg.model)
    if 'num_frames' in cfg.model.get('track_head', {}):
        cfg.model.track_head.num_frames = frames
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model).eval()
    names = {id(m): name or type(m).__name__ for name, m in
             model.named_modules()}
    where = ['']
    divisor = cfg.model.get('data_preprocessor', {}).get(
        'pad_size_divisor', 32)
    height, width = padded_size(size, divisor)
    log = OpLog(where)
    with ExitStack() as stack:

        def enter(module, args):
            where.append(names.get(id(module), where[-1]))

        def leave(module, args, output):
            where.pop()

        stack.enter_context(
            nn.modules.module.register_module_forward_pre_hook(enter))
        stack.enter_context(
            nn.modules.module.register_module_forward_hook(leave))
        # The forward that a CUDA graph captures (no host reads).
        stack.enter_context(
            mock.patch.object(graph_capture, 'is_stream_capturing',
                              lambda: True))
        stack.enter_context(
            mock.patch.object(F, 'scaled_dot_product_attention',
                              fused_attention))
        mode = stack.enter_context(FakeTensorMode(allow_non_fake_inputs=True))
        stack.enter_context(torch.no_grad())
        to_fake_cuda(model, mode)
        inputs = torch.empty(1, frames, 3, height, width, device='cuda')
        pad_mask = torch.zeros(
            1, frames, height, width, dtype=torch.bool, device='cuda')
        autocast = (torch.is_autocast_enabled('cuda'),
                    torch.get_autocast_dtype('cuda'),
                    torch.is_autocast_cache_enabled())
        if dtype is not None:
            torch.set_autocast_dtype('cuda', dtype)
            torch.set_autocast_enabled('cuda', True)
            torch.set_autocast_cache_enabled(False)
        try:
            on_copies = ExitStack()
            if dtype is not None and model.test_cfg['cast_parameters_once']:
                # As the graph is recorded: on copies of the parameters
                # that the forward only casts.
                params = CastParameters.find(model, dtype,
                                             model._graphed_clip, inputs,
                                             pad_mask)
                on_copies.enter_context(params.swapped())
            with on_copies, log:
                model._graphed_clip(inputs, pad_mask)
        finally:
            torch.set_autocast_enabled('cuda', autocast[0])
            torch.set_autocast_dtype('cuda', autocast[1])
            torch.set_autocast_cache_enabled(autocast[2])

    def copies(kind):
        rows = [(module, n, b) for (k, module), (n, b) in log.copies.items()
                if k == kind]
        rows.sort(key=lambda row: -row[2])
        return dict(
            count=sum(r[1] for r in rows),
            gb=round(sum(r[2] for r in rows) / 1e9, 3),
            by_module=[
                dict(module=m, count=n, mb=round(b / 1e6, 1))
                for m, n, b in rows[:top]
            ])

    return dict(
        kernels=log.kernels,
        gb_moved=round(sum(log.bytes.values()) / 1e9, 3),
        by_op=[
            dict(op=op, calls=log.calls[op], gb=round(b / 1e9, 3))
            for op, b in log.bytes.most_common(top)
        ],
        casts=copies('cast'),
        layout_copies=copies('layout'))


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    record = dict(
        config=args.config,
        frames=args.frames,
        size=list(args.size),
        dtype=args.dtype,
        cfg_options=args.cfg_options or {},
        torch=torch.__version__)
    record.update(
        census(cfg, args.frames, args.size, DTYPES[args.dtype], args.top))
    print(json.dumps(record))
    return record


if __name__ == '__main__':
    main()
