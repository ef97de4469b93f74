"""Instance sequence segmentation head of TT-SRN (VisTR's mask head).

Per frame, every instance query attends to its frame's encoder memory; the
attention maps and the memory go through an FPN-style conv stack ending in a
deformable conv. Each instance's T frame features are then stacked into a
volume and refined by 3-D convs into one mask logit per pixel per frame.

The stack runs on T*n instance-frames, so exact rewrites keep it cheap: the
first conv's memory part is computed once per frame (a conv is linear in its
input channels) and, on CPU, the 2-D stack runs on channels-last tensors and
the deformable conv is evaluated with ``grid_sample`` (see
:func:`deform_conv2d_by_sampling`; so is GPU inference); CPU inference can
run the 2-D stack a few frames at a time (``cpu_frame_chunk``).
"""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmdet.utils import OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn
from torchvision.ops import DeformConv2d

from ..layers.graph_capture import is_graph_capture, is_stream_capturing
from ..layers.init_cfg import pretrained_cfg
from ..layers.sampled_deform_conv import CUDA_IMPLS, deform_conv2d_by_sampling

__all__ = ['SequenceMaskHead']


def _memory_format(x: Tensor) -> torch.memory_format:
    """Memory format of the 2-D stack on x's device.

    On the CPU, oneDNN's convs and GroupNorm run on channels-last tensors
    without reordering them, and the sampled deformable conv takes its pixel
    rows from them without a copy; GPU kernels keep the default format.
    """
    if x.device.type == 'cpu':
        return torch.channels_last
    return torch.contiguous_format


def _sampled_deform_conv(x: Tensor) -> bool:
    """Whether the deformable conv on x runs as ``grid_sample`` calls
    (:func:`deform_conv2d_by_sampling`) rather than torchvision's kernel.

    On the CPU, always: torchvision's kernel runs in one thread. On a GPU,
    for inference: every tap in three large ops takes less time than
    torchvision's kernel (docs/benchmark.md); and a CUDA graph capture
    needs it: torchvision up to 0.26 launches its kernels on the legacy
    default stream (pytorch/vision#9513), outside the captured stream.
    """
    return (x.device.type == 'cpu' or not torch.is_grad_enabled()
            or is_stream_capturing())


def _check_groups(channels: Sequence[int], groups: int, name: str) -> None:
    """Raise if ``groups`` GroupNorm groups do not divide every width."""
    bad = [c for c in channels if c % groups]
    if bad:
        raise ValueError(f'{name}={groups} must divide every channel count '
                         f'it normalises ({list(channels)}), but not {bad}')


