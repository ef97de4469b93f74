"""DETR-style encoder-decoder transformer over the tokens of a whole clip.

Module and parameter names follow DETR's ``models/transformer.py`` so that
the ``transformer.*`` weights of DETR's public checkpoints load by name.
"""
import copy
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_activation_layer
from mmdet.registry import MODELS
from mmdet.utils import ConfigType
from mmengine.model import BaseModule
from torch import Tensor

from .dropout_attention import dropout_attention
from .graph_capture import is_graph_capture

__all__ = [
    'FusedMultiheadAttention', 'ClipTransformerEncoderLayer',
    'ClipTransformerDecoderLayer', 'ClipTransformerEncoder',
    'ClipTransformerDecoder', 'ClipTransformer'
]


def _with_pos(x: Tensor, pos: Optional[Tensor]) -> Tensor:
    return x if pos is None else x + pos


def _drop_empty_mask(mask: Optional[Tensor]) -> Optional[Tensor]:
    """``None`` for a padding mask that masks nothing.

    Without a mask ``F.scaled_dot_product_attention`` can pick its fused
    (flash / memory-efficient) kernels, which never materialise the
    (B, heads, L, S) weights; clips whose frames need no padding at stride 32
    (e.g. 300x540 in 320x544) have an all-False mask. The test reads one
    value back from the device, once per encoder or decoder call. A graph
    being compiled, exported or captured (CUDA graphs) keeps the mask: it
    must hold for every input, and a capture cannot read values back.
    """
    if mask is None or is_graph_capture() or mask.any():
        return mask
    return None


class FusedMultiheadAttention(nn.Module):
    """Multi-head attention computed with ``F.scaled_dot_product_attention``.

    Parameters are laid out as ``nn.MultiheadAttention``'s (``in_proj_weight``
    (3d, d), ``in_proj_bias`` (3d,), ``out_proj``) so checkpoints of either
    load into the other, but the attention matrix is never materialised
    (``nn.MultiheadAttention`` as called by mmcv returns it, which blocks the
    fused kernels; a clip has thousands of tokens).

    Args:
        embed_dims (int): Model width d.
        num_heads (int): Number of heads; must divide ``embed_dims``.
        dropout (float): Dropout on attention weights, training only; on
            the CPU through :func:`dropout_attention` (SDPA has no fused
            CPU kernel with dropout). Defaults to 0.0.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f'FusedMultiheadAttention embed_dims '
                             f'{embed_dims} is not divisible by num_heads '
                             f'{num_heads}')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(
            torch.empty(3 * embed_dims, embed_dims))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dims))
        self.out_proj = nn.Linear(embed_dims, embed_dims)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # Same initialisation as nn.MultiheadAttention.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        batch_size, length, _ = x.shape
        return x.view(batch_size, length, self.num_heads, -1).transpose(1, 2)

    def forward(self,
                query: Tensor,
                key: Tensor,
                value: Tensor,
                key_padding_mask: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None) -> Tensor:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query (Tensor): Shape (B, L, d).
            key (Tensor): Shape (B, S, d).
            value (Tensor): Shape (B, S, d).
            key_padding_mask (Tensor, optional): Shape (B, S), bool,
                True = ignore this key. Defaults to None.
            attn_mask (Tensor, optional): Shape (B, L, S), bool, True =
                this query ignores this key; every query must keep at least
                one key. Defaults to None.

        Returns:
            Tensor: Shape (B, L, d).
        """
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = self._split_heads(F.linear(query, w_q, b_q))
        k = self._split_heads(F.linear(key, w_k, b_k))
        v = self._split_heads(F.linear(value, w_v, b_v))
        ignore = None
        if key_padding_mask is not None:
            ignore = key_padding_mask.bool()[:, None, :]  # (B, 1, S)
        if attn_mask is not None:
            ignore = attn_mask.bool() if ignore is None else \
                ignore | attn_mask.bool()
        # SDPA's boolean mask means True = attend; (B, 1, L or 1, S)
        # broadcasts over heads (and queries).
        keep = None if ignore is None else ~ignore[:, None]
        dropout = self.dropout if self.training else 0.0
        if (0 < dropout < 1 and q.device.type == 'cpu'
                and not is_graph_capture()):
            out = dropout_attention(q, k, v, keep, dropout)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=keep, dropout_p=dropout)
        batch_size, _, length, _ = out.shape
        out = out.transpose(1, 2).reshape(batch_size, length, -1)
        return self.out_proj(out)


