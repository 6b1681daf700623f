// Helpers shared by every fastiou kernel. Comparisons are written so that a NaN in the second
// operand is returned (fminf/fmaxf would drop it), which the callers rely on.
#pragma once

namespace fastiou {

template <typename T> __device__ __forceinline__ T clamp0(T v) { return v > T(0) ? v : v - v; }
template <typename T> __device__ __forceinline__ T lesser(T a, T b) { return a < b ? a : b; }
template <typename T> __device__ __forceinline__ T greater(T a, T b) { return a > b ? a : b; }
// num / den, or fallback where den == 0 (a NaN den gives NaN).
template <typename T> __device__ __forceinline__ T ratio(T num, T den, T fallback) {
  return den != T(0) ? num / den : fallback;
}

// First index and stride of a grid-stride loop, in 64 bits.
__device__ __forceinline__ long long grid_start_x() {
  return static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long grid_stride_x() {
  return static_cast<long long>(blockDim.x) * gridDim.x;
}

// The segment holding output element k of a segmented launch (segment s covers
// start[s]..start[s+1]): the last s in [0, segments) with start[s] <= k. Empty
// segments share their start with the next one, so the search lands on the non-empty one.
__device__ __forceinline__ long long segment_of(const long long* __restrict__ start,
                                                long long segments, long long k) {
  long long lo = 0, hi = segments;
  while (hi - lo > 1) {
    const long long mid = lo + (hi - lo) / 2;
    if (start[mid] <= k) lo = mid; else hi = mid;
  }
  return lo;
}

}  // namespace fastiou
