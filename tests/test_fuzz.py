"""Fuzzing of COCO RLE (hypothesis): random compressed strings, run-length lists, sizes near the
limits, polygons and boxes with extreme coordinates, compared with pycocotools and with plain
references wherever the input is valid, and refused with a ValueError/TypeError wherever it is
not. The properties run in a subprocess (this file run as a script), so that a crash fails the
test instead of ending the test run. Derandomized, with a fixed number of examples.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

EXAMPLES = {"strings": 250, "lists": 250, "polygons": 150, "boxes": 150}
DONE = "fuzz: every property held"


def test_fuzz_rle_in_a_subprocess():
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve())],
        capture_output=True, text=True, timeout=300, cwd=root,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    report = (f"exit status {proc.returncode} (negative: killed by that signal)\n"
              f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    assert proc.returncode == 0, report
    assert DONE in proc.stdout, report


# --------------------------------------------------------------------------------------------
# The properties (run by the subprocess only).

LIMIT_SIZES = [(65535, 65537), (1, 2**32 - 1), (2**32 - 1, 1), (0, 2**32 - 1), (3, 0)]
BAD_SIZES = [(65536, 65536), (2**32, 1), (2**32, 0), (2**32, 2**32), (2**63, 2), (2**70, 1), (-1, 5)]
HUGE = [2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**59 - 1, 2**62, 2**63 - 1, 2**63, 2**64, 2**64 + 100,
        -1, -(2**63)]
SMALL = 400  # pixels up to which masks are decoded and pycocotools is asked too


def put(value: int) -> bytes:
    out = bytearray()
    more = True
    while more:
        c = value & 0x1F
        value >>= 5
        more = (value != -1) if (c & 0x10) else (value != 0)
        out.append((c | 0x20 if more else c) + 48)
    return bytes(out)


def compressed(counts: list[int]) -> bytes:
    return b"".join(put(c - counts[i - 2] if i > 2 else c) for i, c in enumerate(counts))


def read_string(s: bytes) -> list[int] | None:
    """The runs of a compressed string, in Python integers; None for a bad character, a
    truncated number or one longer than 12 characters (60 bits: no valid run is that long)."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s) or k >= 12:
                return None
            c = s[p] - 48
            if not 0 <= c <= 63:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x -= 1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def valid(counts: list[int], h: int, w: int) -> bool:
    """Runs of an image of h x w pixels: each non-negative, running total never past h * w."""
    if not (0 <= h < 2**32 and 0 <= w < 2**32 and h * w < 2**32):
        return False
    total = 0
    for c in counts:
        if c < 0 or total + c > h * w:
            return False
        total += c
    return total == h * w


def dense(counts: list[int], h: int, w: int):
    import numpy as np

    flat = np.zeros(h * w, dtype=bool)
    pos = 0
    for i, c in enumerate(counts):
        flat[pos : pos + c] = i % 2 == 1
        pos += c
    return flat.reshape(w, h).T