class ClipTransformerEncoderLayer(nn.Module):
    """Post-norm DETR encoder layer; positions are added to q and k only.

    Args:
        embed_dims (int): Model width d.
        num_heads (int): Attention heads.
        feedforward_channels (int): Hidden width of the FFN.
        act_cfg (dict): FFN activation config. Defaults to GELU.
        dropout (float): Dropout rate. Defaults to 0.1.
        pre_norm (bool): Normalise each sub-layer's input instead of the
            residual sum (DETR's ``normalize_before``). Defaults to False.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 act_cfg: ConfigType = dict(type='GELU'),
                 dropout: float = 0.1,
                 pre_norm: bool = False) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.self_attn = FusedMultiheadAttention(
            embed_dims, num_heads, dropout=dropout)
        self.linear1 = nn.Linear(embed_dims, feedforward_channels)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(feedforward_channels, embed_dims)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = build_activation_layer(act_cfg)

    def forward(self,
                src: Tensor,
                src_key_padding_mask: Optional[Tensor] = None,
                pos: Optional[Tensor] = None) -> Tensor:
        """Encode tokens.

        Args:
            src (Tensor): Tokens, shape (B, S, d).
            src_key_padding_mask (Tensor, optional): (B, S) bool,
                True = padded token.
            pos (Tensor, optional): Positional embeddings, (B, S, d).

        Returns:
            Tensor: Shape (B, S, d).
        """
        if self.pre_norm:
            src2 = self.norm1(src)
            q = k = _with_pos(src2, pos)
            src = src + self.dropout1(
                self.self_attn(
                    q, k, src2, key_padding_mask=src_key_padding_mask))
            return src + self.dropout2(self._ffn(self.norm2(src)))
        q = k = _with_pos(src, pos)
        src2 = self.self_attn(q, k, src, key_padding_mask=src_key_padding_mask)
        src = self.norm1(src + self.dropout1(src2))
        return self.norm2(src + self.dropout2(self._ffn(src)))

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class ClipTransformerDecoderLayer(nn.Module):
    """Post-norm DETR decoder layer; positions are added to q and k only.

    Args:
        embed_dims (int): Model width d.
        num_heads (int): Attention heads.
        feedforward_channels (int): Hidden width of the FFN.
        act_cfg (dict): FFN activation config. Defaults to GELU.
        dropout (float): Dropout rate. Defaults to 0.1.
        pre_norm (bool): Normalise each sub-layer's input instead of the
            residual sum (DETR's ``normalize_before``). Defaults to False.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 act_cfg: ConfigType = dict(type='GELU'),
                 dropout: float = 0.1,
                 pre_norm: bool = False) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.self_attn = FusedMultiheadAttention(
            embed_dims, num_heads, dropout=dropout)
        self.multihead_attn = FusedMultiheadAttention(
            embed_dims, num_heads, dropout=dropout)
        self.linear1 = nn.Linear(embed_dims, feedforward_channels)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(feedforward_channels, embed_dims)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.norm3 = nn.LayerNorm(embed_dims)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = build_activation_layer(act_cfg)

    def forward(self,
                tgt: Tensor,
                memory: Tensor,
                memory_key_padding_mask: Optional[Tensor] = None,
                pos: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                cross_attn_mask: Optional[Tensor] = None) -> Tensor:
        """Decode queries against the encoder memory.

        Args:
            tgt (Tensor): Query features, shape (B, Q, d).
            memory (Tensor): Encoder output, shape (B, S, d).
            memory_key_padding_mask (Tensor, optional): (B, S) bool,
                True = padded token.
            pos (Tensor, optional): Memory positional embeddings, (B, S, d).
            query_pos (Tensor, optional): Query embeddings, (B, Q, d).
            cross_attn_mask (Tensor, optional): (B, Q, S) bool, True = the
                query does not attend to this token (masked attention).

        Returns:
            Tensor: Shape (B, Q, d).
        """
        if self.pre_norm:
            tgt2 = self.norm1(tgt)
            q = k = _with_pos(tgt2, query_pos)
            tgt = tgt + self.dropout1(self.self_attn(q, k, tgt2))
            tgt2 = self.norm2(tgt)
            tgt = tgt + self.dropout2(
                self.multihead_attn(
                    _with_pos(tgt2, query_pos),
                    _with_pos(memory, pos),
                    memory,
                    key_padding_mask=memory_key_padding_mask,
                    attn_mask=cross_attn_mask))
            return tgt + self.dropout3(self._ffn(self.norm3(tgt)))
        q = k = _with_pos(tgt, query_pos)
        tgt2 = self.self_attn(q, k, tgt)
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = self.multihead_attn(
            _with_pos(tgt, query_pos),
            _with_pos(memory, pos),
            memory,
            key_padding_mask=memory_key_padding_mask,
            attn_mask=cross_attn_mask)
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        return self.norm3(tgt + self.dropout3(self._ffn(tgt)))

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class ClipTransformerEncoder(nn.Module):
    """Stack of :class:`ClipTransformerEncoderLayer`; as in DETR, a final
    norm only for pre-norm layers (post-norm layers end in one).

    Args:
        layer (ClipTransformerEncoderLayer): Layer to replicate.
        num_layers (int): Number of layers.
        with_cp (bool): Activation checkpointing: in training, keep only
            each layer's input and recompute the layer in the backward pass
            (less memory for the S = T*h*w tokens of a long clip, one more
            forward of the encoder). Defaults to False.
    """

    def __init__(self,
                 layer: ClipTransformerEncoderLayer,
                 num_layers: int,
                 with_cp: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = nn.LayerNorm(layer.norm1.normalized_shape) \
            if layer.pre_norm else None
        self.with_cp = with_cp

    def forward(self,
                src: Tensor,
                src_key_padding_mask: Optional[Tensor] = None,
                pos: Optional[Tensor] = None) -> Tensor:
        """Encode tokens; arguments as
        :meth:`ClipTransformerEncoderLayer.forward`.

        Returns:
            Tensor: Memory, shape (B, S, d).
        """
        src_key_padding_mask = _drop_empty_mask(src_key_padding_mask)
        for layer in self.layers:
            if self.with_cp and src.requires_grad:
                # Non-reentrant: also restores the RNG state, so dropout
                # draws the same masks when the layer is recomputed.
                src = cp.checkpoint(
                    layer, src, src_key_padding_mask, pos,
                    use_reentrant=False)
            else:
                src = layer(src, src_key_padding_mask, pos)
        return src if self.norm is None else self.norm(src)


class ClipTransformerDecoder(nn.Module):
    """Stack of :class:`ClipTransformerDecoderLayer` with a shared output
    norm applied to every returned layer output (as DETR).

    Args:
        layer (ClipTransformerDecoderLayer): Layer to replicate.
        num_layers (int): Number of layers.
        embed_dims (int): Model width d.
        return_intermediate (bool): Return every layer's output instead of
            only the last. Defaults to True.
    """

    def __init__(self,
                 layer: ClipTransformerDecoderLayer,
                 num_layers: int,
                 embed_dims: int,
                 return_intermediate: bool = True) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = nn.LayerNorm(embed_dims)
        self.return_intermediate = return_intermediate

    def forward(self,
                tgt: Tensor,
                memory: Tensor,
                memory_key_padding_mask: Optional[Tensor] = None,
                pos: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                attn_mask_fn: Optional[Callable[[Tensor], Tensor]] = None
                ) -> Tensor:
        """Decode; arguments as :meth:`ClipTransformerDecoderLayer.forward`.

        ``attn_mask_fn`` (optional) maps a layer's normed output (B, Q, d)
        to the next layer's ``cross_attn_mask`` (B, Q, S) (Mask2Former's
        masked attention); the first layer attends everywhere.

        Returns:
            Tensor: Normed layer outputs, shape (L, B, Q, d) with L the
            number of layers, or 1 without ``return_intermediate``.
        """
        memory_key_padding_mask = _drop_empty_mask(memory_key_padding_mask)
        outputs: List[Tensor] = []
        cross_attn_mask = None
        for i, layer in enumerate(self.layers):
            tgt = layer(tgt, memory, memory_key_padding_mask, pos, query_pos,
                        cross_attn_mask)
            normed = self.norm(tgt)
            if self.return_intermediate or i == len(self.layers) - 1:
                outputs.append(normed)
            if attn_mask_fn is not None and i < len(self.layers) - 1:
                cross_attn_mask = attn_mask_fn(normed)
        return torch.stack(outputs)


@MODELS.register_module()
class ClipTransformer(BaseModule):
    """DETR encoder-decoder transformer used by TT-SRN over a clip's tokens.

    The encoder attends over all ``S = T * h * w`` tokens of the clip; the
    decoder's queries (``Q = T * n``) start from zeros and carry their
    identity in ``query_pos``. Submodule names (``encoder.layers.{i}``,
    ``decoder.layers.{i}``, ``decoder.norm``) follow DETR.

    Args:
        embed_dims (int): Model width d. Defaults to 384.
        num_heads (int): Attention heads. Defaults to 8.
        num_encoder_layers (int): Encoder depth. Defaults to 6.
        num_decoder_layers (int): Decoder depth. Defaults to 6.
        feedforward_channels (int): FFN hidden width. Defaults to 2048.
        dropout (float): Dropout rate. Defaults to 0.1.
        act_cfg (dict): FFN activation config. Defaults to GELU.
        return_intermediate (bool): Return every decoder layer's output.
            Defaults to True.
        pre_norm (bool): Pre-norm layers (DETR's ``normalize_before``)
            instead of the paper's post-norm. Defaults to False.
        with_cp (bool): Activation checkpointing of the encoder layers
            (see :class:`ClipTransformerEncoder`); the result and gradients
            are the same. Defaults to False.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int = 384,
                 num_heads: int = 8,
                 num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6,
                 feedforward_channels: int = 2048,
                 dropout: float = 0.1,
                 act_cfg: ConfigType = dict(type='GELU'),
                 return_intermediate: bool = True,
                 pre_norm: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        layer_cfg = dict(
            embed_dims=embed_dims,
            num_heads=num_heads,
            feedforward_channels=feedforward_channels,
            act_cfg=act_cfg,
            dropout=dropout,
            pre_norm=pre_norm)
        self.encoder = ClipTransformerEncoder(
            ClipTransformerEncoderLayer(**layer_cfg),
            num_encoder_layers,
            with_cp=with_cp)
        self.decoder = ClipTransformerDecoder(
            ClipTransformerDecoderLayer(**layer_cfg),
            num_decoder_layers,
            embed_dims,
            return_intermediate=return_intermediate)

    def init_weights(self) -> None:
        """Xavier-uniform init of all matrices (DETR), then ``init_cfg``."""
        for param in self.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
        super().init_weights()

    def encode(self, src: Tensor, src_key_padding_mask: Optional[Tensor],
               pos: Tensor) -> Tensor:
        """Encode the clip tokens (B, S, d) into the memory (B, S, d)."""
        return self.encoder(src, src_key_padding_mask, pos)

    def decode(self,
               memory: Tensor,
               src_key_padding_mask: Optional[Tensor],
               pos: Tensor,
               query_pos: Tensor,
               tgt: Optional[Tensor] = None,
               attn_mask_fn: Optional[Callable[[Tensor], Tensor]] = None
               ) -> Tensor:
        """Decode the queries against the memory; arguments as
        :meth:`forward` and :meth:`ClipTransformerDecoder.forward`.

        Returns:
            Tensor: Normed decoder outputs, shape (L, B, Q, d).
        """
        if tgt is None:
            tgt = torch.zeros_like(query_pos)
        return self.decoder(tgt, memory, src_key_padding_mask, pos,
                            query_pos, attn_mask_fn)

    def forward(self,
                src: Tensor,
                src_key_padding_mask: Optional[Tensor],
                pos: Tensor,
                query_pos: Tensor,
                tgt: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Encode the clip tokens and decode the queries.

        Args:
            src (Tensor): Clip tokens, shape (B, S, d).
            src_key_padding_mask (Tensor, optional): (B, S) bool,
                True = padded token.
            pos (Tensor): Token positional embeddings, shape (B, S, d).
            query_pos (Tensor): Query embeddings, shape (B, Q, d).
            tgt (Tensor, optional): Initial query content, shape (B, Q, d);
                zeros (DETR) when None.

        Returns:
            tuple[Tensor, Tensor]:

            - hs (Tensor): Normed decoder outputs, shape (L, B, Q, d).
            - memory (Tensor): Encoder output, shape (B, S, d).
        """
        memory = self.encode(src, src_key_padding_mask, pos)
        hs = self.decode(memory, src_key_padding_mask, pos, query_pos, tgt)
        return hs, memory
