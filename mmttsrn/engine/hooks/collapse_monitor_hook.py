"""A hook that logs whether TT-SRN's head looks at its input."""
from collections import defaultdict, deque
from typing import Dict

import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..collapse_stats import attention_entropy, relative_spread, token_spread

__all__ = ['CollapseMonitorHook']


def _part(name: str) -> str:
    """Parameter name -> the model part its gradient norm is logged under."""
    parts = name.split('.')
    if parts[0] != 'track_head' or len(parts) < 3:
        return parts[0]
    if parts[1] == 'transformer':
        return parts[2]
    return parts[1]


@HOOKS.register_module()
class CollapseMonitorHook(Hook):
    """Log the signs of a head that has learnt only the dataset prior.

    Every ``interval`` training iterations it adds to the log (``diag/*``):

    - ``memory_token_spread``: how much the encoder memory differs between
      the tokens of a clip (0: every token carries the same vector);
    - ``memory_video_spread`` and ``query_video_spread``: how much the
      pooled memory and the last decoder layer's slot embeddings differ
      between the last ``num_clips`` training clips (0: the decoder gives
      the same output whatever the video);
    - ``cross_attn_entropy``: entropy of the last decoder layer's
      cross-attention, 1 for uniform attention;
    - ``match_change``: fraction of gt instances matched to another slot
      than the last time their video was seen, since the previous log;
    - ``grad_norm/<part>``: gradient norm of each part of the model, before
      clipping.

    A healthy run keeps the spreads well above 0 and sees the entropy and the
    match changes fall; see ``docs/training_diagnostics.md``.

    Args:
        interval (int): Iterations between two logs. Defaults to 50.
        num_clips (int): Clips the across-video spreads are computed over.
            Defaults to 8.
    """

    priority = 'BELOW_NORMAL'

    def __init__(self, interval: int = 50, num_clips: int = 8) -> None:
        if interval < 1 or num_clips < 2:
            raise ValueError('CollapseMonitorHook needs interval >= 1 and '
                             f'num_clips >= 2, got {interval}, {num_clips}')
        self.interval = interval
        self.pooled_memory = deque(maxlen=num_clips)
        self.slot_embeds = deque(maxlen=num_clips)
        self.last_slots: Dict[tuple, int] = {}
        self.num_changed = self.num_matched = 0
        self.stats: Dict[str, float] = {}
        self.grad_sq = defaultdict(float)
        self.recording = False

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        head = model.track_head
        self.head = head
        head.transformer.encoder.register_forward_hook(self._memory_hook)
        head.transformer.decoder.register_forward_hook(self._decoder_hook)
        head.transformer.decoder.layers[-1].multihead_attn.\
            register_forward_hook(self._attn_hook, with_kwargs=True)
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.register_post_accumulate_grad_hook(
                    self._grad_hook(_part(name)))

    def _memory_hook(self, module, inputs, memory) -> None:
        # (B, S, d) -> one pooled vector per clip.
        mask = inputs[1]
        keep = (~mask).float()[..., None] if mask is not None else \
            memory.new_ones(memory.shape[:2] + (1, ))
        pooled = (memory * keep).sum(1) / keep.sum(1).clamp(min=1)
        self.pooled_memory.extend(pooled.detach().float().cpu())
        if self.recording:
            self.stats['memory_token_spread'] = token_spread(memory, mask)

    def _decoder_hook(self, module, inputs, hs) -> None:
        # (L, B, T*n, d) -> the slots of the last layer, averaged over
        # frames: (B, n, d).
        num_slots = self.head.num_queries
        slots = hs[-1].unflatten(1, (-1, num_slots)).mean(1)
        self.slot_embeds.extend(slots.detach().float().cpu())

    def _attn_hook(self, module, args, kwargs, output) -> None:
        if self.recording:
            query, key = args[:2]
            ignore = kwargs.get('key_padding_mask')
            attn_mask = kwargs.get('attn_mask')
            if attn_mask is not None:
                ignore = attn_mask if ignore is None else \
                    ignore[:, None] | attn_mask
            self.stats['cross_attn_entropy'] = attention_entropy(
                query, key, module.in_proj_weight, module.in_proj_bias,
                module.num_heads, ignore)

    def _grad_hook(self, part: str):

        def hook(param) -> None:
            if self.recording and param.grad is not None:
                self.grad_sq[part] += float(param.grad.detach().float().pow(
                    2).sum())

        return hook

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self.recording = self.every_n_train_iters(runner, self.interval) or \
            runner.iter == 0
        self.stats.clear()
        self.grad_sq.clear()

    def _count_match_changes(self, data_batch) -> None:
        """Count the gt instances matched to another slot than the last time
        their video was seen."""
        matches = getattr(self.head, 'last_matches', None)
        if matches is None or data_batch is None:
            return
        for sample, (slots, gt_inds) in zip(data_batch['data_samples'],
                                            matches):
            frames = sample.video_data_samples
            video = frames[0].metainfo.get('video_id')
            ids = torch.unique(
                torch.cat([f.gt_instances.instances_ids for f in frames]))
            for slot, gt in zip(slots.tolist(), gt_inds.tolist()):
                key = (video, int(ids[gt]))
                if key in self.last_slots:
                    self.num_matched += 1
                    self.num_changed += int(self.last_slots[key] != slot)
                self.last_slots[key] = slot

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        self._count_match_changes(data_batch)
        if not self.recording:
            return
        if self.num_matched:
            self.stats['match_change'] = self.num_changed / self.num_matched
            self.num_changed = self.num_matched = 0
        self.stats['memory_video_spread'] = relative_spread(
            torch.stack(list(self.pooled_memory)))
        self.stats['query_video_spread'] = relative_spread(
            torch.stack(list(self.slot_embeds)))
        for key, value in self.stats.items():
            runner.message_hub.update_scalar(f'train/diag/{key}', value)
        for part, sq in self.grad_sq.items():
            runner.message_hub.update_scalar(f'train/diag/grad_norm/{part}',
                                             sq**0.5)
        self.recording = False
