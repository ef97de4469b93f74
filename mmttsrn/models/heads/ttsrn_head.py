"""The TT-SRN head: clip transformer, SRN heads, mask head and losses."""
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmcv.ops import point_sample
from mmdet.models.utils import get_uncertain_point_coords_with_randomness
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import TrackSampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig, reduce_mean
from mmengine.model import BaseModule
from torch import Tensor

__all__ = ['TTSRNHead']


@MODELS.register_module()
class TTSRNHead(BaseModule):
    """Spatio-temporal transformer head of TT-SRN.

    One clip of ``num_frames`` (T) frames goes through: a 1x1 input projection
    of the stride-32 features, the 3-D sine positional encoding, the encoder
    over all ``T*h*w`` tokens, the decoder with ``T*n`` learned queries (query
    ``t*n+j`` is instance slot ``j`` in frame ``t``), the SRN class and box
    heads on every decoder layer, and the instance sequence mask head on the
    last one.

    Args:
        num_classes (int): Number of categories K (no-object is index K).
        num_frames (int): Frames per clip T.
        num_queries (int): Instance slots per frame n.
        in_channels (Sequence[int]): Backbone channels at strides 4, 8, 16,
            32.
        embed_dims (int): Transformer width d.
        positional_encoding (dict): 3-D sine encoding config.
        transformer (dict): Clip transformer config.
        cls_head (dict): Class head config (``out_channels`` is set to K+1).
        reg_head (dict): Box head config (``out_channels`` is set to 4).
        mask_head (dict): Sequence mask head config (widths are filled in).
        query_content (bool): Give each query a learned content vector as
            the decoder's initial target (Mask2Former-style) instead of
            DETR's zeros. Off in the paper; it breaks the symmetry between
            slots early, which a model trained from scratch needs.
        mask_pooling (bool): Add to the last decoder layer's embeddings, before
            its class and box heads, the stride-4 backbone features averaged
            under each slot's predicted mask (Mask2Former reads its classes
            from mask-attended features in the same way). Off in the paper.
            Trained from scratch, DETR's cross-attention stays near uniform
            for thousands of iterations, so the class of a slot cannot see
            its own instance; the mask head learns much sooner, and pooling
            under its masks gives the class head that instance's features.
        masked_attention (bool): Mask2Former's masked attention: every
            decoder layer after the first predicts each slot's masks from its
            output (the mask head's ``pixel_embed`` term, which must be on),
            and the next layer's cross-attention of that slot's queries sees
            only the tokens under those masks, in every frame of the clip.
            The masks of the layers before the last are supervised too.
            Trained from scratch, the paper's cross-attention stays near
            uniform, so no slot sees its own instance; restricted to the
            slot's mask it does from the first iterations. Off in the paper.
        mask_shape_encoder (dict, optional): A :class:`MaskShapeEncoder`
            config (``out_channels`` is set to ``embed_dims``): adds an
            embedding of each slot's predicted mask silhouette to the last
            layer's embeddings, so that the class head can tell categories
            apart by their outline. Off in the paper.
        mask_upsample (dict, optional): A :class:`ConvexUpsample` config
            (``in_channels`` is filled in): the last layer's masks are
            up-sampled from stride 4 to the input size with weights guided
            by the stride-4 backbone features, and the mask losses and
            predictions use them. Off in the paper (bilinear up-sampling).
        input_proj_norm (dict, optional): Norm after the 1x1 input
            projection (the paper has none). A GroupNorm keeps the scale of
            a backbone trained from scratch next to the positional encoding.
        loss_cls (dict): Class loss over K+1 classes. As in mmdet's DETR, a
            ``bg_cls_weight`` key gives the no-object weight and
            ``class_weight`` (a number) the weight of every category, so the
            K+1 weights follow ``num_classes``.
        loss_bbox, loss_iou, loss_mask, loss_dice (dict): Losses.
        train_cfg (dict): ``matcher``: the instance sequence matcher config;
            ``share_matching`` (bool, default False): supervise every decoder
            layer with the last layer's assignment (matched on its masks
            when the matcher has mask costs) instead of matching each layer
            on its own boxes, as the paper does. ``num_points`` (int,
            default None: dense mask losses at the input size),
            ``oversample_ratio`` (default 3.0) and
            ``importance_sample_ratio`` (default 0.75): Mask2Former's
            point-sampled mask and dice losses, on that many points per
            matched instance-frame, mostly where the logits are uncertain
            (a change of the loss, off in the paper).
            ``matched_masks_only`` (bool, default True): in training, run the
            mask head only on the matched slots where that is exact (see
            :attr:`masks_after_matching`).
    """

    def __init__(self,
                 num_classes: int,
                 num_frames: int,
                 num_queries: int,
                 in_channels: Sequence[int],
                 embed_dims: int = 384,
                 positional_encoding: ConfigType = dict(
                     type='SpatioTemporalSineEncoding', normalize=True),
                 transformer: ConfigType = dict(type='ClipTransformer'),
                 cls_head: ConfigType = dict(
                     type='SRNHead', siren_channels=(128, ),
                     hidden_channels=64),
                 reg_head: ConfigType = dict(
                     type='SRNHead', siren_channels=(128, 64),
                     hidden_channels=32),
                 mask_head: ConfigType = dict(type='SequenceMaskHead'),
                 query_content: bool = False,
                 mask_pooling: bool = False,
                 masked_attention: bool = False,
                 mask_shape_encoder: OptConfigType = None,
                 mask_upsample: OptConfigType = None,
                 input_proj_norm: OptConfigType = None,
                 loss_cls: ConfigType = dict(
                     type='CrossEntropyLoss', use_sigmoid=False,
                     bg_cls_weight=0.1, loss_weight=1.0),
                 loss_bbox: ConfigType = dict(type='L1Loss', loss_weight=5.0),
                 loss_iou: ConfigType = dict(
                     type='GIoULoss', loss_weight=2.0),
                 loss_mask: ConfigType = dict(
                     type='FocalLoss', use_sigmoid=True, gamma=2.0,
                     alpha=0.25, loss_weight=1.0),
                 loss_dice: ConfigType = dict(
                     type='DiceLoss', use_sigmoid=True, activate=True,
                     naive_dice=True, eps=1.0, loss_weight=1.0),
                 train_cfg: OptConfigType = dict(
                     matcher=dict(type='InstanceSequenceMatcher')),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) != 4:
            raise ValueError('TTSRNHead needs backbone features at strides '
                             f'4, 8, 16 and 32, got in_channels={in_channels}')
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.num_queries = num_queries
        self.embed_dims = embed_dims
        # A copy: the default is shared by every head.
        self.train_cfg = dict(train_cfg or {})
        # Built in this order, which fixes the random initialisation.
        self._build_input(in_channels[-1], input_proj_norm,
                          positional_encoding)
        self.transformer = MODELS.build(
            dict(embed_dims=embed_dims, **transformer))
        self._build_queries(query_content)
        self._build_readouts(in_channels[0], mask_pooling, mask_shape_encoder,
                             mask_upsample)
        self._build_heads(in_channels, cls_head, reg_head, mask_head,
                          masked_attention)
        self.matcher = TASK_UTILS.build(self.train_cfg.get(
            'matcher', dict(type='InstanceSequenceMatcher')))
        self.share_matching = self.train_cfg.get('share_matching', False)
        self.loss_cls = MODELS.build(self._class_weighted(loss_cls))
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_iou = MODELS.build(loss_iou)
        self.loss_mask = MODELS.build(loss_mask)
        self.loss_dice = MODELS.build(loss_dice)

    def _build_input(self, in_channels: int, norm_cfg: OptConfigType,
                     positional_encoding: ConfigType) -> None:
        """The 1x1 projection of the stride-32 features and the 3-D sine
        positional encoding, both ``embed_dims`` wide."""
        d = self.embed_dims
        self.input_proj = ConvModule(
            in_channels, d, 1, norm_cfg=norm_cfg, act_cfg=None)
        # d/3 channels per t, y, x axis unless the config splits d itself.
        positional_encoding = dict(positional_encoding)
        positional_encoding.setdefault('num_feats', d // 3)
        self.positional_encoding = MODELS.build(positional_encoding)
        if self.positional_encoding.embed_dims != d:
            raise ValueError(
                'the positional encoding gives '
                f'{self.positional_encoding.embed_dims} channels but '
                f'embed_dims is {d}; set positional_encoding.'
                'num_feats so that the t, y, x parts sum to embed_dims')

    def _build_queries(self, query_content: bool) -> None:
        """``T*n`` learned query positions and, with ``query_content``, as
        many content vectors."""
        num = self.num_frames * self.num_queries
        self.query_embed = nn.Embedding(num, self.embed_dims)
        self.query_feat = nn.Embedding(num, self.embed_dims) \
            if query_content else None

    def _build_readouts(self, in_channels: int, mask_pooling: bool,
                        mask_shape_encoder: OptConfigType,
                        mask_upsample: OptConfigType) -> None:
        """What the last layer reads from its masks (pooled stride-4
        features ``in_channels`` wide, the silhouettes) and the mask
        up-sampling; each None when off."""
        d = self.embed_dims
        self.mask_pool_proj = nn.Linear(in_channels, d) \
            if mask_pooling else None
        self.mask_shape_encoder = MODELS.build(
            dict(out_channels=d, **mask_shape_encoder)) \
            if mask_shape_encoder else None
        self.mask_upsample = MODELS.build(
            dict(in_channels=in_channels, **mask_upsample)) \
            if mask_upsample else None

    def _build_heads(self, in_channels: Sequence[int], cls_head: ConfigType,
                     reg_head: ConfigType, mask_head: ConfigType,
                     masked_attention: bool) -> None:
        """The SRN class and box heads and the sequence mask head."""
        d = self.embed_dims
        self.cls_head = MODELS.build(
            dict(in_channels=d, out_channels=self.num_classes + 1,
                 **cls_head))
        self.reg_head = MODELS.build(
            dict(in_channels=d, out_channels=4, **reg_head))
        # The mask head fuses the strides 16, 8 and 4 features, coarse first.
        self.mask_head = MODELS.build(
            dict(embed_dims=d, fpn_channels=tuple(in_channels[2::-1]),
                 **mask_head))
        if masked_attention and \
                getattr(self.mask_head, 'pixel_embed', None) is None:
            raise ValueError('masked_attention needs per-layer masks: set '
                             'mask_head.pixel_embed=True')
        self.masked_attention = masked_attention

    def _class_weighted(self, loss_cls: ConfigType) -> dict:
        """``loss_cls`` with its K+1 class weights built from
        ``bg_cls_weight`` (mmdet's DETR convention)."""
        loss_cls = dict(loss_cls)
        bg_cls_weight = loss_cls.pop('bg_cls_weight', None)
        class_weight = loss_cls.get('class_weight', None)
        if bg_cls_weight is not None:
            fg_weight = 1.0 if class_weight is None else class_weight
            if not isinstance(fg_weight, (int, float)):
                raise ValueError(
                    'loss_cls: with bg_cls_weight, class_weight must be one '
                    f'number (the weight of every category), got '
                    f'{class_weight}')
            loss_cls['class_weight'] = [float(fg_weight)] * \
                self.num_classes + [float(bg_cls_weight)]
        elif class_weight is not None and \
                len(class_weight) != self.num_classes + 1:
            raise ValueError(
                f'loss_cls.class_weight has {len(class_weight)} entries but '
                f'num_classes={self.num_classes} needs {self.num_classes + 1}'
                ' (the last one is no-object); set bg_cls_weight instead so '
                'that the weights follow num_classes')
        return loss_cls

    # ------------------------------------------------------------------ #
    # forward
    # ------------------------------------------------------------------ #
    def forward(self, feats: Sequence[Tensor],
                pad_mask: Tensor) -> Dict[str, Tensor]:
        """Run one batch of clips.

        Args:
            feats (Sequence[Tensor]): Backbone features at strides 4, 8, 16,
                32, each (B*T, C_i, H_i, W_i).
            pad_mask (Tensor): (B, T, H, W) bool, True on padded pixels of the
                network input.

        Returns:
            dict: ``cls_scores`` (L, B, n, T, K+1) logits for every decoder
            layer, ``bbox_preds`` (L, B, n, T, 4) normalised (cx, cy, w, h),
            ``mask_preds`` (B, n, T, H4, W4) mask logits at stride 4 (at
            the input size with ``mask_upsample``) and,
            with ``masked_attention``, ``aux_mask_preds`` (L-1, B, n, T, H4,
            W4) the masks of the layers before the last.
        """
        state = self._decode(feats, pad_mask)
        hs = state.pop('hs')
        mask_preds, fine_masks = self._masks(hs[-1], feats, state)
        # The masks are the last layer's, so only its slots read them.
        readouts = []
        if self.mask_pool_proj is not None:
            readouts.append(
                self.mask_pool_proj(self._mask_pool(mask_preds, feats[0])))
        if self.mask_shape_encoder is not None:
            readouts.append(self.mask_shape_encoder(fine_masks))
        if readouts:
            hs = torch.cat([hs[:-1], (hs[-1] + sum(readouts))[None]])
        outs = dict(
            cls_scores=self.cls_head(hs),
            bbox_preds=self.reg_head(hs).sigmoid(),
            mask_preds=fine_masks)
        if state['aux_mask_preds']:
            outs['aux_mask_preds'] = torch.stack(state['aux_mask_preds'])
        return outs

    def _decode(self, feats: Sequence[Tensor], pad_mask: Tensor) -> dict:
        """Encoder and decoder; arguments as :meth:`forward`.

        Returns:
            dict: ``hs`` (L, B, n, T, d) every decoder layer's embeddings,
            ``memory`` (B, T, d, h, w) and its padding ``mask`` (B, T, h,
            w), the mask head's ``pixels`` (None without masked attention)
            and ``aux_mask_preds``, the list of the layers' masks before the
            last (masked attention only).
        """
        B, T = pad_mask.shape[:2]
        n, d = self.num_queries, self.embed_dims
        if T != self.num_frames:
            raise ValueError('The head is built for clips of '
                             f'{self.num_frames}'
                             f' frames, got {T}; the model pads or windows '
                             'videos to that length')
        src = self.input_proj(feats[-1])
        h, w = src.shape[-2:]
        mask = F.interpolate(
            pad_mask.flatten(0, 1)[:, None].float(), size=(h, w))
        mask = mask.to(torch.bool).view(B, T, h, w)
        pos = self.positional_encoding(mask)  # (B, T, d, h, w)

        # Tokens ordered (t, y, x): the encoder sees the whole clip at once.
        src = src.view(B, T, d, h, w)
        tokens = src.permute(0, 1, 3, 4, 2).reshape(B, T * h * w, d)
        pos = pos.permute(0, 1, 3, 4, 2).reshape(B, T * h * w, d)
        query_pos = self.query_embed.weight[None].expand(B, -1, -1)
        tgt = None if self.query_feat is None else \
            self.query_feat.weight[None].expand(B, -1, -1)
        token_mask = mask.view(B, -1)
        memory_tokens = self.transformer.encode(tokens, token_mask, pos)
        memory = memory_tokens.view(B, T, h, w, d).permute(0, 1, 4, 2, 3)
        pixels = attn_mask_fn = None
        aux_mask_preds: List[Tensor] = []
        if self.masked_attention:
            pixels = self.mask_head.pixel_embeddings(memory, feats[0])
            attn_mask_fn = partial(
                self._layer_attn_mask, pixels=pixels, token_mask=token_mask,
                size=(h, w), aux_mask_preds=aux_mask_preds)
        hs = self.transformer.decode(memory_tokens, token_mask, pos,
                                     query_pos, tgt, attn_mask_fn)
        # (L, B, T*n, d) -> (L, B, n, T, d): instance j's sequence is slot j
        # in every frame.
        hs = hs.view(hs.shape[0], B, T, n, d).transpose(2, 3)
        return dict(
            hs=hs,
            memory=memory,
            mask=mask,
            pixels=pixels,
            aux_mask_preds=aux_mask_preds)

    def _masks(self, query: Tensor, feats: Sequence[Tensor],
               state: dict) -> Tuple[Tensor, Tensor]:
        """Mask logits of the slots whose last-layer embeddings are given
        (each slot's masks depend on its own embeddings only).

        Args:
            query (Tensor): (B, k, T, d) for k of the slots.
            feats (Sequence[Tensor]): The backbone features.
            state (dict): As :meth:`_decode` returns it (``memory``,
                ``mask`` and ``pixels`` are read).

        Returns:
            tuple[Tensor, Tensor]: (B, k, T, H4, W4) logits at stride 4, and
            the same up-sampled to the input size with ``mask_upsample``
            (else the stride-4 ones again).
        """
        mask_preds = self.mask_head(query.transpose(1, 2), state['memory'],
                                    state['mask'],
                                    [feats[2], feats[1], feats[0]],
                                    state['pixels'])
        fine_masks = mask_preds if self.mask_upsample is None else \
            self.mask_upsample(mask_preds, feats[0])
        return mask_preds, fine_masks

    def _layer_attn_mask(self, layer_out: Tensor, pixels: Tensor,
                         token_mask: Tensor, size: Tuple[int, int],
                         aux_mask_preds: List[Tensor]) -> Tensor:
        """A decoder layer's masks (appended to ``aux_mask_preds``) and the
        next layer's cross-attention mask.

        Args:
            layer_out (Tensor): Normed layer output (B, T*n, d).
            pixels (Tensor): Pixel embeddings (B, T, d, H4, W4).
        """
        B, T = pixels.shape[:2]
        logits = self.mask_head.dot_product_logits(
            layer_out.view(B, T, self.num_queries, -1), pixels)
        aux_mask_preds.append(logits)
        return self._cross_attn_mask(logits, token_mask, size)

    @staticmethod
    def _cross_attn_mask(mask_logits: Tensor, token_mask: Tensor,
                         size: Tuple[int, int]) -> Tensor:
        """Masked attention: each slot's queries see only the tokens under
        the slot's predicted masks, in every frame.

        Args:
            mask_logits (Tensor): (B, n, T, H4, W4).
            token_mask (Tensor): (B, S) bool, True at padded tokens, with
                S = T*h*w.
            size (tuple[int, int]): The token grid (h, w).

        Returns:
            Tensor: (B, T*n, S) bool, True = not attended. A slot with an
            empty mask attends to every token (as Mask2Former).
        """
        B, n, T = mask_logits.shape[:3]
        S = token_mask.shape[1]
        small = F.interpolate(
            mask_logits.detach().flatten(0, 2)[:, None].float(), size=size,
            mode='bilinear', align_corners=False)
        blocked = (small.sigmoid() < 0.5).view(B, n, S) | token_mask[:, None]
        blocked = torch.where(
            blocked.all(-1, keepdim=True), token_mask[:, None], blocked)
        # Query t*n+j belongs to slot j.
        return blocked[:, None].expand(B, T, n, S).reshape(B, T * n, S)

    @staticmethod
    def _mask_pool(mask_preds: Tensor, feat: Tensor) -> Tensor:
        """Average ``feat`` under each slot's soft mask.

        Args:
            mask_preds (Tensor): Mask logits (B, n, T, H4, W4).
            feat (Tensor): Stride-4 features (B*T, C, H4, W4).

        Returns:
            Tensor: (B, n, T, C).
        """
        B, n, T = mask_preds.shape[:3]
        weights = mask_preds.sigmoid()
        feat = feat.view(B, T, *feat.shape[1:])
        pooled = torch.einsum('bnthw,btchw->bntc', weights, feat)
        area = weights.sum((-2, -1))[..., None]
        return pooled / area.clamp(min=1.0)

    def predict(self, feats: Sequence[Tensor],
                pad_mask: Tensor) -> List[Dict[str, Tensor]]:
        """Forward, then :meth:`predict_by_feat`; arguments as
        :meth:`forward`."""
        return self.predict_by_feat(**self(feats, pad_mask))

    def predict_by_feat(self, cls_scores: Tensor, bbox_preds: Tensor,
                        mask_preds: Tensor,
                        **kwargs) -> List[Dict[str, Tensor]]:
        """The last layer's outputs of each clip as probabilities.

        Args:
            cls_scores, bbox_preds, mask_preds (Tensor): As returned by
                :meth:`forward`; other outputs are ignored.

        Returns:
            list[dict]: One per clip: ``cls_probs`` (n, T, K) (no-object
            left out), ``bboxes`` (n, T, 4) normalised (cx, cy, w, h) and
            ``mask_probs`` (n, T, H4, W4).
        """
        cls_probs = cls_scores[-1].softmax(-1)[..., :-1]
        mask_probs = mask_preds.sigmoid()
        return [
            dict(cls_probs=c, bboxes=b, mask_probs=m)
            for c, b, m in zip(cls_probs, bbox_preds[-1], mask_probs)
        ]

    # ------------------------------------------------------------------ #
    # training
    # ------------------------------------------------------------------ #
    def get_targets(self, data_samples: TrackSampleList,
                    device: torch.device) -> List[Dict[str, Tensor]]:
        """Align each video's gt instances across its frames by instance id.

        Returns:
            list[dict]: one per video: ``labels`` (m,), ``bboxes`` (m, T, 4)
            normalised (cx, cy, w, h), ``valid`` (m, T) bool (False where the
            instance is absent) and ``masks`` (m, T, H, W) bool at the padded
            input size.
        """
        targets = []
        for track_sample in data_samples:
            frames = track_sample.video_data_samples
            T = len(frames)
            gts = [f.gt_instances for f in frames]
            pad_h, pad_w = frames[0].batch_input_shape
            num_per_frame = torch.tensor([len(g) for g in gts], device=device)
            frame_inds = torch.repeat_interleave(
                torch.arange(T, device=device), num_per_frame)
            ids = torch.cat([g.instances_ids.to(device) for g in gts])
            uids, inv = torch.unique(ids, return_inverse=True)
            m = len(uids)
            labels = torch.zeros(m, dtype=torch.long, device=device)
            labels[inv] = torch.cat([g.labels.to(device) for g in gts])
            if m and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(
                    f'video {frames[0].metainfo.get("video_id")} has gt '
                    f'labels {sorted(set(labels.tolist()))} but the head has '
                    f'num_classes={self.num_classes} (labels 0..'
                    f'{self.num_classes - 1}; {self.num_classes} is '
                    'no-object): set num_classes to the dataset\'s number '
                    'of categories')
            # Boxes are normalised by each frame's unpadded size.
            sizes = torch.tensor(
                [f.img_shape[::-1] for f in frames], device=device,
                dtype=torch.float32).repeat(1, 2)  # (T, 4) as (w, h, w, h)
            boxes = torch.cat([g.bboxes.to(device) for g in gts]).float()
            boxes = bbox_xyxy_to_cxcywh(boxes) / sizes[frame_inds]
            bboxes = boxes.new_zeros(m, T, 4)
            bboxes[inv, frame_inds] = boxes
            valid = torch.zeros(m, T, dtype=torch.bool, device=device)
            valid[inv, frame_inds] = True
            masks = torch.zeros(
                m, T, pad_h, pad_w, dtype=torch.bool, device=device)
            if m:
                masks[inv, frame_inds] = torch.cat([
                    g.masks.to_tensor(torch.bool, device) for g in gts
                    if len(g)
                ])
            targets.append(
                dict(labels=labels, bboxes=bboxes, valid=valid, masks=masks))
        return targets

    @property
    def masks_after_matching(self) -> bool:
        """Whether training runs the mask head only on the matched slots of
        the last layer (``train_cfg.matched_masks_only``, default True).

        Exact, since the masks of the other slots enter no loss; used only
        where no other slot reads them: the matcher has no mask costs and
        neither ``mask_pooling`` nor ``mask_shape_encoder`` is on.
        """
        return (self.train_cfg.get('matched_masks_only', True)
                and not getattr(self.matcher, 'uses_masks', False)
                and self.mask_pool_proj is None
                and self.mask_shape_encoder is None)

    def loss(self, feats: Sequence[Tensor], pad_mask: Tensor,
             data_samples: TrackSampleList) -> Dict[str, Tensor]:
        """Forward and compute the set losses of a batch of clips."""
        targets = self.get_targets(data_samples, pad_mask.device)
        if not self.masks_after_matching:
            return self.loss_by_feat(
                targets=targets, **self(feats, pad_mask))
        state = self._decode(feats, pad_mask)
        hs = state.pop('hs')
        cls_scores = self.cls_head(hs)
        bbox_preds = self.reg_head(hs).sigmoid()
        last_matches = self._match_last(cls_scores[-1], bbox_preds[-1], None,
                                        targets)
        slots, mask_slot_inds = self._matched_slots(last_matches, targets)
        query = hs[-1].gather(
            1, slots[..., None, None].expand(-1, -1, *hs.shape[-2:]))
        _, mask_preds = self._masks(query, feats, state)
        aux = state['aux_mask_preds']
        return self.loss_by_feat(
            cls_scores,
            bbox_preds,
            mask_preds,
            targets,
            torch.stack(aux) if aux else None,
            last_matches=last_matches,
            mask_slot_inds=mask_slot_inds)

    def _matched_slots(
            self, matches: List[Tuple[Tensor, Tensor]],
            targets: List[Dict[str, Tensor]]) -> Tuple[Tensor, Tensor]:
        """The matched slots of each video, padded to one count k.

        Returns:
            tuple[Tensor, Tensor]: ``slots`` (B, k) the slot indices to run
            the mask head on (video b's matched slots first, then its slot
            0 again as padding; k >= 1) and ``mask_slot_inds`` (B, n) the
            position of each slot in ``slots`` (0 for unmatched slots).
        """
        # min(n, m) matches per video: known from the shapes, no host read.
        k = max([1] + [min(self.num_queries, len(t['labels']))
                       for t in targets])
        slots = torch.stack(
            [torch.cat([p, p.new_zeros(k - len(p))]) for p, _ in matches])
        mask_slot_inds = slots.new_zeros(len(matches), self.num_queries)
        videos = torch.cat(
            [torch.full_like(p, b) for b, (p, _) in enumerate(matches)])
        mask_slot_inds[videos, torch.cat([p for p, _ in matches])] = \
            torch.cat([torch.arange(len(p), device=p.device)
                       for p, _ in matches])
        return slots, mask_slot_inds

    def _match_last(self, cls_scores: Tensor, bbox_preds: Tensor,
                    mask_preds: Optional[Tensor],
                    targets: List[Dict[str, Tensor]]) -> list:
        """Match the last layer of each video (on its masks too where the
        matcher has mask costs) and keep the result for
        :class:`CollapseMonitorHook`."""
        uses_masks = getattr(self.matcher, 'uses_masks', False)
        if mask_preds is None or not uses_masks:
            mask_preds = [None] * len(targets)
        matches = [
            self.matcher.match(c, b, t['labels'], t['bboxes'], t['valid'], mp,
                               None if mp is None else t['masks'])
            for c, b, mp, t in zip(cls_scores, bbox_preds, mask_preds, targets)
        ]
        self.last_matches = [(p.detach(), g.detach()) for p, g in matches]
        return matches

    def loss_by_feat(
            self,
            cls_scores: Tensor,
            bbox_preds: Tensor,
            mask_preds: Tensor,
            targets: List[Dict[str, Tensor]],
            aux_mask_preds: Optional[Tensor] = None,
            last_matches: Optional[list] = None,
            mask_slot_inds: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Set losses of every decoder layer; masks on the last one, and on
        the others where ``aux_mask_preds`` (L-1, B, n, T, H4, W4) are given.

        The normaliser is the number of gt instance-frames in the batch,
        averaged over processes. Everything that does not depend on the
        layer (the present gt instance-frames, their boxes and masks, the
        normaliser) is gathered once, so that the layer loop reads nothing
        back from the device but what the matcher needs.

        ``last_matches`` gives the last layer's assignment when it is known
        already; then ``mask_preds`` may hold only some slots (B, k, T, H,
        W), and ``mask_slot_inds`` (B, n) the position of each slot's masks
        in it (see :meth:`loss`).
        """
        gt_frames = self._gt_frames(targets)
        # float32 also under autocast (bf16 rounds a count of 257 to 256).
        avg_factor = reduce_mean(
            torch.tensor(
                float(len(gt_frames['frame'])),
                dtype=torch.float32,
                device=cls_scores.device)).clamp(min=1)

        num_layers = cls_scores.shape[0]
        last = num_layers - 1
        if last_matches is None:
            # Only the last layer has masks to match on.
            last_matches = self._match_last(cls_scores[last],
                                            bbox_preds[last], mask_preds,
                                            targets)
        losses = dict()
        for layer in range(num_layers):
            if layer == last or self.share_matching:
                matches = last_matches
            else:
                matches = [
                    self.matcher.match(c, b, t['labels'], t['bboxes'],
                                       t['valid'])
                    for c, b, t in zip(cls_scores[layer], bbox_preds[layer],
                                       targets)
                ]
            if layer == last:
                layer_masks = mask_preds
            else:
                layer_masks = None if aux_mask_preds is None else \
                    aux_mask_preds[layer]
            layer_losses = self._loss_layer(
                cls_scores[layer], bbox_preds[layer], layer_masks, targets,
                matches, avg_factor, gt_frames,
                mask_slot_inds if layer == last else None)
            prefix = '' if layer == last else f'd{layer}.'
            losses.update(
                {prefix + k: v
                 for k, v in layer_losses.items()})
        return losses

    @staticmethod
    def _gt_frames(targets: List[Dict[str, Tensor]]) -> dict:
        """The frames where each gt instance of the batch is present.

        Gt instances are numbered across the batch (video 0's first, then
        video 1's, ...). This reads the presence flags back from the device
        once per batch.

        Returns:
            dict: For the P present (instance, frame) pairs, in order of
            instance then frame: ``video``, ``gt`` (batch-wide instance
            index) and ``frame``, each (P,) long; ``bboxes`` (P, 4) and
            ``masks`` (P, H, W) bool, their targets. ``num_gts`` (list[int])
            gives the instances of each video.
        """
        device = targets[0]['valid'].device
        num_gts = [len(t['labels']) for t in targets]
        valid = torch.cat([t['valid'] for t in targets])  # (M, T)
        gt, frame = valid.nonzero(as_tuple=True)
        video = torch.repeat_interleave(
            torch.arange(len(targets), device=device),
            torch.tensor(num_gts, device=device),
            output_size=sum(num_gts))[gt]
        return dict(
            video=video,
            gt=gt,
            frame=frame,
            bboxes=torch.cat([t['bboxes'] for t in targets])[gt, frame],
            masks=torch.cat([t['masks'] for t in targets])[gt, frame],
            num_gts=num_gts)

    def _loss_layer(self, cls_scores: Tensor, bbox_preds: Tensor,
                    mask_preds: Optional[Tensor],
                    targets: List[Dict[str, Tensor]],
                    matches: List[Tuple[Tensor, Tensor]], avg_factor: Tensor,
                    gt_frames: dict,
                    mask_slot_inds: Optional[Tensor] = None
                    ) -> Dict[str, Tensor]:
        """Losses of one decoder layer.

        Args:
            cls_scores (Tensor): (B, n, T, K+1).
            bbox_preds (Tensor): (B, n, T, 4).
            mask_preds (Tensor | None): (B, n, T, H4, W4) mask logits (or
                at the input size), for the layers that have masks.
            targets (list[dict]): As :meth:`get_targets` returns.
            matches (list[tuple[Tensor, Tensor]]): Per video the matched
                (slot, gt instance) indices.
            avg_factor (Tensor): The normaliser, a float32 scalar.
            gt_frames (dict): As :meth:`_gt_frames` returns.
            mask_slot_inds (Tensor | None): (B, n) where each slot's masks
                are in ``mask_preds`` when it holds only some slots.
        """
        B, n, T = cls_scores.shape[:3]
        device = cls_scores.device
        # Losses in float32, whatever the autocast dtype of the outputs.
        cls_scores, bbox_preds = cls_scores.float(), bbox_preds.float()
        # Matched (video, slot) pairs and their gt sequences, batched.
        batch_inds = torch.cat([
            torch.full_like(p, b) for b, (p, _) in enumerate(matches)
        ]).to(device)
        slot_inds = torch.cat([p for p, _ in matches]).to(device)
        gt_labels = torch.cat(
            [t['labels'][g] for t, (_, g) in zip(targets, matches)])
        gt_valid = torch.cat(
            [t['valid'][g] for t, (_, g) in zip(targets, matches)])

        # Every (slot, frame) is "no object" unless a matched gt is present.
        labels = torch.full((B, n, T),
                            self.num_classes,
                            dtype=torch.long,
                            device=device)
        labels[batch_inds, slot_inds] = torch.where(
            gt_valid, gt_labels[:, None], self.num_classes)
        class_weight = getattr(self.loss_cls, 'class_weight', None)
        if class_weight is not None:
            class_weight = torch.as_tensor(
                class_weight, dtype=torch.float32, device=device)
        cls_avg = (class_weight[labels].sum() if class_weight is not None
                   else labels.new_tensor(labels.numel()).float())
        losses = dict(
            loss_cls=self.loss_cls(
                cls_scores.flatten(0, 2), labels.flatten(),
                avg_factor=cls_avg.clamp(min=1)))

        # The slot of every present gt instance-frame; -1 where the gt is
        # not matched, which only happens to a video with more gt instances
        # than slots (the matcher matches min(n, m) of them).
        offsets = [0]
        for num in gt_frames['num_gts'][:-1]:
            offsets.append(offsets[-1] + num)
        slot_of_gt = slot_inds.new_full((sum(gt_frames['num_gts']), ), -1)
        slot_of_gt[torch.cat(
            [g.to(device) + o
             for (_, g), o in zip(matches, offsets)])] = slot_inds
        slots = slot_of_gt[gt_frames['gt']]
        # Weights only when needed: mmdet's box losses test them on the host.
        weight = None
        if any(m > n for m in gt_frames['num_gts']):
            weight = (slots >= 0).float()
            slots = slots.clamp(min=0)
        pred_inds = (gt_frames['video'], slots, gt_frames['frame'])

        pred_boxes = bbox_preds[pred_inds]
        target_boxes = gt_frames['bboxes']
        losses['loss_bbox'] = self.loss_bbox(
            pred_boxes,
            target_boxes,
            None if weight is None else weight[:, None].expand(-1, 4),
            avg_factor=avg_factor)
        losses['loss_iou'] = self.loss_iou(
            bbox_cxcywh_to_xyxy(pred_boxes),
            bbox_cxcywh_to_xyxy(target_boxes),
            weight,
            avg_factor=avg_factor)

        if mask_preds is not None:
            if len(slots) == 0:
                # Keep the graph connected when the batch has no gt at all.
                zero = mask_preds.sum() * 0
                losses.update(loss_mask=zero, loss_dice=zero)
                return losses
            if mask_slot_inds is not None:
                video, _, frame = pred_inds
                pred_inds = (video, mask_slot_inds[video, slots], frame)
            losses.update(
                self._mask_losses(mask_preds[pred_inds].float(),
                                  gt_frames['masks'], weight, avg_factor))
        return losses

    def _mask_losses(self, pred_masks: Tensor, gt_masks: Tensor,
                     weight: Optional[Tensor],
                     avg_factor: Tensor) -> Dict[str, Tensor]:
        """Mask and dice losses of the matched instance-frames.

        Dense by default: the logits are up-sampled (bilinear) to the gt's
        padded input size. With ``train_cfg.num_points`` (Mask2Former's
        point-sampled loss, a change of the loss), both are read at that
        many points per instance-frame instead, chosen by
        :func:`get_uncertain_point_coords_with_randomness` from the logits.

        Args:
            pred_masks (Tensor): Logits (P, h, w), float32.
            gt_masks (Tensor): (P, H, W) bool at the padded input size.
            weight (Tensor | None): (P,) weights, None for all ones.
            avg_factor (Tensor): Number of gt instance-frames.

        Returns:
            dict: ``loss_mask`` and ``loss_dice``.
        """
        num_points = self.train_cfg.get('num_points')
        if num_points:
            with torch.no_grad():
                coords = get_uncertain_point_coords_with_randomness(
                    pred_masks[:, None], None, num_points,
                    self.train_cfg.get('oversample_ratio', 3.0),
                    self.train_cfg.get('importance_sample_ratio', 0.75))
                gt = point_sample(gt_masks[:, None].float(),
                                  coords).squeeze(1)  # (P, num_points)
            pred = point_sample(pred_masks[:, None], coords).squeeze(1)
        else:
            gt = gt_masks.flatten(1).float()
            pred = F.interpolate(
                pred_masks[:, None],
                size=gt_masks.shape[-2:],
                mode='bilinear',
                align_corners=False).flatten(1)
        return dict(
            loss_mask=self.loss_mask(
                pred, gt, weight, avg_factor=avg_factor * gt.shape[1]),
            loss_dice=self.loss_dice(
                pred, gt, weight, avg_factor=avg_factor))
