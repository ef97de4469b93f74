"""Export one clip of a TT-SRN model to ONNX and check it with onnxruntime.

The exported graph runs the backbone and the head on one clip of T frames,
as the data preprocessor gives them (RGB, normalised, zero padded to the
size divisor), with the clip's pad mask::

    inputs   (1, T, 3, H, W) float32
    pad_mask (1, T, H, W)    bool, True on padded pixels
    ->
    cls_scores (1, n, T, K+1) class logits of the last decoder layer
    bbox_preds (1, n, T, 4)   normalised (cx, cy, w, h), after the sigmoid
    mask_preds (1, n, T, H/4, W/4) mask logits

i.e. the last layer of ``TTSRNHead.forward``. Windows, linking and
post-processing stay in PyTorch (:mod:`mmttsrn.apis.onnx_inference`).

The exporter is torch 2.14's (``dynamo=True``, the default). One workaround
makes onnxruntime accept the model without changing a number: onnxruntime
has no ``Where`` kernel for bool tensors (the masked-attention masks), so
:func:`replace_bool_where` rewrites each as ``(c and x) or (not c and y)``.

Export runs on the CPU, where the mask head evaluates its deformable conv
with ``grid_sample`` (:func:`deform_conv2d_by_sampling`), so the graph holds
``GridSample`` nodes rather than ``DeformConv``.
"""
import json
import logging
import os
import os.path as osp
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

__all__ = [
    'TTSRNClipExport', 'INPUT_NAMES', 'OUTPUT_NAMES', 'CLASSES_KEY',
    'replace_bool_where', 'padded_size', 'random_clip',
    'export_onnx', 'compare_with_pytorch'
]

INPUT_NAMES = ('inputs', 'pad_mask')
OUTPUT_NAMES = ('cls_scores', 'bbox_preds', 'mask_preds')
# Metadata key of the class names (a JSON list) in the ONNX file.
CLASSES_KEY = 'mmttsrn.classes'


class TTSRNClipExport(nn.Module):
    """A TTSRN model as a function of one clip, for the exporter.

    Args:
        model (nn.Module): A :class:`TTSRN` in eval mode.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor,
                pad_mask: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(1, T, 3, H, W) frames and (1, T, H, W) pad mask -> the last
        decoder layer's ``cls_scores`` (1, n, T, K+1), ``bbox_preds``
        (1, n, T, 4) and ``mask_preds`` (1, n, T, H/4, W/4)."""
        outs = self.model.track_head(self.model.extract_feat(inputs), pad_mask)
        return (outs['cls_scores'][-1], outs['bbox_preds'][-1],
                outs['mask_preds'])


def replace_bool_where(model_proto) -> int:
    """Rewrite every bool ``Where(c, x, y)`` of an ONNX model in place as
    ``Or(And(c, x), And(Not(c), y))`` (onnxruntime has no bool ``Where``).

    Returns:
        int: The number of nodes rewritten.
    """
    import onnx
    from onnx import TensorProto, helper
    graph = onnx.shape_inference.infer_shapes(model_proto).graph
    dtypes = {
        v.name: v.type.tensor_type.elem_type
        for v in [*graph.value_info, *graph.input, *graph.output]
    }
    nodes, count = [], 0
    for node in model_proto.graph.node:
        if node.op_type != 'Where' or \
                dtypes.get(node.output[0]) != TensorProto.BOOL:
            nodes.append(node)
            continue
        cond, x, y = node.input
        name = node.name or node.output[0]
        nodes += [
            helper.make_node('And', [cond, x], [f'{name}_c_x']),
            helper.make_node('Not', [cond], [f'{name}_not_c']),
            helper.make_node('And', [f'{name}_not_c', y], [f'{name}_nc_y']),
            helper.make_node(
                'Or', [f'{name}_c_x', f'{name}_nc_y'],
                list(node.output),
                name=name)
        ]
        count += 1
    del model_proto.graph.node[:]
    model_proto.graph.node.extend(nodes)
    return count


