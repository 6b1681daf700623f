// Segmented (ragged) IoU: the N_s x M_s blocks of many segments (images, or images and
// categories) of concatenated arrays, in one launch. Segment s pairs rows off1[s]..off1[s+1] of
// the first set with rows off2[s]..off2[s+1] of the second and writes its block, row-major, at
// out[start[s]..start[s+1]). One thread (boxes) or one warp (masks) per output element, which
// finds its segment by a binary search in start: blocks of every size are balanced alike. The host
// has checked the offsets (monotone, within the arrays, total below 2**62); indices are 64-bit.
// The per-pair formulas are those of boxes.cu (IOU) and masks.cu (MASK_IOU), operation for
// operation, so that every engine's value is the same.
#include "common.cuh"

namespace fastiou {

typedef unsigned long long ragged_word_t;

// IoU of corner boxes a = (lo[0..D), hi[0..D)) and b; extents clamp at 0, union 0 gives zd.
template <typename T, int D>
__device__ __forceinline__ T ragged_box_iou(const T* a, const T* b, T zd) {
  T area_a = T(1), area_b = T(1), inter = T(1);
  for (int d = 0; d < D; ++d) {
    area_a *= clamp0(a[D + d] - a[d]);
    area_b *= clamp0(b[D + d] - b[d]);
  }
  for (int d = 0; d < D; ++d) inter *= clamp0(lesser(a[D + d], b[D + d]) - greater(a[d], b[d]));
  return ratio(inter, area_a + area_b - inter, zd);
}

__device__ __forceinline__ long long ragged_warp_sum(long long v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// The segment holding output element k: the last s in [0, segments) with start[s] <= k. Empty
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

template <typename T, typename O, int D>
__global__ void box_ragged(const T* __restrict__ b1, const T* __restrict__ b2,
                           const long long* __restrict__ off1, const long long* __restrict__ off2,
                           const long long* __restrict__ start, long long segments,
                           long long total, T zd, O* __restrict__ out) {
  for (long long k = grid_start_x(); k < total; k += grid_stride_x()) {
    const long long s = segment_of(start, segments, k);
    const long long width = off2[s + 1] - off2[s], r = k - start[s];
    const long long i = off1[s] + r / width, j = off2[s] + r % width;
    out[k] = static_cast<O>(ragged_box_iou<T, D>(b1 + i * 2 * D, b2 + j * 2 * D, zd));
  }
}

// Packed masks w1 (K1, nwords), w2 (K2, nwords) with their areas; one warp per pair.
template <typename O>
__global__ void mask_ragged(const ragged_word_t* __restrict__ w1, const long long* __restrict__ a1,
                            const ragged_word_t* __restrict__ w2, const long long* __restrict__ a2,
                            long long nwords, const long long* __restrict__ off1,
                            const long long* __restrict__ off2, const long long* __restrict__ start,
                            long long segments, long long total, double zd, O* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  for (long long k = grid_start_x() / 32; k < total; k += grid_stride_x() / 32) {
    const long long s = segment_of(start, segments, k);
    const long long width = off2[s + 1] - off2[s], r = k - start[s];
    const long long i = off1[s] + r / width, j = off2[s] + r % width;
    const ragged_word_t* a = w1 + i * nwords;
    const ragged_word_t* b = w2 + j * nwords;
    long long c = 0;
    for (long long q = lane; q < nwords; q += 32) c += __popcll(a[q] & b[q]);
    c = ragged_warp_sum(c);
    if (lane == 0) {
      const long long uni = a1[i] + a2[j] - c;
      out[k] = static_cast<O>(uni != 0 ? static_cast<double>(c) / static_cast<double>(uni) : zd);
    }
  }
}

}  // namespace fastiou