def bbox(counts: list[int], h: int) -> list[float]:
    """COCO's box (xywh): a foreground run over two columns or more spans every row."""
    x0 = y0 = x1 = y1 = None
    pos = 0
    for i, c in enumerate(counts):
        if i % 2 and c:
            xa, ya, xb, yb = pos // h, pos % h, (pos + c - 1) // h, (pos + c - 1) % h
            ya, yb = (0, h - 1) if xb > xa else (ya, yb)
            x0 = xa if x0 is None else x0
            x1 = xb
            y0 = ya if y0 is None else min(y0, ya)
            y1 = yb if y1 is None else max(y1, yb)
        pos += c
    return [0.0] * 4 if x0 is None else [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def check_rle(obj: dict, counts: list[int] | None, h: int, w: int, stats: dict) -> None:
    """``counts``: the runs of ``obj`` read plainly, or None where the string is unreadable."""
    import numpy as np
    from fastiou import rle
    from pycocotools import mask as pm

    functions = [rle.area, rle.to_bbox, rle.merge, rle.from_uncompressed]
    if counts is None or not valid(counts, h, w):
        for fn in functions + ([rle.decode] if 0 <= h * w <= SMALL else []):
            try:
                fn([obj])
            except ValueError as exc:
                assert str(exc).startswith(f"rle.{fn.__name__}: rles[0] "), exc
            else:
                raise AssertionError(f"rle.{fn.__name__} accepted {obj!r}")
        stats["refused"] += 1
        return
    stats["accepted"] += 1
    assert rle.area(obj) == sum(counts[1::2])
    assert rle.to_bbox(obj).tolist() == bbox(counts, h)
    canonical = {"size": [h, w], "counts": compressed(counts)}
    assert rle.from_uncompressed(obj) == canonical
    assert rle.merge([obj]) == canonical
    union = rle.merge([obj, obj])
    assert rle.area(union) == sum(counts[1::2])
    np.testing.assert_array_equal(rle.iou([obj], [obj, canonical], [0, 1]),
                                  [[1.0 if sum(counts[1::2]) else 0.0] * 2])
    if h * w <= SMALL and counts:  # pycocotools crashes on an empty counts list
        stats["pycocotools"] += 1
        ref = pm.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        assert canonical == ref
        np.testing.assert_array_equal(rle.decode(obj), dense(counts, h, w))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            np.testing.assert_array_equal(rle.decode(obj), pm.decode(ref).astype(bool))
        assert rle.area(obj) == pm.area(ref)
        if 0 not in counts[1:]:  # pycocotools' merge, toBbox and iou trip over empty runs
            assert union == pm.merge([ref, ref])
            np.testing.assert_array_equal(rle.iou([obj], [obj, ref], [0, 1]),
                                          pm.iou([ref], [ref, ref], [0, 1]))


def properties() -> dict:
    import numpy as np
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from fastiou import rle
    from pycocotools import mask as pm

    def config(name: str):
        return settings(max_examples=EXAMPLES[name], derandomize=True, database=None,
                        deadline=None, print_blob=False,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

    sizes = st.one_of(st.tuples(st.integers(0, 20), st.integers(0, 20)),
                      st.sampled_from(LIMIT_SIZES + BAD_SIZES))

    @st.composite
    def runs(draw, h: int, w: int) -> list[int]:
        total = max(h * w, 0) if 0 <= h < 2**32 and 0 <= w < 2**32 else draw(st.integers(0, 400))
        cuts = sorted(draw(st.lists(st.integers(0, total), max_size=9)))
        out = np.diff([0] + cuts + [total]).tolist()
        if draw(st.booleans()):  # empty runs here and there
            for _ in range(draw(st.integers(1, 3))):
                out.insert(draw(st.integers(0, len(out))), 0)
        return out

    stats = {name: {"accepted": 0, "refused": 0, "pycocotools": 0} for name in ("strings", "lists")}

    @config("strings")
    @given(st.data())
    def strings(data):
        h, w = data.draw(sizes)
        counts = data.draw(runs(h, w))
        s = bytearray(compressed(counts))
        how = data.draw(st.sampled_from(["as is", "as is", "char", "cut", "append", "huge", "random"]))
        if how == "char" and s:
            s[data.draw(st.integers(0, len(s) - 1))] = data.draw(st.integers(0, 255))
        elif how == "cut" and s:
            del s[data.draw(st.integers(0, len(s) - 1)):]
        elif how == "append":
            s += data.draw(st.binary(min_size=1, max_size=14))
        elif how == "huge":
            counts = list(counts)
            counts.insert(data.draw(st.integers(0, len(counts))), data.draw(st.sampled_from(HUGE)))
            s = bytearray(compressed(counts))
        elif how == "random":
            s = bytearray(data.draw(st.binary(max_size=40)))
        as_str = data.draw(st.booleans())
        obj = {"size": [h, w], "counts": bytes(s).decode("latin-1") if as_str else bytes(s)}
        check_rle(obj, read_string(bytes(s)), h, w, stats["strings"])

    @config("lists")
    @given(st.data())
    def lists(data):
        h, w = data.draw(sizes)
        counts = data.draw(runs(h, w))
        for _ in range(data.draw(st.integers(0, 2))):
            value = data.draw(st.sampled_from(HUGE))
            at = data.draw(st.integers(0, len(counts)))
            counts = counts[:at] + [value] + counts[at + (1 if data.draw(st.booleans()) else 0):]
        kind = data.draw(st.sampled_from(["list", "tuple", "int64", "uint64"]))
        if kind == "int64" and all(-(2**63) <= c < 2**63 for c in counts):
            given_counts = np.array(counts, dtype=np.int64)
        elif kind == "uint64" and all(0 <= c < 2**64 for c in counts):
            given_counts = np.array(counts, dtype=np.uint64)
        else:
            given_counts = tuple(counts) if kind == "tuple" else list(counts)
        check_rle({"size": [h, w], "counts": given_counts}, counts, h, w, stats["lists"])

    on_grid = st.integers(-60 * 8, 100 * 8).map(lambda v: v / 8)  # exact: so is x + w
    in_range = st.one_of(on_grid, st.floats(-60, 100, allow_nan=False))
    far = st.sampled_from([1e4, -1e4, 1e6, -1e6, 1e12, -1e12, 2.0**53, -(2.0**53)])
    bad = st.sampled_from([1e17, -1e17, 2.0**53 + 2, 1e300, -1e300, float("nan"), float("inf"),
                           -float("inf")])
    image = st.tuples(st.integers(0, 40), st.integers(0, 40))
    poly_stats = {"compared": 0, "large": 0, "refused": 0}

    @config("polygons")
    @given(image, st.data())
    def polygons(size, data):
        h, w = size
        kind = data.draw(st.sampled_from(["in range", "in range", "far", "bad"]))
        values = st.one_of(in_range, far) if kind != "in range" else in_range
        polys = data.draw(st.lists(st.lists(values, min_size=6, max_size=16).map(
            lambda v: v + v[:1] if len(v) % 2 else v), min_size=1, max_size=3))
        if kind == "bad":
            i = data.draw(st.integers(0, len(polys) - 1))
            polys[i][data.draw(st.integers(0, len(polys[i]) - 1))] = data.draw(bad)
        flat = np.array([v for p in polys for v in p])
        if not np.isfinite(flat).all() or np.abs(flat).max() > 2.0**53:
            try:
                rle.from_polygons(polys, h, w)
            except ValueError as exc:
                assert str(exc).startswith("rle.from_polygons: polygons[") and "\n" not in str(exc)
            else:
                raise AssertionError(f"rle.from_polygons accepted {polys!r}")
            poly_stats["refused"] += 1
            return
        ours = rle.from_polygons(polys, h, w)
        assert ours["size"] == [h, w] and 0 <= rle.area(ours) <= h * w
        if h * w == 0:  # pycocotools' w - 1 wraps around (unsigned): runs past an empty image
            assert ours == {"size": [h, w], "counts": b"0"}
        elif np.abs(flat).max() <= 1e4:  # within pycocotools' fine grid (int32), quick there
            assert ours == pm.merge(pm.frPyObjects(polys, h, w)), (h, w, polys)
            poly_stats["compared"] += 1
        else:
            poly_stats["large"] += 1

    box_stats = {"compared": 0, "refused": 0}

    @config("boxes")
    @given(image, st.data())
    def boxes(size, data):
        # Boxes take any finite coordinates: far ones are moved next to the image first.
        value = st.one_of(on_grid, on_grid, far, st.sampled_from([1e17, -1e17, 1e300, -1e300]))
        rows = data.draw(st.lists(st.lists(value, min_size=4, max_size=4), min_size=1, max_size=6))
        if data.draw(st.integers(0, 5)) == 0:
            rows[data.draw(st.integers(0, len(rows) - 1))][data.draw(st.integers(0, 3))] = data.draw(
                st.sampled_from([float("nan"), float("inf"), -float("inf")]))
        h, w = size
        b = np.array(rows, dtype=np.float64)
        if not np.isfinite(b).all():
            try:
                rle.from_boxes(rows, h, w)
            except ValueError as exc:
                assert str(exc).startswith("rle.from_boxes: boxes must be finite")
            else:
                raise AssertionError(f"rle.from_boxes accepted {rows!r}")
            box_stats["refused"] += 1
            return
        ours = rle.from_boxes(rows, h, w)
        # pycocotools draws the same boxes with far corners moved to 1e4 (its int32 fine grid).
        with np.errstate(over="ignore"):
            x1, y1 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
        x0, y0, x1, y1 = (np.clip(v, -1e4, 1e4) for v in (b[:, 0], b[:, 1], x1, y1))
        near = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
        if h * w == 0:  # pycocotools' w - 1 wraps around (unsigned): runs past an empty image
            assert ours == [{"size": [h, w], "counts": b"0"}] * len(rows)
            return
        assert ours == pm.frPyObjects(near, h, w), (h, w, rows)
        box_stats["compared"] += 1

    for prop in (strings, lists, polygons, boxes):
        prop()
    return {**stats, "polygons": poly_stats, "boxes": box_stats}


def main() -> None:
    warnings.simplefilter("error")
    stats = properties()
    print(stats)
    # Not vacuous: both outcomes seen, and many examples compared with pycocotools.
    for name in ("strings", "lists"):
        assert stats[name]["accepted"] >= 40 and stats[name]["refused"] >= 40, stats
        assert stats[name]["pycocotools"] >= 30, stats
    assert stats["polygons"]["compared"] >= 30 and stats["polygons"]["large"] >= 5, stats
    assert stats["polygons"]["refused"] >= 10 and stats["boxes"]["compared"] >= 50, stats
    assert stats["boxes"]["refused"] >= 5, stats
    print(DONE)


if __name__ == "__main__":
    main()
