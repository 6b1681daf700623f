// Packed-mask formulas shared by the mask kernels (masks.cu) and the segmented ones (ragged.cu):
// one definition of each, so that every kernel computes a pair's value operation for operation
// alike. A mask row is packed to 64-bit words (bit q of word k holds pixel x = 64 k + q, bits past
// the width are 0); intersections are sums of __popcll(a & b), exact 64-bit integers, and ratios
// are taken in double. Warp helpers must be called by whole warps (the block size a multiple of
// 32), every lane of the warp taking part.
#pragma once

#include "common.cuh"

namespace fastiou {

enum MaskOp { MASK_IOU = 0, MASK_IOA = 1 };

typedef unsigned long long word_t;

#define FASTIOU_FULL_WARP 0xffffffffu

// First warp index and warp stride of a grid-stride loop over warps, in 64 bits.
__device__ __forceinline__ long long warp_start() { return grid_start_x() / 32; }
__device__ __forceinline__ long long warp_stride() { return grid_stride_x() / 32; }

__device__ __forceinline__ long long warp_sum(long long v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v += __shfl_down_sync(FASTIOU_FULL_WARP, v, offset);
  return v;
}

// Number of pixels set in both rows a and b of nwords words, summed by the whole warp: lane reads
// words lane, lane + 32, ... (coalesced). Lane 0 holds the total (the other lanes partial sums).
__device__ __forceinline__ long long warp_intersection(const word_t* a, const word_t* b,
                                                       long long nwords, int lane) {
  long long s = 0;
  for (long long k = lane; k < nwords; k += 32) s += __popcll(a[k] & b[k]);
  return warp_sum(s);
}

// IoU (area1 + area2 - inter) or IoA (area1) of a pair of masks from its exact counts; zd where
// the denominator is 0.
template <int OP>
__device__ __forceinline__ double mask_value(long long inter, long long area1, long long area2,
                                             double zd) {
  const long long den = OP == MASK_IOA ? area1 : area1 + area2 - inter;
  return den != 0 ? static_cast<double>(inter) / static_cast<double>(den) : zd;
}

}  // namespace fastiou
