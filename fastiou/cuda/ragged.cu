// Segmented (ragged) IoU: the N_s x M_s blocks of many segments (images, or images and
// categories) of concatenated arrays, in one launch. Segment s pairs rows off1[s]..off1[s+1] of
// the first set with rows off2[s]..off2[s+1] of the second and writes its block, row-major, at
// out[start[s]..start[s+1]). One thread (boxes) or one warp (masks) per output element, which
// finds its segment by a binary search in start: blocks of every size are balanced alike. The host
// has checked the offsets (monotone, within the arrays, total below 2**62); indices are 64-bit.
// The per-pair formulas are those of boxes.cu (IOU, through pair_value: pairs with an extreme box
// are computed by box_scaled) and masks.cu (MASK_IOU), from the same headers, so that every
// engine's value is the same.
#include "box_ops.cuh"
#include "mask_ops.cuh"

namespace fastiou {

// The pair (row i of the first set, row j of the second) that output element k holds.
__device__ __forceinline__ void segment_pair(const long long* __restrict__ off1,
                                             const long long* __restrict__ off2,
                                             const long long* __restrict__ start,
                                             long long segments, long long k, long long& i,
                                             long long& j) {
  const long long s = segment_of(start, segments, k);
  const long long width = off2[s + 1] - off2[s], r = k - start[s];
  i = off1[s] + r / width;
  j = off2[s] + r % width;
}

template <typename T, typename O, int D>
__global__ void box_ragged(const T* __restrict__ b1, const T* __restrict__ b2,
                           const long long* __restrict__ off1, const long long* __restrict__ off2,
                           const long long* __restrict__ start, long long segments,
                           long long total, T zd, O* __restrict__ out) {
  for (long long k = grid_start_x(); k < total; k += grid_stride_x()) {
    long long i, j;
    segment_pair(off1, off2, start, segments, k, i, j);
    const T* p = b1 + i * 2 * D;
    out[k] = static_cast<O>(
        pair_value<T, IOU, D>(load_box<T, D>(p), p, extreme<T, D>(p), b2 + j * 2 * D, zd));
  }
}

// Packed masks w1 (K1, nwords), w2 (K2, nwords) with their areas; one warp per pair.
template <typename O>
__global__ void mask_ragged(const word_t* __restrict__ w1, const long long* __restrict__ a1,
                            const word_t* __restrict__ w2, const long long* __restrict__ a2,
                            long long nwords, const long long* __restrict__ off1,
                            const long long* __restrict__ off2, const long long* __restrict__ start,
                            long long segments, long long total, double zd, O* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  for (long long k = warp_start(); k < total; k += warp_stride()) {
    long long i, j;
    segment_pair(off1, off2, start, segments, k, i, j);
    const long long c = warp_intersection(w1 + i * nwords, w2 + j * nwords, nwords, lane);
    if (lane == 0) out[k] = static_cast<O>(mask_value<MASK_IOU>(c, a1[i], a2[j], zd));
  }
}

}  // namespace fastiou
