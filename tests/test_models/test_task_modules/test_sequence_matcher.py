import itertools
import warnings

import pytest
import torch
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData

from mmttsrn.models.task_modules import InstanceSequenceMatcher


def _random_boxes(*shape):
    """Valid normalised cxcywh boxes."""
    centre = torch.rand(*shape, 2) * 0.6 + 0.2
    size = torch.rand(*shape, 2) * 0.3 + 0.05
    return torch.cat([centre, size], -1)


def _problem(n, m, num_frames, num_classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    cls_scores = torch.randn(n, num_frames, num_classes + 1, generator=g)
    bbox_preds = _random_boxes(n, num_frames)
    gt_labels = torch.randint(0, num_classes, (m, ), generator=g)
    gt_bboxes = _random_boxes(m, num_frames)
    gt_valid = torch.rand(m, num_frames, generator=g) > 0.3
    gt_valid[torch.arange(m), torch.randint(0, num_frames, (m, ))] = True
    return cls_scores, bbox_preds, gt_labels, gt_bboxes, gt_valid


def _giou(a, b):
    """GIoU of two cxcywh boxes, written out independently."""
    ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2
    ax2, ay2 = a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2
    bx2, by2 = b[0] + b[2] / 2, b[1] + b[3] / 2
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    hull = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
    iou = inter / union
    return iou - (hull - union) / hull


def _naive_cost(cls_scores,
                bbox_preds,
                gt_labels,
                gt_bboxes,
                gt_valid,
                weights=(1.0, 5.0, 2.0)):
    n, m = cls_scores.shape[0], gt_labels.shape[0]
    prob = cls_scores.softmax(-1)
    cost = torch.zeros(n, m, dtype=torch.float64)
    for i in range(n):
        for g in range(m):
            terms = []
            for t in gt_valid[g].nonzero().flatten().tolist():
                p = prob[i, t, gt_labels[g]].item()
                a, b = bbox_preds[i, t].tolist(), gt_bboxes[g, t].tolist()
                # VisTR: L1 averaged over the 4 coordinates.
                l1 = sum(abs(x - y) for x, y in zip(a, b)) / 4
                terms.append(-weights[0] * p + weights[1] * l1 -
                             weights[2] * _giou(a, b))
            cost[i, g] = sum(terms) / len(terms)
    return cost


@pytest.mark.parametrize('n, m, num_frames, seed', [(5, 3, 4, 0), (5, 5, 2, 1),
                                                    (4, 1, 3, 2), (3, 2, 1, 3),
                                                    (5, 4, 5, 4),
                                                    (5, 2, 3, 5)])
def test_matching_equals_brute_force(n, m, num_frames, seed):
    problem = _problem(n, m, num_frames, seed=seed)
    matcher = InstanceSequenceMatcher()
    cost = matcher.cost(*problem)
    naive = _naive_cost(*problem)
    torch.testing.assert_close(cost.double(), naive, rtol=1e-4, atol=1e-5)

    best = min(
        itertools.permutations(range(n), m),
        key=lambda perm: sum(naive[p, g].item() for g, p in enumerate(perm)))
    pred_inds, gt_inds = matcher.match(*problem)
    assert pred_inds.dtype == torch.long and gt_inds.dtype == torch.long
    assert torch.all(pred_inds[1:] > pred_inds[:-1])
    assert dict(zip(gt_inds.tolist(),
                    pred_inds.tolist())) == dict(enumerate(best))


def test_absent_frames_do_not_change_matching():
    cls_scores, bbox_preds, gt_labels, gt_bboxes, gt_valid = _problem(
        5, 3, 4, seed=7)
    gt_valid[:, 0] = True
    gt_valid[:, 2] = False  # frame 2: no gt instance is present
    matcher = InstanceSequenceMatcher()
    cost = matcher.cost(cls_scores, bbox_preds, gt_labels, gt_bboxes, gt_valid)
    inds = matcher.match(cls_scores, bbox_preds, gt_labels, gt_bboxes,
                         gt_valid)

    cls_scores[:, 2] = torch.randn_like(cls_scores[:, 2]) * 100
    bbox_preds[:, 2] = torch.rand_like(bbox_preds[:, 2])
    # Absent gt frames usually hold placeholders, even degenerate ones.
    gt_bboxes[~gt_valid] = float('nan')
    new_cost = matcher.cost(cls_scores, bbox_preds, gt_labels, gt_bboxes,
                            gt_valid)
    new_inds = matcher.match(cls_scores, bbox_preds, gt_labels, gt_bboxes,
                             gt_valid)
    torch.testing.assert_close(new_cost, cost)
    for old, new in zip(inds, new_inds):
        assert torch.equal(old, new)


def test_no_gt_returns_empty():
    problem = _problem(4, 0, 3)
    pred_inds, gt_inds = InstanceSequenceMatcher().match(*problem)
    assert pred_inds.shape == gt_inds.shape == (0, )
    assert pred_inds.dtype == gt_inds.dtype == torch.long
    assert InstanceSequenceMatcher().cost(*problem).shape == (4, 0)


def _costs(cls=None, l1=None, giou=None, mask=None, dice=None):
    """match_costs with the given weights, in the paper's order."""
    types = dict(
        cls='SequenceClassificationCost',
        l1='SequenceBBoxL1Cost',
        giou='SequenceIoUCost',
        mask='SequenceCrossEntropyLossCost',
        dice='SequenceDiceCost')
    weights = dict(cls=cls, l1=l1, giou=giou, mask=mask, dice=dice)
    return [
        dict(type=types[k], weight=w) for k, w in weights.items()
        if w is not None
    ]


def test_default_costs_are_the_papers():
    costs = InstanceSequenceMatcher().match_costs
    assert [(type(c).__name__, c.weight) for c in costs] == [
        ('SequenceClassificationCost', 1.0), ('SequenceBBoxL1Cost', 5.0),
        ('SequenceIoUCost', 2.0)
    ]
    assert costs[2].iou_mode == 'giou'
    problem = _problem(4, 3, 3, seed=3)
    paper = InstanceSequenceMatcher(_costs(cls=1.0, l1=5.0, giou=2.0))
    assert torch.equal(InstanceSequenceMatcher().cost(*problem),
                       paper.cost(*problem))


def test_cost_weights_read_from_config():
    problem = _problem(4, 3, 3, seed=3)
    parts = [
        InstanceSequenceMatcher(_costs(**{key: 1.0})).cost(*problem)
        for key in ('cls', 'l1', 'giou')
    ]
    matcher = TASK_UTILS.build(
        dict(
            type='InstanceSequenceMatcher',
            match_costs=_costs(cls=0.5, l1=3.0, giou=7.0)))
    torch.testing.assert_close(
        matcher.cost(*problem),
        0.5 * parts[0] + 3.0 * parts[1] + 7.0 * parts[2])
    torch.testing.assert_close(parts[0].double(),
                               _naive_cost(*problem, weights=(1.0, 0.0, 0.0)))
    # Class cost alone: the most probable prediction wins for one gt.
    assert (parts[0] <= 0).all()
    # One cost may be given as a dict, as in mmdet's HungarianAssigner.
    single = InstanceSequenceMatcher(_costs(cls=1.0)[0])
    torch.testing.assert_close(single.cost(*problem), parts[0])


@pytest.mark.parametrize('key, cost', [
    ('cls_weight', 'SequenceClassificationCost'),
    ('l1_weight', 'SequenceBBoxL1Cost'),
    ('giou_weight', 'SequenceIoUCost'),
    ('mask_weight', 'SequenceCrossEntropyLossCost'),
    ('dice_weight', 'SequenceDiceCost'),
])
def test_keyword_weights_of_before_match_costs_are_refused(key, cost):
    with pytest.raises(TypeError, match=f"instead of {key}.*'{cost}'"):
        TASK_UTILS.build(dict(type='InstanceSequenceMatcher', **{key: 2.0}))
    with pytest.raises(TypeError, match="unexpected keyword argument 'x'"):
        InstanceSequenceMatcher(x=1)
    with pytest.raises(ValueError, match='at least one'):
        InstanceSequenceMatcher([])


def test_uses_masks_when_a_mask_cost_is_configured():
    assert not InstanceSequenceMatcher().uses_masks
    assert InstanceSequenceMatcher(_costs(cls=1.0, mask=1.0)).uses_masks
    assert InstanceSequenceMatcher(_costs(cls=1.0, dice=1.0)).uses_masks


def test_sequence_costs_are_mmdet_costs_frame_by_frame():
    """Each cost in frame t is its mmdet namesake on frame t's predictions
    (mmdet's L1 sums the 4 coordinates where ours averages them)."""
    n, m, T, h, w = 4, 3, 2, 5, 6
    cls_scores, bbox_preds, gt_labels, gt_bboxes, _ = _problem(n, m, T)
    preds = InstanceData(
        scores=cls_scores,
        bboxes=bbox_preds,
        masks=torch.randn(n, T, h, w) * 3)
    gts = InstanceData(
        labels=gt_labels, bboxes=gt_bboxes, masks=torch.rand(m, T, h, w))
    pairs = [
        (dict(type='SequenceClassificationCost', weight=2.0),
         dict(type='ClassificationCost', weight=2.0)),
        # box_format='xywh': the L1 of cxcywh boxes, as ours.
        (dict(type='SequenceBBoxL1Cost', weight=2.0),
         dict(type='BBoxL1Cost', box_format='xywh', weight=0.5)),
        (dict(type='SequenceIoUCost', iou_mode='giou', weight=2.0),
         dict(type='IoUCost', iou_mode='giou', weight=2.0)),
        (dict(type='SequenceIoUCost', iou_mode='iou', weight=2.0),
         dict(type='IoUCost', iou_mode='iou', weight=2.0)),
        (dict(type='SequenceCrossEntropyLossCost', weight=2.0),
         dict(type='CrossEntropyLossCost', use_sigmoid=True, weight=2.0)),
        (dict(type='SequenceDiceCost', weight=2.0),
         dict(type='DiceCost', pred_act=True, eps=1.0, weight=2.0)),
    ]
    for ours, theirs in pairs:
        cost = TASK_UTILS.build(ours)(preds, gts)
        assert cost.shape == (n, m, T)
        mmdet_cost = TASK_UTILS.build(theirs)
        for t in range(T):
            # mmdet's box costs take xyxy boxes (normalised: a 1x1 image).
            frame_preds = InstanceData(
                scores=preds.scores[:, t],
                bboxes=bbox_cxcywh_to_xyxy(preds.bboxes[:, t]),
                masks=preds.masks[:, t])
            frame_gts = InstanceData(
                labels=gts.labels,
                bboxes=bbox_cxcywh_to_xyxy(gts.bboxes[:, t]),
                masks=gts.masks[:, t])
            expected = mmdet_cost(
                frame_preds, frame_gts, img_meta=dict(img_shape=(1, 1)))
            torch.testing.assert_close(cost[..., t], expected, msg=ours)


def test_crowded_clip_matches_as_many_as_slots_and_warns_once():
    matcher = InstanceSequenceMatcher()
    problem = _problem(2, 3, 2)
    with pytest.warns(UserWarning, match='3 ground-truth instances but'):
        pred_inds, gt_inds = matcher.match(*problem)
    assert pred_inds.tolist() == [0, 1]
    assert len(set(gt_inds.tolist())) == 2
    # The pair chosen is the one of least total cost.
    cost = matcher.cost(*problem)
    best = min(cost[0, a] + cost[1, b] for a in range(3) for b in range(3)
               if a != b)
    torch.testing.assert_close(cost[pred_inds, gt_inds].sum(), best)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        matcher.match(*problem)


def test_bad_inputs_raise():
    matcher = InstanceSequenceMatcher()
    problem = list(_problem(4, 3, 2))
    problem[4][1] = False
    with pytest.raises(ValueError, match='instance 1 is absent'):
        matcher.match(*problem)
    problem = list(_problem(4, 3, 2))
    problem[3] = problem[3][:, :1]
    with pytest.raises(ValueError, match='gt_bboxes'):
        matcher.match(*problem)


def test_mask_cost_equals_hand_computation_and_decides_the_match():
    # Boxes and classes say nothing (all equal); the masks decide.
    n, m, T, h, w = 2, 2, 2, 4, 4
    cls_scores = torch.zeros(n, T, 3)
    bbox_preds = torch.full((n, T, 4), 0.5)
    gt_bboxes = torch.full((m, T, 4), 0.5)
    gt_valid = torch.ones(m, T, dtype=torch.bool)
    gt_valid[1, 1] = False  # gt 1 is absent from frame 1
    gt_masks = torch.zeros(m, T, 2 * h, 2 * w, dtype=torch.bool)
    gt_masks[0, :, :4, :4] = True  # top-left quarter
    gt_masks[1, 0, 4:, 4:] = True  # bottom-right quarter
    mask_preds = torch.full((n, T, h, w), -3.0)
    mask_preds[0, :, 2:, 2:] = 3.0  # slot 0 segments gt 1
    mask_preds[1, :, :2, :2] = 3.0  # slot 1 segments gt 0
    matcher = InstanceSequenceMatcher(
        _costs(l1=1.0, giou=1.0, mask=2.0, dice=3.0))
    assert matcher.uses_masks
    cost = matcher.cost(cls_scores, bbox_preds, torch.tensor([0, 1]),
                        gt_bboxes, gt_valid, mask_preds, gt_masks)
    # By hand: every box term is 0 - 1 * GIoU(equal boxes) = -1.
    gt_small = gt_masks.float().view(m, T, h, 2, w, 2).mean((3, 5))
    expected = torch.zeros(n, m)
    for i in range(n):
        for g in range(m):
            frames = gt_valid[g].nonzero().flatten().tolist()
            total = 0.0
            for t in frames:
                x, y = mask_preds[i, t], gt_small[g, t]
                p = x.sigmoid()
                ce = torch.nn.functional.binary_cross_entropy_with_logits(
                    x, y)
                dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
                total += -1.0 + 2.0 * ce + 3.0 * dice
            expected[i, g] = total / len(frames)
    torch.testing.assert_close(cost, expected)
    pred_inds, gt_inds = matcher.match(cls_scores, bbox_preds,
                                       torch.tensor([0, 1]), gt_bboxes,
                                       gt_valid, mask_preds, gt_masks)
    assert dict(zip(pred_inds.tolist(), gt_inds.tolist())) == {0: 1, 1: 0}
    # Without masks the mask terms are left out.
    no_masks = matcher.cost(cls_scores, bbox_preds, torch.tensor([0, 1]),
                            gt_bboxes, gt_valid)
    torch.testing.assert_close(no_masks, torch.full((n, m), -1.0))
