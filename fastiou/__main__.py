"""``python -m fastiou``: the classic example on every engine available here.

Reads the boxes shipped in ``fastiou/data/classic.json``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import numpy as np

import fastiou


def load_example() -> dict[str, Any]:
    return json.loads(resources.files("fastiou").joinpath("data/classic.json").read_text())


def _engine_arrays(engine: str, a: np.ndarray, b: np.ndarray) -> tuple[Any, Any]:
    if engine == "jax":
        import jax.numpy as jnp

        return jnp.asarray(a), jnp.asarray(b)
    if engine == "cupy":
        import cupy

        return cupy.asarray(a), cupy.asarray(b)
    return a, b


def main() -> int:
    data = load_example()
    a = np.array([data["classic"]["box_a"]], dtype=np.float64)
    b = np.array([data["classic"]["box_b"]], dtype=np.float64)
    area_a, area_b = (float(x) for x in fastiou.box_area(np.concatenate([a, b])))
    inter = float(fastiou.box_ioa(a, b)[0, 0]) * area_a
    union = area_a + area_b - inter
    iou = float(fastiou.box_iou(a, b)[0, 0])
    print(f"fastiou {fastiou.__version__}: the classic example")
    print(f"  box A {data['classic']['box_a']}, box B {data['classic']['box_b']} ({data['fmt']})")
    print(f"  intersection {inter:g}, union {union:g}, IoU {iou:.3f} -> {fastiou.iou_quality(iou)}")

    print("\nIoU versus GIoU (NumPy input, Numba engine)")
    print(f"  {'pair':<14}{'IoU':>8}{'GIoU':>9}  reading")
    pa = np.array([p["box_a"] for p in data["pairs"]], dtype=np.float64)
    pb = np.array([p["box_b"] for p in data["pairs"]], dtype=np.float64)
    ious = fastiou.box_iou(pa, pb, aligned=True)
    gious = fastiou.generalized_box_iou(pa, pb, aligned=True)
    for pair, i, g in zip(data["pairs"], ious, gious):
        print(f"  {pair['name']:<14}{i:>8.3f}{g:>9.3f}  {fastiou.iou_quality(i)}")

    print("\nEngines on this machine (the classic pair)")
    print(f"  {'engine':<7}{'IoU':>8}{'GIoU':>9}  {'result type':<28}detail")
    for engine, info in fastiou.available_backends().items():
        if not info.available:
            print(f"  {engine:<7}{'-':>8}{'-':>9}  {'not available':<28}{info.detail}")
            continue
        x, y = _engine_arrays(engine, a, b)
        r_iou, r_giou = fastiou.box_iou(x, y), fastiou.generalized_box_iou(x, y)
        kind = f"{type(r_iou).__module__.split('.')[0]}.{type(r_iou).__name__}"
        print(f"  {engine:<7}{float(r_iou[0, 0]):>8.3f}{float(r_giou[0, 0]):>9.3f}  {kind:<28}"
              f"{info.detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
