// Box IoU family: pairwise (every box of set 1 with every box of set 2) and aligned (i with i).
// T is the compute type (float or double), O the output type, OP one of BoxOp, D the number of
// spatial dimensions (2 or 3). Boxes arrive as contiguous corners: lo[0..D), hi[0..D).
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

// out[r, j] for r in [0, rows) (rows = batch * n) and j in [0, m); grid y walks rows, x columns.
template <typename T, typename O, int OP, int D>
__global__ void box_pairwise(const T* __restrict__ b1, const T* __restrict__ b2, long long rows,
                             long long n, long long m, T zd, O* __restrict__ out) {
  for (long long r = blockIdx.y; r < rows; r += gridDim.y) {
    const Box<T, D> a = load_box<T, D>(b1 + r * 2 * D);
    const T* second = b2 + (r / n) * m * 2 * D;
    O* dst = out + r * m;
    for (long long j = grid_start_x(); j < m; j += grid_stride_x())
      dst[j] = static_cast<O>(box_value<T, OP, D>(a, load_box<T, D>(second + j * 2 * D), zd));
  }
}

template <typename T, typename O, int OP, int D>
__global__ void box_aligned(const T* __restrict__ b1, const T* __restrict__ b2, long long k, T zd,
                            O* __restrict__ out) {
  for (long long i = grid_start_x(); i < k; i += grid_stride_x())
    out[i] = static_cast<O>(
        box_value<T, OP, D>(load_box<T, D>(b1 + i * 2 * D), load_box<T, D>(b2 + i * 2 * D), zd));
}

}  // namespace fastiou
