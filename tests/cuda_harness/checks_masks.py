"""Harness checks for the mask kernels of ``fastiou/cuda/masks.cu``, against plain NumPy references:
bit packing (``np.packbits``), pixel counts, IoU/IoA as float64 ratios of counts, tight boxes.

Widths that are not a multiple of 64 (a partial last word), empty masks (``zero_division``) and a
batch dimension are part of every case.
"""

from __future__ import annotations

import zlib

import numpy as np

import fastiou
from fastiou.backends import cupy_cuda

from . import HarnessCall, kernel_check, template_args

C_TYPES = {
    "bool": np.bool_, "unsigned char": np.uint8, "signed char": np.int8, "unsigned short": np.uint16,
    "short": np.int16, "unsigned int": np.uint32, "int": np.int32, "unsigned long long": np.uint64,
    "long long": np.int64, "float": np.float32, "double": np.float64,
}


def _rng(kernel: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(kernel.encode()))


def _masks(rng: np.random.Generator, shape: tuple[int, ...], empty: int = 1) -> np.ndarray:
    """Random foreground blobs; the first ``empty`` masks of the last batch axis are empty."""
    m = rng.random(shape) < rng.uniform(0.05, 0.6, shape[:-2] + (1, 1))
    m[..., :empty, :, :] = False
    return m


def packed_reference(fg: np.ndarray) -> np.ndarray:
    """(..., H, W) bool -> (..., H, ceil(W / 64)) uint64, bit q of word k = pixel 64 k + q."""
    width = fg.shape[-1]
    pad = -width % 64
    padded = np.concatenate([fg, np.zeros(fg.shape[:-1] + (pad,), bool)], axis=-1)
    return np.packbits(padded, axis=-1, bitorder="little").view("<u8")


def pairwise_reference(a: np.ndarray, b: np.ndarray, op: str, aligned: bool, zd: float) -> np.ndarray:
    a = a.reshape(a.shape[:-2] + (-1,)).astype(np.float64)
    b = b.reshape(b.shape[:-2] + (-1,)).astype(np.float64)
    if aligned:
        inter = (a * b).sum(-1)
        area1, area2 = a.sum(-1), b.sum(-1)
    else:
        inter = a @ np.swapaxes(b, -1, -2)
        area1, area2 = a.sum(-1)[..., :, None], b.sum(-1)[..., None, :]
    den = area1 if op == "ioa" else area1 + area2 - inter
    den, inter = np.broadcast_arrays(den, inter)
    out = np.full(inter.shape, zd)
    np.divide(inter, den, out=out, where=den != 0)
    return out


def boxes_reference(fg: np.ndarray) -> np.ndarray:
    out = np.zeros(fg.shape[:-2] + (4,))
    for idx in np.ndindex(fg.shape[:-2]):
        ys, xs = np.nonzero(fg[idx])
        if ys.size:
            out[idx] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return out


@kernel_check("masks.cu", r"fastiou::mask_pack<[\w ]+, [01]>|fastiou::mask_count")
def check_pack(kernel: str, call: HarnessCall) -> None:
    """Packed words and areas; ``mask_count`` runs with every packing."""
    rng = _rng(kernel)
    ctype, rule = template_args(kernel) if "<" in kernel else ("unsigned char", "0")
    dtype = np.dtype(C_TYPES[ctype])
    shape = (2, 3, 9, 70)  # batch, masks, H, W: two words per row, the second partial
    if dtype.kind == "b":
        x = _masks(rng, shape)
    elif dtype.kind == "f":
        x = rng.uniform(-1, 1, shape).astype(dtype) * _masks(rng, shape)
        x[0, 1, 0, :3] = np.nan  # never foreground under `>= cut`
    else:
        low = -3 if dtype.kind == "i" else 0
        x = (rng.integers(low, 4, shape) * _masks(rng, shape)).astype(dtype)
    threshold = None if rule == "0" else (0.25 if dtype.kind == "f" else 1.5)
    fg = x != 0 if threshold is None else np.asarray(x, dtype=np.float64) >= threshold
    refused = dtype.kind == "b" and threshold is not None
    required = dtype.kind == "f" and threshold is None
    if not (refused or required):
        packed = call(fastiou.pack_masks, x, threshold=threshold)
        words, area = packed.words, packed.area
    else:
        # Bool masks refuse a threshold and floating ones need one: the public API never reaches
        # these instantiations, so run the engine's own packing (same launch code) directly.
        cut = None if threshold is None else (np.True_ if dtype.kind == "b" else dtype.type(threshold))
        if dtype.kind == "b":
            fg = x.copy()
        with call.runtime.session():
            words, area = cupy_cuda.masks.pack_masks(x, rule="nonzero" if cut is None else "atleast",
                                                     cut=cut, budget=2**20)
    np.testing.assert_array_equal(np.asarray(words), packed_reference(fg), err_msg=kernel)
    np.testing.assert_array_equal(np.asarray(area), fg.sum(axis=(-2, -1)), err_msg=kernel)
    assert np.asarray(area).dtype == np.int64