@MODELS.register_module()
class SequenceMaskHead(BaseModule):
    """Instance sequence mask head with deformable and 3-D convolutions.

    Args:
        embed_dims (int): Transformer width d. Defaults to 384.
        num_heads (int): Heads of the query-memory attention maps.
            Defaults to 8.
        fpn_channels (Sequence[int]): Backbone widths of the FPN inputs,
            coarse to fine (strides 16, 8, 4). Defaults to (256, 128, 64).
        conv_channels (Sequence[int], optional): Widths of the 2-D stack,
            ``len(fpn_channels) + 2`` entries: two stem convs, then one conv
            per FPN level (the last one deformable); the last entry is the
            mask feature width fed to the 3-D convs. Defaults to VisTR's
            ``[d + heads, d // 2, d // 4, d // 8, d // 16]``.
        conv3d_channels (Sequence[int]): Widths of the 3-D convs.
            Defaults to (12, 12, 12).
        conv3d_kernel (int): Kernel size of the 3-D convs. Defaults to 3.
        conv3d_dilation (int): Dilation of the 3-D convs. Defaults to 2.
        conv3d_groups (int): GroupNorm groups of the 3-D convs.
            Defaults to 4.
        num_groups (int): GroupNorm groups of the 2-D convs. Defaults to 8.
        dropout (float): Dropout on the attention maps. Defaults to 0.0.
        pixel_embed (bool): Add to each mask logit the dot product of the
            instance's embedding with a per-pixel embedding of the stride-4
            features and the up-sampled memory (Mask2Former's mask logits).
            The paper's head tells instances apart only through attention
            maps at stride 32 (3x4 cells on a 96x128 frame); this term does
            it at stride 4 and sends the mask loss straight into the query
            embeddings. Defaults to False (the paper).
        cpu_frame_chunk (int, optional): On the CPU without autograd or
            graph capture, run the per-frame 2-D stack on at most this many
            frames at a time and write each chunk into the 3-D convs'
            volumes, so that its tensors stay small enough for malloc to
            reuse and for the cache to hold (exact). Defaults to None: all
            frames at once.
        cuda_deform (str): How GPU inference runs the deformable conv
            (exact up to float rounding): ``'grid_sample'``, three ops
            that write every tap's projection and samples; ``'compiled'``,
            its sampling, tap sum and cast as one kernel compiled by
            ``torch.compile`` (inductor; compiled on the first clip of each
            shape, before a CUDA graph captures it); ``'triton'``, the whole
            conv as one Triton kernel that writes only its output. See
            :func:`deform_conv2d_by_sampling`. Defaults to
            ``'grid_sample'``.
        init_cfg (dict or list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 embed_dims: int = 384,
                 num_heads: int = 8,
                 fpn_channels: Sequence[int] = (256, 128, 64),
                 conv_channels: Optional[Sequence[int]] = None,
                 conv3d_channels: Sequence[int] = (12, 12, 12),
                 conv3d_kernel: int = 3,
                 conv3d_dilation: int = 2,
                 conv3d_groups: int = 4,
                 num_groups: int = 8,
                 dropout: float = 0.0,
                 pixel_embed: bool = False,
                 cpu_frame_chunk: Optional[int] = None,
                 cuda_deform: str = 'grid_sample',
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        conv_channels = self._check_widths(embed_dims, num_heads,
                                           fpn_channels, conv_channels,
                                           conv3d_channels, conv3d_kernel,
                                           conv3d_groups, num_groups)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.fpn_channels = tuple(fpn_channels)
        self.conv_channels = tuple(conv_channels)
        self.scale = (embed_dims // num_heads)**-0.5
        if cpu_frame_chunk is not None and (not isinstance(
                cpu_frame_chunk, int) or cpu_frame_chunk < 1):
            raise ValueError('cpu_frame_chunk must be None or a positive '
                             f'int, got {cpu_frame_chunk!r}')
        self.cpu_frame_chunk = cpu_frame_chunk
        if cuda_deform not in CUDA_IMPLS:
            raise ValueError(f'cuda_deform must be one of {CUDA_IMPLS}, got '
                             f'{cuda_deform!r}')
        self.cuda_deform = cuda_deform

        norm_cfg = dict(type='GN', num_groups=num_groups)
        act_cfg = dict(type='GELU')
        # Built in this order: it fixes the state dict's key order and the
        # random initial weights of a seed.
        self._build_attention(dropout)
        self._build_fpn(norm_cfg, act_cfg)
        self._build_conv3d(conv3d_channels, conv3d_kernel, conv3d_dilation,
                           conv3d_groups, act_cfg)
        if pixel_embed:
            self._build_pixel_embed(norm_cfg, act_cfg)
        else:
            self.pixel_embed = None
        self._reset_parameters()

    @staticmethod
    def _check_widths(embed_dims: int, num_heads: int,
                      fpn_channels: Sequence[int],
                      conv_channels: Optional[Sequence[int]],
                      conv3d_channels: Sequence[int], conv3d_kernel: int,
                      conv3d_groups: int, num_groups: int) -> List[int]:
        """Raise a ValueError on inconsistent widths; return the 2-D stack's
        widths (``conv_channels``, else VisTR's defaults)."""
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims={embed_dims} must be divisible by '
                             f'num_heads={num_heads}')
        num_levels = len(fpn_channels)
        if num_levels == 0:
            raise ValueError('SequenceMaskHead needs at least one FPN level')
        if conv_channels is None:
            conv_channels = [embed_dims + num_heads] + [
                embed_dims // 2**(i + 1) for i in range(num_levels + 1)
            ]
        conv_channels = list(conv_channels)
        if len(conv_channels) != num_levels + 2:
            raise ValueError(f'conv_channels needs len(fpn_channels) + 2 = '
                             f'{num_levels + 2} entries, got {conv_channels}')
        if conv3d_kernel % 2 == 0:
            raise ValueError(f'conv3d_kernel must be odd to keep the frame '
                             f'count, got {conv3d_kernel}')
        _check_groups(conv_channels, num_groups, 'num_groups')
        _check_groups(conv3d_channels, conv3d_groups, 'conv3d_groups')
        return conv_channels

    def _build_attention(self, dropout: float) -> None:
        """Query and key projections of the attention maps (VisTR's
        MHAttentionMap)."""
        d = self.embed_dims
        self.query_proj = nn.Linear(d, d)
        self.key_proj = nn.Conv2d(d, d, 1)
        self.attn_drop = nn.Dropout(dropout)

    def _build_fpn(self, norm_cfg: dict, act_cfg: dict) -> None:
        """The 2-D stack: two stem convs on ``cat(memory, attn)``, one 1x1
        adapter and one 3x3 conv per FPN level, the finest level's conv
        deformable."""
        channels = self.conv_channels
        num_levels = len(self.fpn_channels)
        self.stem = nn.Sequential(
            ConvModule(
                self.embed_dims + self.num_heads,
                channels[0],
                3,
                padding=1,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg),
            ConvModule(
                channels[0],
                channels[1],
                3,
                padding=1,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg))
        self.adapters = nn.ModuleList(
            nn.Conv2d(c_fpn, c_out, 1)
            for c_fpn, c_out in zip(self.fpn_channels, channels[1:]))
        # Every FPN level but the finest ends in a plain 3x3 conv; the finest
        # one ends in the deformable conv.
        self.fpn_convs = nn.ModuleList(
            ConvModule(
                channels[i + 1],
                channels[i + 2],
                3,
                padding=1,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg) for i in range(num_levels - 1))
        self.offset_conv = nn.Conv2d(channels[-2], 2 * 3 * 3, 1)
        self.deform_conv = DeformConv2d(
            channels[-2], channels[-1], 3, padding=1, bias=False)
        self.deform_norm = nn.GroupNorm(norm_cfg['num_groups'], channels[-1])
        self.act = nn.GELU()

    def _build_conv3d(self, conv3d_channels: Sequence[int], kernel: int,
                      dilation: int, groups: int, act_cfg: dict) -> None:
        """3-D convs over each instance's (T, H4, W4) volume, then a 1x1x1
        conv to one mask logit."""
        widths = [self.conv_channels[-1], *conv3d_channels]
        self.conv3d = nn.Sequential(
            *[
                ConvModule(
                    c_in,
                    c_out,
                    kernel,
                    padding=dilation * (kernel - 1) // 2,
                    dilation=dilation,
                    conv_cfg=dict(type='Conv3d'),
                    norm_cfg=dict(type='GN', num_groups=groups),
                    act_cfg=act_cfg)
                for c_in, c_out in zip(widths[:-1], widths[1:])
            ], nn.Conv3d(widths[-1], 1, 1))

    def _build_pixel_embed(self, norm_cfg: dict, act_cfg: dict) -> None:
        """Per-pixel and per-instance embeddings of the ``pixel_embed``
        term."""
        d = self.embed_dims
        self.pixel_memory_proj = nn.Conv2d(d, d, 1)
        self.pixel_feat_proj = nn.Conv2d(self.fpn_channels[-1], d, 1)
        self.pixel_embed = nn.Sequential(
            ConvModule(
                d, d, 3, padding=1, norm_cfg=norm_cfg, act_cfg=act_cfg),
            nn.Conv2d(d, d, 1))
        self.mask_embed = nn.Sequential(
            nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))

    def _reset_parameters(self) -> None:
        """VisTR's initialisation of the attention projections and the FPN
        adapters; the deformable conv starts plain."""
        nn.init.xavier_uniform_(self.query_proj.weight)
        nn.init.xavier_uniform_(self.key_proj.weight)
        nn.init.zeros_(self.query_proj.bias)
        nn.init.zeros_(self.key_proj.bias)
        for adapter in self.adapters:
            nn.init.kaiming_uniform_(adapter.weight, a=1)
            nn.init.zeros_(adapter.bias)
        self._zero_offsets()

    def _zero_offsets(self) -> None:
        """Zero the offset predictor so the deformable conv starts plain."""
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    def init_weights(self) -> None:
        """Apply ``init_cfg`` but keep the deformable conv's offsets at zero
        unless pretrained weights are loaded."""
        super().init_weights()
        if pretrained_cfg(self.init_cfg) is None:
            self._zero_offsets()

    def attention_maps(self, query: Tensor, memory: Tensor,
                       memory_mask: Tensor) -> Tensor:
        """Multi-head attention maps of each query over its frame's memory.

        Args:
            query (Tensor): Instance embeddings (B, T, n, d).
            memory (Tensor): Encoder output (B, T, d, h, w).
            memory_mask (Tensor): Bool (B, T, h, w), True at padding.

        Returns:
            Tensor: Maps (B, T, n, heads, h, w); for each query they sum to 1
            over (heads, h, w) jointly (as in VisTR) and are 0 at padding.
        """
        B, T, n, d = query.shape
        h, w = memory.shape[-2:]
        heads = self.num_heads
        q = self.query_proj(query).view(B, T, n, heads, d // heads)
        k = self.key_proj(memory.flatten(0, 1)).view(B, T, heads, d // heads,
                                                     h, w)
        logits = torch.einsum('btnkc,btkchw->btnkhw', q * self.scale, k)
        logits = logits.masked_fill(memory_mask.bool()[:, :, None, None],
                                    float('-inf'))
        attn = logits.flatten(3).softmax(-1).view_as(logits)
        return self.attn_drop(attn)

    def _check_inputs(self, query: Tensor, memory: Tensor, memory_mask: Tensor,
                      fpn_feats: List[Tensor]) -> None:
        """Raise a ValueError naming the first inconsistent input."""
        if query.dim() != 4 or query.shape[-1] != self.embed_dims:
            raise ValueError(f'query must have shape (B, T, n, '
                             f'{self.embed_dims}), got {tuple(query.shape)}')
        B, T = query.shape[:2]
        if memory.dim() != 5 or memory.shape[:3] != (B, T, self.embed_dims):
            raise ValueError(f'memory must have shape ({B}, {T}, '
                             f'{self.embed_dims}, h, w), got '
                             f'{tuple(memory.shape)}')
        if memory_mask.shape != (B, T, *memory.shape[-2:]):
            raise ValueError(f'memory_mask must have shape ({B}, {T}, '
                             f'{memory.shape[-2]}, {memory.shape[-1]}), got '
                             f'{tuple(memory_mask.shape)}')
        if len(fpn_feats) != len(self.fpn_channels):
            raise ValueError(f'expected {len(self.fpn_channels)} fpn_feats, '
                             f'got {len(fpn_feats)}')
        for i, (feat, c) in enumerate(zip(fpn_feats, self.fpn_channels)):
            if feat.dim() != 4 or feat.shape[:2] != (B * T, c):
                raise ValueError(f'fpn_feats[{i}] must have shape ({B * T}, '
                                 f'{c}, H, W) (B * T frames), got '
                                 f'{tuple(feat.shape)}')

    def _stem_conv(self, memory: Tensor, attn: Tensor) -> Tensor:
        """First stem conv of every instance's ``cat(memory, attn)``.

        The conv is linear in its input channels, so its memory part runs
        once per frame and is broadcast to the frame's instances; only the
        ``heads`` attention channels run per instance. This equals the conv
        of the concatenation of (B*T*n, d + heads, h, w) without building it.

        Args:
            memory (Tensor): (B, T, d, h, w).
            attn (Tensor): (B, T, n, heads, h, w).

        Returns:
            Tensor: Normed and activated (B*T*n, C0, h, w).
        """
        block = self.stem[0]
        conv = block.conv
        w_mem, w_attn = conv.weight.split([self.embed_dims, self.num_heads],
                                          dim=1)
        fmt = _memory_format(memory)
        x = F.conv2d(
            memory.flatten(0, 1).contiguous(memory_format=fmt), w_mem,
            conv.bias, conv.stride, conv.padding, conv.dilation)
        x_attn = F.conv2d(
            attn.flatten(0, 2).contiguous(memory_format=fmt), w_attn, None,
            conv.stride, conv.padding, conv.dilation)
        x = (x_attn.unflatten(0, attn.shape[:3]) +
             x.unflatten(0, attn.shape[:2])[:, :, None]).flatten(0, 2)
        return block.activate(block.norm(x))

    @staticmethod
    def _add_fpn(x: Tensor, feat: Tensor, num_inst: int,
                 channels_last: bool) -> Tensor:
        """Upsample x (B*T*n, C, h, w) to feat (B*T, C, H, W) (nearest) and
        add feat to each of the frame's n instances (broadcast, no copies of
        feat). With ``channels_last`` the result has that memory format."""
        N, C, h, w = x.shape
        H, W = feat.shape[-2:]
        if (H, W) != (2 * h, 2 * w):
            fmt = torch.channels_last if channels_last else \
                torch.contiguous_format
            x = F.interpolate(
                x, size=(H, W), mode='nearest').contiguous(memory_format=fmt)
            # In place: x is a fresh tensor and the upsampling does not keep
            # it for the backward pass.
            return x.unflatten(0, (-1, num_inst)).add_(feat[:, None]).flatten(
                0, 1)
        # Nearest 2x upsampling repeats every pixel twice per axis, so one
        # broadcast add over (h, 2, w, 2) views of x and feat writes the sum
        # without an upsampled copy of x (F.interpolate and an add take ~3x
        # the memory traffic).
        x = x.unflatten(0, (-1, num_inst))
        feat = feat[:, None]
        if channels_last:
            # (B*T, n, h, 2, w, 2, C): memory order of the result.
            x = x.permute(0, 1, 3, 4, 2)[:, :, :, None, :, None]
            feat = feat.permute(0, 1, 3, 4, 2)
            split = (2, 3)
        else:
            x = x[:, :, :, :, None, :, None]
            split = (3, 4)
        feat = feat.unflatten(split[1], (w, 2)).unflatten(split[0], (h, 2))
        out = torch.add(x, feat)
        if channels_last:
            return out.view(N, H, W, C).permute(0, 3, 1, 2)
        return out.view(N, C, H, W)

    def _frame_features(self, query: Tensor, memory: Tensor,
                        memory_mask: Tensor,
                        fpn_feats: List[Tensor]) -> Tensor:
        """The per-frame 2-D stack: attention maps, stem, FPN and the
        deformable conv, inputs as :meth:`forward`.

        Returns:
            Tensor: (B*T*n, C, H4, W4) features of every instance-frame.
        """
        n = query.shape[2]
        attn = self.attention_maps(query, memory, memory_mask)
        fmt = _memory_format(memory)
        channels_last = fmt == torch.channels_last
        x = self.stem[1](self._stem_conv(memory, attn))
        for i, (feat, adapter) in enumerate(zip(fpn_feats, self.adapters)):
            feat = adapter(feat.contiguous(memory_format=fmt))
            x = self._add_fpn(x, feat, n, channels_last)
            if i < len(self.fpn_convs):
                x = self.fpn_convs[i](x)
        if _sampled_deform_conv(x):
            offset = self.offset_conv(x)
            deform = self.deform_conv
            x = deform_conv2d_by_sampling(
                x,
                offset,
                deform.weight,
                deform.bias,
                deform.padding[0],
                deform.dilation[0],
                cuda_impl=self.cuda_deform)
        else:
            x = self.deform_conv(x, self.offset_conv(x))
        return self.act(self.deform_norm(x))

    def _chunked_volumes(self, query: Tensor, memory: Tensor,
                         memory_mask: Tensor, fpn_feats: List[Tensor],
                         chunk: int) -> Tensor:
        """:meth:`_frame_features` of ``chunk`` frames at a time, written
        into channels-last volumes (B*n, C, T, H4, W4) (no autograd)."""
        B, T, n, _ = query.shape
        volumes = None
        for start in range(0, T, chunk):
            frames = slice(start, start + chunk)
            x = self._frame_features(
                query[:, frames], memory[:, frames], memory_mask[:, frames],
                [f.unflatten(0, (B, T))[:, frames].flatten(0, 1)
                 for f in fpn_feats])
            C, H, W = x.shape[1:]
            if volumes is None:
                # Memory order (B, n, T, H4, W4, C): channels-last volumes.
                volumes = x.new_empty(B, n, T, H, W, C)
            volumes[:, :, frames] = x.view(B, -1, n, C, H, W).permute(
                0, 2, 1, 4, 5, 3)
        return volumes.flatten(0, 1).permute(0, 4, 1, 2, 3)

    def forward(self,
                query: Tensor,
                memory: Tensor,
                memory_mask: Tensor,
                fpn_feats: List[Tensor],
                pixels: Optional[Tensor] = None) -> Tensor:
        """Predict a mask sequence for every instance slot.

        Args:
            query (Tensor): Last decoder layer's embeddings (B, T, n, d);
                ``query[:, t, j]`` is instance j in frame t.
            memory (Tensor): Encoder output at stride 32 (B, T, d, h, w).
            memory_mask (Tensor): Bool (B, T, h, w), True at padding.
            fpn_feats (list[Tensor]): Backbone features, coarse to fine,
                ``[(B*T, C16, H16, W16), (B*T, C8, H8, W8),
                (B*T, C4, H4, W4)]``.
            pixels (Tensor, optional): :meth:`pixel_embeddings`, if the
                caller has them already (``pixel_embed`` only).

        Returns:
            Tensor: Mask logits (B, n, T, H4, W4).
        """
        self._check_inputs(query, memory, memory_mask, fpn_feats)
        B, T, n, _ = query.shape
        chunk = self.cpu_frame_chunk
        if (chunk is None or chunk >= T or query.device.type != 'cpu'
                or torch.is_grad_enabled() or is_graph_capture()):
            x = self._frame_features(query, memory, memory_mask, fpn_feats)
            # Instance j's T frames form one volume: (B*n, C, T, H4, W4).
            C, H, W = x.shape[1:]
            x = x.view(B, T, n, C, H, W).permute(0, 2, 3, 1, 4,
                                                 5).flatten(0, 1)
            if x.device.type == 'cpu':
                # Channels-last volumes (memory order B*n, T, H4, W4, C),
                # made in one copy: oneDNN's 3-D convs run about 2x faster
                # on them, backward included. (A reshape of the permuted
                # frames would be a view, not this layout, whenever B = 1.)
                x = x.contiguous(memory_format=torch.channels_last_3d)
        else:
            x = self._chunked_volumes(query, memory, memory_mask, fpn_feats,
                                      chunk)
        H, W = x.shape[-2:]
        logits = self.conv3d(x).reshape(B, n, T, H, W)
        if self.pixel_embed is not None:
            if pixels is None:
                pixels = self.pixel_embeddings(memory, fpn_feats[-1])
            logits = logits + self.dot_product_logits(query, pixels)
        return logits

    def pixel_embeddings(self, memory: Tensor, feat: Tensor) -> Tensor:
        """Per-pixel embeddings of the ``pixel_embed`` term.

        Args:
            memory (Tensor): (B, T, d, h, w).
            feat (Tensor): Stride-4 features (B*T, C4, H4, W4).

        Returns:
            Tensor: (B, T, d, H4, W4).
        """
        pixels = self.pixel_feat_proj(feat) + F.interpolate(
            self.pixel_memory_proj(memory.flatten(0, 1)),
            size=feat.shape[-2:],
            mode='bilinear',
            align_corners=False)
        return self.pixel_embed(pixels).unflatten(0, memory.shape[:2])

    def dot_product_logits(self, query: Tensor, pixels: Tensor) -> Tensor:
        """Mask logits as query-pixel dot products.

        Args:
            query (Tensor): Instance embeddings (B, T, n, d).
            pixels (Tensor): :meth:`pixel_embeddings` (B, T, d, H4, W4).

        Returns:
            Tensor: (B, n, T, H4, W4).
        """
        return torch.einsum('btnc,btchw->bnthw', self.mask_embed(query),
                            pixels)
