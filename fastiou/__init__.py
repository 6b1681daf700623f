"""fastiou: Intersection over Union for boxes, masks and segmentation on Numba, CUDA and JAX."""

from __future__ import annotations

from ._dispatch import BackendInfo, available_backends
from ._quality import iou_quality
from .boxes import (
    box_area,
    box_convert,
    box_ioa,
    box_iou,
    complete_box_iou,
    complete_box_iou_loss,
    distance_box_iou,
    distance_box_iou_loss,
    generalized_box_iou,
    generalized_box_iou_loss,
)
from .masks import PackedMasks, mask_area, mask_ioa, mask_iou, masks_to_boxes, pack_masks
from .matching import MatchResult, match
from .evaluation import (
    EvaluationReport,
    EvaluationStep,
    Evaluator,
    evaluate,
    evaluate_step,
    group_segments,
    segmented_box_iou,
    segmented_mask_iou,
)
from .reductions import (
    IoUMax,
    IoUPairs,
    IoUTopK,
    box_iou_max,
    box_iou_pairs,
    box_iou_topk,
    mask_iou_max,
    mask_iou_pairs,
    mask_iou_topk,
)
from . import rle  # COCO run-length encoding: fastiou.rle.encode, .iou, ...
from . import coco  # COCO AP/AR as pycocotools: fastiou.coco.evaluate
from .semantic import (
    MeanIoU,
    confusion_matrix,
    dice_from_confusion,
    iou_from_confusion,
    mean_iou,
    mean_iou_compute,
    mean_iou_confusion,
    mean_iou_init,
    mean_iou_merge,
    mean_iou_update,
)

__version__ = "0.1.0"

__all__ = [
    "BackendInfo",
    "EvaluationReport",
    "EvaluationStep",
    "Evaluator",
    "IoUMax",
    "IoUPairs",
    "IoUTopK",
    "MatchResult",
    "MeanIoU",
    "PackedMasks",
    "available_backends",
    "box_area",
    "box_convert",
    "box_ioa",
    "box_iou",
    "box_iou_max",
    "box_iou_pairs",
    "box_iou_topk",
    "coco",
    "complete_box_iou",
    "complete_box_iou_loss",
    "confusion_matrix",
    "dice_from_confusion",
    "distance_box_iou",
    "distance_box_iou_loss",
    "evaluate",
    "evaluate_step",
    "generalized_box_iou",
    "generalized_box_iou_loss",
    "group_segments",
    "iou_from_confusion",
    "iou_quality",
    "mask_area",
    "mask_ioa",
    "mask_iou",
    "mask_iou_max",
    "mask_iou_pairs",
    "mask_iou_topk",
    "masks_to_boxes",
    "match",
    "mean_iou",
    "mean_iou_compute",
    "mean_iou_confusion",
    "mean_iou_init",
    "mean_iou_merge",
    "mean_iou_update",
    "pack_masks",
    "rle",
    "segmented_box_iou",
    "segmented_mask_iou",
]
