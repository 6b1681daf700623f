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

}  // namespace fastiou
