// Box formulas shared by the box kernels (boxes.cu) and the segmented ones (ragged.cu): one
// definition of each, so that every kernel computes a pair's value operation for operation alike.
// T is the compute type (float or double), OP one of BoxOp, D the number of spatial dimensions
// (2 or 3). Boxes are contiguous corners: lo[0..D), hi[0..D).
#pragma once

#include "common.cuh"

namespace fastiou {

enum BoxOp { IOU = 0, GIOU = 1, DIOU = 2, CIOU = 3, IOA = 4 };

template <typename T, int D> struct Box {
  T lo[D], hi[D], size;
};

template <typename T, int D> __device__ __forceinline__ Box<T, D> load_box(const T* p) {
  Box<T, D> b;
  b.size = T(1);
  for (int d = 0; d < D; ++d) {
    b.lo[d] = p[d];
    b.hi[d] = p[D + d];
    b.size *= clamp0(b.hi[d] - b.lo[d]);
  }
  return b;
}

template <typename T, int OP, int D>
__device__ __forceinline__ T box_value(const Box<T, D>& a, const Box<T, D>& b, T zd) {
  T inter = T(1);
  for (int d = 0; d < D; ++d) inter *= clamp0(lesser(a.hi[d], b.hi[d]) - greater(a.lo[d], b.lo[d]));
  // (b.size - b.size) is 0, or NaN when b has a NaN: keeps NaN even where area(a) == 0.
  if (OP == IOA) return ratio(inter, a.size, zd) + (b.size - b.size);
  const T uni = a.size + b.size - inter;
  const T iou = ratio(inter, uni, zd);
  if (OP == IOU) return iou;
  T hull = T(1), diag = T(0), rho2 = T(0);  // hull side and centre offset are doubled
  for (int d = 0; d < D; ++d) {
    const T side = clamp0(greater(a.hi[d], b.hi[d]) - lesser(a.lo[d], b.lo[d]));
    const T offset = (a.lo[d] + a.hi[d]) - (b.lo[d] + b.hi[d]);
    hull *= side;
    diag += (side + side) * (side + side);
    rho2 += offset * offset;
  }
  if (OP == GIOU) return iou - ratio(hull - uni, hull, T(0));
  const T diou = iou - ratio(rho2, diag, T(0));
  if (OP == DIOU) return diou;
  // CIOU, 2D: atan(w / h) read as atan2(w, h) so degenerate boxes are defined.
  const T da = atan2(clamp0(a.hi[0] - a.lo[0]), clamp0(a.hi[1] - a.lo[1])) -
               atan2(clamp0(b.hi[0] - b.lo[0]), clamp0(b.hi[1] - b.lo[1]));
  const T v = T(0.405284734569351085775517852838911) * da * da;  // 4 / pi^2
  return diou - ratio(v, T(1) - iou + v, T(0)) * v;
}

// Extreme boxes: a coordinate beyond BIG, a non-zero extent below 1 / BIG, NaN or infinity (the
// limits of fastiou/_formats.py scale_limits). Their pairs are computed from extents divided by
// the enclosing box (ratios in [0, 1]): no overflow, no underflow. DIoU's distance uses one scale
// for every axis, as it is not invariant under per-axis scaling. Extents are taken at 1/8 scale so
// that no reciprocal is subnormal (the same formulas as the Numba and JAX engines).
template <typename T, int D> struct Limit;
template <> struct Limit<float, 2> { static constexpr float big = 0x1p61f; };
template <> struct Limit<float, 3> { static constexpr float big = 0x1p41f; };
template <> struct Limit<double, 2> { static constexpr double big = 0x1p509; };
template <> struct Limit<double, 3> { static constexpr double big = 0x1p339; };

template <typename T> __device__ __forceinline__ T magnitude(T v) { return v < T(0) ? -v : v; }

template <typename T, int D> __device__ __forceinline__ bool extreme(const T* p) {
  const T big = Limit<T, D>::big, tiny = T(1) / Limit<T, D>::big;
  bool out = false;
  for (int d = 0; d < D; ++d) {
    const T lo = p[d], hi = p[D + d], e = hi - lo;
    out |= !(magnitude(lo) <= big && magnitude(hi) <= big) || (e > T(0) && e < tiny);
  }
  return out;
}

template <typename T, int OP, int D>
__device__ T box_scaled(const T* p, const T* q, T zd) {
  const T h = T(0.125), sixteenth = T(0.0625);  // extents and centre offsets at 1/8 scale
  T cs[D], e1[D], e2[D], offset[D];
  T u1 = T(1), u2 = T(1), ui = T(1), hull = T(1), ioa = T(1), s = T(0), poison = T(0);
  bool empty1 = false;
  for (int d = 0; d < D; ++d) {
    const T lo1 = p[d], hi1 = p[D + d], lo2 = q[d], hi2 = q[D + d];
    poison += (lo1 - lo1) + (hi1 - hi1) + (lo2 - lo2) + (hi2 - hi2);  // NaN for NaN or inf
    cs[d] = clamp0((hi1 > hi2 ? hi1 : hi2) * h - (lo1 < lo2 ? lo1 : lo2) * h);
    e1[d] = clamp0(hi1 * h - lo1 * h);
    e2[d] = clamp0(hi2 * h - lo2 * h);
    const T ei = clamp0((hi1 < hi2 ? hi1 : hi2) * h - (lo1 > lo2 ? lo1 : lo2) * h);
    offset[d] = (lo1 * sixteenth + hi1 * sixteenth) - (lo2 * sixteenth + hi2 * sixteenth);
    u1 *= ratio(e1[d], cs[d], T(0));
    u2 *= ratio(e2[d], cs[d], T(0));
    ui *= ratio(ei, cs[d], T(0));
    hull = cs[d] > T(0) ? hull : T(0);
    ioa *= ratio(ei, e1[d], T(0));
    empty1 |= e1[d] == T(0);
    s = s > cs[d] ? s : cs[d];
  }
  if (OP == IOA) return (empty1 ? zd : ioa) + poison;
  const T uni = u1 + u2 - ui;
  const T iou = ratio(ui, uni, zd);
  if (OP == IOU) return iou + poison;
  if (OP == GIOU) return iou - ratio(hull - uni, hull, T(0)) + poison;
  T rho = T(0), diag = T(0);
  for (int d = 0; d < D; ++d) {
    const T o = ratio(offset[d], s, T(0)), c = ratio(cs[d], s, T(0));
    rho += o * o;
    diag += c * c;
  }
  const T diou = iou - ratio(rho, diag, T(0));
  if (OP == DIOU) return diou + poison;
  const T da = atan2(e1[0], e1[D - 1]) - atan2(e2[0], e2[D - 1]);
  const T v = T(0.405284734569351085775517852838911) * da * da;  // 4 / pi^2
  return diou - ratio(v, T(1) - iou + v, T(0)) * v + poison;
}

// Box p (read once by the caller as a, with its extreme flag) against box q.
template <typename T, int OP, int D>
__device__ __forceinline__ T pair_value(const Box<T, D>& a, const T* p, bool p_extreme,
                                        const T* q, T zd) {
  if (p_extreme || extreme<T, D>(q)) return box_scaled<T, OP, D>(p, q, zd);
  return box_value<T, OP, D>(a, load_box<T, D>(q), zd);
}

}  // namespace fastiou
