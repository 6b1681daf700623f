"""fastiou: Intersection over Union for boxes, masks and segmentation on Numba, CUDA and JAX."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from . import coco, rle
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

__version__ = "0.1.0"

# Imported on first use (module ``__getattr__``), so that a process which only computes box or
# mask IoU does not load them: the name -> the module that defines it ("" for the module itself).
_LAZY = {
    "coco": "",  # COCO AP/AR as pycocotools: fastiou.coco.evaluate
    "rle": "",  # COCO run-length encoding: fastiou.rle.encode, .iou, ...
    **dict.fromkeys(("EvaluationReport", "EvaluationStep", "Evaluator", "evaluate",
                     "evaluate_step", "group_segments", "segmented_box_iou",
                     "segmented_mask_iou"), "evaluation"),
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{where or name}")
    value = getattr(module, name) if where else module
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
