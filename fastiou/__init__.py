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

__version__ = "0.1.0"

__all__ = [
    "BackendInfo",
    "available_backends",
    "box_area",
    "box_convert",
    "box_ioa",
    "box_iou",
    "complete_box_iou",
    "complete_box_iou_loss",
    "distance_box_iou",
    "distance_box_iou_loss",
    "generalized_box_iou",
    "generalized_box_iou_loss",
    "iou_quality",
]
