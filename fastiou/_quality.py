"""The usual reading of an IoU score."""

from __future__ import annotations

EXCELLENT = 0.95
GOOD = 0.7


def iou_quality(iou: float) -> str:
    """'excellent' above 0.95, 'good' above 0.7, 'poor' otherwise (NaN reads as 'poor')."""
    value = float(iou)
    if value > EXCELLENT:
        return "excellent"
    if value > GOOD:
        return "good"
    return "poor"
