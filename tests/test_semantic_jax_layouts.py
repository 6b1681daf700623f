"""The JAX engine's CPU counting loop, with one histogram and with interleaved copies of it.

On CPU the JAX engine counts label pairs chunk by chunk ("chunks" in ``test_jax_cpu.py``); pixel
i adds to copy ``i % copies`` of the histogram, so that a run of equal pairs does not wait on one
counter. ``semantic._copies`` gives 8 copies while all of them hold at most ``_MAX_COPIED`` bins
(up to 181 classes) and the map has at least 4 pixels per bin of all copies, 1 otherwise. Both
layouts, and a few copy counts forced through ``_COPIES``, are compared here with
``np.bincount`` on maps made of runs and on noise, eager, under ``jit``, ``vmap`` and
``shard_map``.
"""

from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

import fastiou
from fastiou.backends.jax_xla import semantic as jax_semantic

IGNORE = 255


def bincount_reference(pred, target, c, ignore=None):
    """(c, c) int64 counts: rows target, columns prediction; pixels whose target is ``ignore``
    or whose labels fall outside [0, c) are left out."""
    t = target.reshape(-1).astype(np.int64)
    p = pred.reshape(-1).astype(np.int64)
    keep = (t >= 0) & (t < c) & (p >= 0) & (p < c)
    if ignore is not None:
        keep &= t != ignore
    return np.bincount(t[keep] * c + p[keep], minlength=c * c).reshape(c, c)


