// Confusion counts of two label maps: one flat histogram of (C*C + 2) bins, where bin t*C + p
// counts target t predicted p, bin C*C the ignored pixels and bin C*C + 1 the pixels with a label
// outside [0, C). P and T are the label types of the prediction and the target (any integer
// type); labels are compared in their own type and widened only in registers.
#include "common.cuh"

namespace fastiou {

template <typename P, typename T>
__device__ __forceinline__ long long pixel_bin(P p, T t, long long c, long long ignore,
                                               int has_ignore) {
  const long long cc = c * c;
  // ignore is representable in T whenever has_ignore is set (the host checks it).
  if (has_ignore && t == static_cast<T>(ignore)) return cc;
  const long long tt = static_cast<long long>(t), pp = static_cast<long long>(p);
  // Unsigned comparisons reject negative labels (and 64-bit unsigned labels >= 2**63) at once.
  const unsigned long long uc = static_cast<unsigned long long>(c);
  if (static_cast<unsigned long long>(tt) < uc && static_cast<unsigned long long>(pp) < uc)
    return tt * c + pp;
  return cc + 1;
}

// copies > 0: each block counts into `copies` private 32-bit histograms in shared memory
// (thread i uses copy i % copies, so that neighbouring threads, which often see the same label
// pair, do not contend for one counter), then adds their sums to `out` with 64-bit atomics. The
// host keeps every block below 2**32 pixels, so the 32-bit counters cannot wrap.
// copies == 0 (too many classes for shared memory): 64-bit atomics on `out` directly, one per
// distinct bin of a warp (the lanes of a warp with equal bins are counted together).
template <typename P, typename T>
__global__ void confusion_counts(const P* __restrict__ pred, const T* __restrict__ target,
                                 long long n, long long c, long long ignore, int has_ignore,
                                 int copies, unsigned long long* __restrict__ out) {
  extern __shared__ unsigned int hist[];
  const long long bins = c * c + 2;
  if (copies == 0) {
    // Every lane of a warp makes the same number of trips (blockDim.x is a multiple of 32), so
    // the whole warp takes part in each __match_any_sync; lanes past the end carry bin -1.
    const unsigned lane = threadIdx.x % 32;
    for (long long first = grid_start_x() - lane; first < n; first += grid_stride_x()) {
      const long long i = first + lane;
      const long long bin = i < n ? pixel_bin(pred[i], target[i], c, ignore, has_ignore) : -1;
      const unsigned same = __match_any_sync(0xffffffffu, bin);
      if (bin >= 0 && lane == static_cast<unsigned>(__ffs(same) - 1))
        atomicAdd(out + bin, static_cast<unsigned long long>(__popc(same)));
    }
    return;
  }
  for (long long k = threadIdx.x; k < bins * copies; k += blockDim.x) hist[k] = 0u;
  __syncthreads();
  unsigned int* mine = hist + static_cast<long long>(threadIdx.x % copies) * bins;
  for (long long i = grid_start_x(); i < n; i += grid_stride_x())
    atomicAdd(mine + pixel_bin(pred[i], target[i], c, ignore, has_ignore), 1u);
  __syncthreads();
  for (long long k = threadIdx.x; k < bins; k += blockDim.x) {
    unsigned long long total = 0;
    for (int r = 0; r < copies; ++r) total += hist[r * bins + k];
    if (total != 0) atomicAdd(out + k, total);
  }
}

}  // namespace fastiou
