// Box IoU family: pairwise (every box of set 1 with every box of set 2) and aligned (i with i).
// T is the compute type (float or double), O the output type, OP one of BoxOp, D the number of
// spatial dimensions (2 or 3). Boxes arrive as contiguous corners: lo[0..D), hi[0..D). The
// per-pair formulas are in box_ops.cuh.
#include "box_ops.cuh"

namespace fastiou {

// out[r, j] for r in [0, rows) (rows = batch * n) and j in [0, m); grid y walks rows, x columns.
template <typename T, typename O, int OP, int D>
__global__ void box_pairwise(const T* __restrict__ b1, const T* __restrict__ b2, long long rows,
                             long long n, long long m, T zd, O* __restrict__ out) {
  for (long long r = blockIdx.y; r < rows; r += gridDim.y) {
    const T* first = b1 + r * 2 * D;
    const Box<T, D> a = load_box<T, D>(first);
    const bool first_extreme = extreme<T, D>(first);
    const T* second = b2 + (r / n) * m * 2 * D;
    O* dst = out + r * m;
    for (long long j = grid_start_x(); j < m; j += grid_stride_x())
      dst[j] = static_cast<O>(
          pair_value<T, OP, D>(a, first, first_extreme, second + j * 2 * D, zd));
  }
}

template <typename T, typename O, int OP, int D>
__global__ void box_aligned(const T* __restrict__ b1, const T* __restrict__ b2, long long k, T zd,
                            O* __restrict__ out) {
  for (long long i = grid_start_x(); i < k; i += grid_stride_x()) {
    const T* first = b1 + i * 2 * D;
    out[i] = static_cast<O>(pair_value<T, OP, D>(load_box<T, D>(first), first,
                                                 extreme<T, D>(first), b2 + i * 2 * D, zd));
  }
}

}  // namespace fastiou