def region_maps(rng, shape, c, *, void=0.1):
    """Label maps made of cells of one label, 3 rows high and 1 to 16 pixels wide; the
    prediction relabels a fifth of the cells and its boundaries are one row lower; a fraction
    ``void`` of the target's cells is ``IGNORE`` (as void regions are)."""
    *batch, h, w = shape
    widths = rng.integers(1, 17, w)
    cols = np.repeat(np.arange(w), widths)[:w]  # cell column of each pixel column
    cells = (*batch, h // 3 + 1, w)
    target = rng.integers(0, c, cells)
    pred = np.where(rng.random(cells) < 0.2, rng.integers(0, c, cells), target)
    target = np.where(rng.random(cells) < void, IGNORE, target)
    rows = np.arange(h)
    return (pred[..., np.maximum(rows - 1, 0) // 3, :][..., cols].astype(np.uint8),
            target[..., rows // 3, :][..., cols].astype(np.uint8))


def noise_maps(rng, shape, c):
    target = rng.integers(0, c, shape).astype(np.uint8)
    target[rng.random(shape) < 0.1] = IGNORE
    return rng.integers(0, c, shape).astype(np.uint8), target


@pytest.fixture
def chunks(monkeypatch):
    """The CPU loop on any device, in chunks of 1000 pixels (several chunks and a tail for the
    37 x 53 maps), recording the number of copies of each call."""
    monkeypatch.setattr(jax_semantic, "FORMULATION", "chunks")
    monkeypatch.setattr(jax_semantic, "_CHUNK", 1000)
    seen = []
    counts = jax_semantic._counts

    def spy(*args, **kwargs):
        seen.append((kwargs["chunk"], kwargs["copies"]))
        return counts(*args, **kwargs)

    monkeypatch.setattr(jax_semantic, "_counts", spy)
    return seen


def test_copies_follow_the_histogram_size(monkeypatch):
    copies = jax_semantic._copies
    big = 8 * 1024 * 2048
    assert copies(1, big) == copies(19, big) == copies(181, big) == 8
    assert 8 * (181 * 181 + 2) <= jax_semantic._MAX_COPIED < 8 * (182 * 182 + 2)
    assert copies(182, big) == copies(23170, big) == 1
    # at least 4 pixels per bin of all copies
    assert copies(19, 4 * 8 * 363) == 8 and copies(19, 4 * 8 * 363 - 1) == 1
    assert copies(150, 128 * 128) == copies(1, 95) == 1
    monkeypatch.setattr(jax_semantic, "_COPIES", 2)
    assert copies(19, big) == 2


@pytest.mark.parametrize("copies", [1, 2, 8])
@pytest.mark.parametrize("maps", ["regions", "noise"])
def test_layouts_match_bincount(chunks, monkeypatch, copies, maps):
    monkeypatch.setattr(jax_semantic, "_COPIES", copies)
    rng = np.random.default_rng(copies * 10 + len(maps))
    make = region_maps if maps == "regions" else noise_maps
    pred, target = make(rng, (3, 37, 53), 6)
    want = bincount_reference(pred, target, 6, IGNORE)
    assert want.sum() > 0 and (target == IGNORE).any()
    cm = lambda p, t: fastiou.confusion_matrix(p, t, 6, ignore_index=IGNORE)  # noqa: E731
    got = cm(jnp.asarray(pred), jnp.asarray(target))
    assert isinstance(got, jax.Array) and got.shape == (6, 6)
    assert got.dtype == (np.int64 if jax.config.jax_enable_x64 else np.int32)
    np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_array_equal(np.asarray(got), cm(pred, target))  # the Numba engine
    np.testing.assert_array_equal(np.asarray(jax.jit(cm)(jnp.asarray(pred), jnp.asarray(target))),
                                  want)
    per_map = jax.vmap(cm)(jnp.asarray(pred), jnp.asarray(target))
    assert per_map.shape == (3, 6, 6)
    for k in range(3):
        np.testing.assert_array_equal(np.asarray(per_map[k]),
                                      bincount_reference(pred[k], target[k], 6, IGNORE))
    assert chunks and all(seen == (1000, copies) for seen in chunks)


@pytest.mark.parametrize("c, shape, copies", [
    (1, (2, 37, 53), 8), (2, (2, 37, 53), 8), (40, (2, 37, 53), 1),
    (181, (2, 512, 1030), 8), (182, (2, 512, 1030), 1),  # 1054720 pixels: 4 per bin of 8 copies
])
def test_class_counts_at_the_edges(chunks, c, shape, copies):
    rng = np.random.default_rng(c)
    pred, target = region_maps(rng, shape, c)
    target[0, :4] = IGNORE
    if c > 2:  # every class present at least once in the target, one noisy map
        target[1].reshape(-1)[:c] = np.arange(c)
        pred[1] = rng.integers(0, c, pred[1].shape)
    want = bincount_reference(pred, target, c, IGNORE)
    got = fastiou.confusion_matrix(jnp.asarray(pred), jnp.asarray(target), c, ignore_index=IGNORE)
    assert got.shape == (c, c)
    np.testing.assert_array_equal(np.asarray(got), want)
    assert chunks == [(1000, copies)]
    # no ignore_index: 255 is then out of range, and dropped when asked
    got = fastiou.confusion_matrix(jnp.asarray(pred), jnp.asarray(target), c,
                                   out_of_range="ignore")
    np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("copies", [1, 8])
def test_out_of_range_labels_in_every_copy(chunks, monkeypatch, copies):
    """int16 labels, -1 and 5 outside [0, 5): dropped with out_of_range='ignore', an error
    eagerly, and counted in the last cell of a state updated under jit."""
    monkeypatch.setattr(jax_semantic, "_COPIES", copies)
    rng = np.random.default_rng(40 + copies)
    target = rng.integers(-1, 6, (41, 29)).astype(np.int16)
    pred = np.repeat(rng.integers(-1, 6, (41, 3)), 10, axis=1)[:, :29].astype(np.int16)
    got = fastiou.confusion_matrix(jnp.asarray(pred), jnp.asarray(target), 5,
                                   out_of_range="ignore")
    np.testing.assert_array_equal(np.asarray(got), bincount_reference(pred, target, 5))
    with pytest.raises(ValueError, match=r"confusion_matrix"):
        fastiou.confusion_matrix(jnp.asarray(pred), jnp.asarray(target), 5)
    step = jax.jit(fastiou.mean_iou_update)  # traced: the pixels are counted, not raised
    state = step(fastiou.mean_iou_init(5), jnp.asarray(pred), jnp.asarray(target))
    outside = ((pred < 0) | (pred >= 5) | (target < 0) | (target >= 5)).sum()
    assert 0 < outside < pred.size
    assert float(jax_semantic.state_invalid(state)) == outside
    np.testing.assert_array_equal(np.asarray(fastiou.mean_iou_confusion(state)),
                                  bincount_reference(pred, target, 5))
    assert chunks and all(seen == (1000, copies) for seen in chunks)


def test_layouts_with_x64(chunks):
    rng = np.random.default_rng(50)
    pred, target = region_maps(rng, (2, 37, 53), 7)
    with jax.enable_x64(True):
        got = fastiou.confusion_matrix(jnp.asarray(pred), jnp.asarray(target), 7,
                                       ignore_index=IGNORE)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(np.asarray(got), bincount_reference(pred, target, 7, IGNORE))
    assert chunks == [(1000, 8)]


def test_fewer_pixels_than_a_chunk_and_none(chunks):
    """600 pixels: one step of 600 with the copies; no pixel: the one-shot count."""
    rng = np.random.default_rng(60)
    pred, target = region_maps(rng, (20, 30), 4)
    got = fastiou.confusion_matrix(jnp.asarray(pred), jnp.asarray(target), 4, ignore_index=IGNORE)
    np.testing.assert_array_equal(np.asarray(got), bincount_reference(pred, target, 4, IGNORE))
    empty = jnp.zeros((0, 30), jnp.uint8)
    got = fastiou.confusion_matrix(empty, empty, 4, ignore_index=IGNORE)
    assert got.shape == (4, 4)
    np.testing.assert_array_equal(np.asarray(got), np.zeros((4, 4), np.int64))
    assert chunks == [(600, 8), (0, 1)]


@pytest.mark.parametrize("copies", [1, 8])
def test_loop_under_shard_map(chunks, monkeypatch, copies):
    """Several chunks per device under shard_map (the loop's carry holds per-device counts),
    summed with psum."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    monkeypatch.setattr(jax_semantic, "_CHUNK", 100)  # 768 pixels a map: 7 chunks and a tail
    monkeypatch.setattr(jax_semantic, "_COPIES", copies)
    devices = jax.devices("cpu")
    assert len(devices) >= 4, "conftest asks XLA for 4 host devices before jax is imported"
    rng = np.random.default_rng(70 + copies)
    pred, target = region_maps(rng, (4, 24, 32), 3)
    mesh = Mesh(np.array(devices[:4]), ("data",))

    def shard(p, t):  # each device: one map
        state = fastiou.mean_iou_update(fastiou.mean_iou_init(3, ignore_index=IGNORE), p[0], t[0])
        return fastiou.mean_iou_confusion(jax.lax.psum(state, "data"))[None]

    run = jax.jit(jax.shard_map(shard, mesh=mesh, in_specs=(P("data"), P("data")),
                                out_specs=P("data")))
    cms = run(jnp.asarray(pred), jnp.asarray(target))
    want = bincount_reference(pred, target, 3, IGNORE)
    for d in range(4):
        np.testing.assert_array_equal(np.asarray(cms[d]), want)
    assert chunks == [(100, copies)]