def padded_size(model: nn.Module, size: Sequence[int]) -> Tuple[int, int]:
    """(H, W) padded as the model's data preprocessor pads it."""
    divisor = getattr(model.data_preprocessor, 'pad_size_divisor', 1) or 1
    return tuple(-(-s // divisor) * divisor for s in size)


def random_clip(num_frames: int,
                size: Sequence[int],
                pad_size: Sequence[int],
                seed: int = 0) -> Tuple[Tensor, Tensor]:
    """A random normalised clip of ``size`` frames zero padded to
    ``pad_size``, as the data preprocessor gives it.

    Returns:
        tuple[Tensor, Tensor]: inputs (1, T, 3, H', W') and pad mask
        (1, T, H', W') bool, with (H', W') = ``pad_size``.
    """
    (h, w), (pad_h, pad_w) = size, pad_size
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.zeros(1, num_frames, 3, pad_h, pad_w)
    inputs[..., :h, :w] = torch.randn(1, num_frames, 3, h, w, generator=gen)
    pad_mask = torch.ones(1, num_frames, pad_h, pad_w, dtype=torch.bool)
    pad_mask[..., :h, :w] = False
    return inputs, pad_mask


def export_onnx(model: nn.Module,
                out_file: str,
                size: Sequence[int],
                opset_version: int = 19) -> Dict[str, int]:
    """Export one clip of ``model`` (on the CPU) to ``out_file``.

    Args:
        model (nn.Module): A :class:`TTSRN` (from ``init_model``), moved to
            the CPU and eval mode here.
        out_file (str): Path of the ``.onnx`` file (its folder is made).
        size (Sequence[int]): Frame (H, W) before padding; the graph's
            input is the padded size (:func:`padded_size`), fixed.
        opset_version (int): ONNX opset. Defaults to 19.

    Returns:
        dict: ``bool_where`` (the number of nodes
        :func:`replace_bool_where` rewrote).
    """
    import onnx
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    model = model.cpu().eval()
    inputs, pad_mask = random_clip(model.num_frames, size,
                                   padded_size(model, size))
    # onnxscript's optimizer logs a warning for every multi-output op it
    # leaves unfolded; the graph is fine.
    optimizer_log = logging.getLogger('onnxscript.optimizer')
    level = optimizer_log.level
    optimizer_log.setLevel(logging.ERROR)
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                TTSRNClipExport(model).eval(), (inputs, pad_mask),
                dynamo=True,
                opset_version=opset_version,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                verbose=False)
    finally:
        optimizer_log.setLevel(level)
    proto = program.model_proto
    num_where = replace_bool_where(proto)
    classes = getattr(model, 'dataset_meta', {}).get('classes')
    if classes is not None:
        onnx.helper.set_model_props(proto,
                                    {CLASSES_KEY: json.dumps(list(classes))})
    # Written next to the target and renamed: no half-written file on error.
    tmp_file = f'{out_file}.tmp'
    try:
        onnx.save(proto, tmp_file)
        os.replace(tmp_file, out_file)
    finally:
        if osp.exists(tmp_file):
            os.remove(tmp_file)
    return dict(bool_where=num_where)


def compare_with_pytorch(model: nn.Module,
                         onnx_file: str,
                         size: Sequence[int],
                         seed: int = 0) -> Dict[str, float]:
    """Largest absolute difference of each output between onnxruntime (CPU)
    and PyTorch on a random clip (:func:`random_clip`).

    Returns:
        dict: ``cls_scores``, ``bbox_preds``, ``mask_preds`` -> max abs diff.
    """
    import onnxruntime as ort
    model = model.cpu().eval()
    inputs, pad_mask = random_clip(model.num_frames, size,
                                   padded_size(model, size), seed)
    session = ort.InferenceSession(
        onnx_file, providers=['CPUExecutionProvider'])
    outs = session.run(
        list(OUTPUT_NAMES),
        dict(zip(INPUT_NAMES, (inputs.numpy(), pad_mask.numpy()))))
    with torch.no_grad():
        refs = TTSRNClipExport(model).eval()(inputs, pad_mask)
    return {
        name: float(np.abs(out - ref.numpy()).max())
        for name, out, ref in zip(OUTPUT_NAMES, outs, refs)
    }
