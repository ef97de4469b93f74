"""mmdet's YouTube-VIS metric, writing server-ready results while it scores."""
from typing import Dict, List

from mmdet.evaluation import YouTubeVISMetric
from mmdet.registry import METRICS

__all__ = ['YouTubeVISResultsMetric']


@METRICS.register_module()
class YouTubeVISResultsMetric(YouTubeVISMetric):
    """:class:`mmdet.evaluation.YouTubeVISMetric` plus two things.

    - With ``outfile_prefix`` set, ``<prefix>.json`` and its zip are written
      also when AP is computed (mmdet writes them only in ``format_only``).
    - The written ``category_id`` is the dataset's own category id
      (``dataset_meta['cat_ids']``); mmdet writes ``label + 1``, which is
      right only for ids 1..K in order. AP is unaffected: it is computed on
      labels.
    """

    def compute_metrics(self, results: List) -> Dict[str, float]:
        if self.outfile_prefix is not None and not self.format_only:
            preds = self.format_preds([pred for pred, _ in results])
            self.save_pred_results(preds)
        return super().compute_metrics(results)

    def save_pred_results(self, pred_results: List) -> None:
        cat_ids = (self.dataset_meta or {}).get('cat_ids')
        if cat_ids is not None:
            pred_results = [
                dict(res, category_id=int(cat_ids[res['category_id'] - 1]))
                for res in pred_results
            ]
        super().save_pred_results(pred_results)