@kernel_check("masks.cu", r"fastiou::mask_(pairwise|aligned)<float, [01]>")
def check_pairs(kernel: str, call: HarnessCall) -> None:
    rng = _rng(kernel)
    aligned = "aligned" in kernel
    op = ("iou", "ioa")[int(template_args(kernel)[1])]
    fn = fastiou.mask_iou if op == "iou" else fastiou.mask_ioa
    cases = [((5, 11, 70), (300 if not aligned else 5, 11, 70)), ((2, 1, 4, 6, 130), (3, 4, 6, 130))]
    for zd, (s1, s2) in zip((0.0, 0.5), cases):
        a, b = _masks(rng, s1), _masks(rng, s2, empty=2)
        got = call(fn, a, b, aligned=aligned, zero_division=zd)
        expected = pairwise_reference(a, b, op, aligned, zd)
        assert got.dtype == np.float32 and got.shape == expected.shape, (kernel, got.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7, err_msg=f"{kernel} {s1} {s2}")


@kernel_check("masks.cu", r"fastiou::mask_boxes<float>")
def check_boxes(kernel: str, call: HarnessCall) -> None:
    rng = _rng(kernel)
    fg = _masks(rng, (3, 4, 13, 140)) & (rng.random((3, 4, 13, 140)) < 0.05)
    fg[0, 2, 5, 139] = True  # a single pixel in the last, partial word
    got = call(fastiou.masks_to_boxes, fg)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, boxes_reference(fg), err_msg=kernel)


@kernel_check("masks.cu", r"fastiou::mask_segment_counts<long long>")
def check_segment_counts(kernel: str, call: HarnessCall) -> None:
    """Exact int64 intersection counts of the pairs of several segments (images) of different
    sizes in one launch, empty segments and segments without rows on one side included; masks
    are laid out in a shuffled order in their word arrays."""
    rng = _rng(kernel)
    sizes = [(9, 70, 3, 4), (1, 1, 0, 2), (5, 130, 2, 0), (0, 0, 0, 0), (4, 200, 3, 5),
             (7, 64, 1, 1)]  # (H, W, masks of the first set, of the second)
    first = [_masks(rng, (n1, h, w)) for h, w, n1, _ in sizes]
    second = [_masks(rng, (n2, h, w), empty=min(n2, 1)) for h, w, _, n2 in sizes]
    nw = np.array([h * -(-w // 64) for h, w, _, _ in sizes], dtype=np.int64)

    def layout(sets: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        rows = [packed_reference(m).reshape(m.shape[0], k) for m, k in zip(sets, nw)]
        flat = [r for block in rows for r in block]
        order = rng.permutation(len(flat))
        at = np.zeros(len(flat), dtype=np.int64)
        pieces, pos = [np.full(3, 0xDEAD, dtype=np.uint64)], 3  # words no mask owns
        for i in order:
            at[i] = pos
            pieces.append(flat[i])
            pos += flat[i].shape[0]
        return np.concatenate(pieces), at

    w1, at1 = layout(first)
    w2, at2 = layout(second)
    n1 = np.array([m.shape[0] for m in first], dtype=np.int64)
    n2 = np.array([m.shape[0] for m in second], dtype=np.int64)
    off1, off2 = np.r_[0, np.cumsum(n1)], np.r_[0, np.cumsum(n2)]
    start = np.r_[0, np.cumsum(n1 * n2)].astype(np.int64)
    with call.runtime.session():
        got = cupy_cuda.masks.segment_counts(w1, at1, w2, at2, nw, off1, off2, start)
    expected = np.concatenate([
        (a.reshape(a.shape[0], h * w).astype(np.float64)
         @ b.reshape(b.shape[0], h * w).T.astype(np.float64)).reshape(-1)
        for a, b, (h, w, _, _) in zip(first, second, sizes)])
    got = np.asarray(got)
    assert got.dtype == np.int64 and got.shape == expected.shape, (got.dtype, got.shape)
    assert expected.sum() > 0
    np.testing.assert_array_equal(got, expected.astype(np.int64), err_msg=kernel)
