// COCO greedy matching of many images: one block per (image, threshold), sequential over the
// predictions in score order, with a block-wide reduction over the ground-truth objects for each.
//
// Image i's IoU block is G_i x P_i (ground truth in rows, row-major) at iou + iou_offsets[i];
// its objects are gt_offsets[i] .. gt_offsets[i + 1], its predictions pred_offsets[i] ..
// pred_offsets[i + 1]; `order` holds local prediction indices in the order they choose. Object
// flags: bit 0 valid, bit 1 ignored (crowd or gt_ignore), bit 2 crowd. Outputs are
// (T, total_p) / (T, total_g) with local indices, every element written. The host validates every
// offset, so all indices stay inside the arrays.
#include "common.cuh"

namespace fastiou {

constexpr int MATCH_BLOCK = 64;  // objects per image are few (COCO: 1 to 50): one pass, 6 steps

// Candidate (cls, value, index): a regular object (cls 2) beats an ignored one (cls 1) beats none
// (cls 0); then the higher IoU; then the higher index (pycocotools keeps the last of equals).
template <typename T>
__device__ __forceinline__ bool better(int c, T v, long long j, int bc, T bv, long long bj) {
  return c > bc || (c == bc && (v > bv || (v == bv && j > bj)));
}

template <typename T>
__global__ void greedy_match(const T* __restrict__ iou, const long long* __restrict__ iou_offsets,
                             const long long* __restrict__ gt_offsets,
                             const long long* __restrict__ pred_offsets,
                             const long long* __restrict__ order,
                             const unsigned char* __restrict__ gflags,
                             const bool* __restrict__ pvalid, const T* __restrict__ cutoffs,
                             long long images, long long thresholds, long long total_g,
                             long long total_p, long long* __restrict__ pred_to_gt,
                             long long* __restrict__ gt_to_pred, bool* __restrict__ pred_ignored,
                             T* __restrict__ matched_iou) {
  __shared__ int s_cls[MATCH_BLOCK];
  __shared__ T s_val[MATCH_BLOCK];
  __shared__ long long s_idx[MATCH_BLOCK];
  const int tid = threadIdx.x;
  for (long long t = blockIdx.y; t < thresholds; t += gridDim.y) {
    const T cut = cutoffs[t];
    for (long long i = blockIdx.x; i < images; i += gridDim.x) {
      const long long g0 = gt_offsets[i], ng = gt_offsets[i + 1] - g0;
      const long long p0 = pred_offsets[i], np = pred_offsets[i + 1] - p0;
      const T* block = iou + iou_offsets[i];
      const unsigned char* flags = gflags + g0;
      long long* g2p = gt_to_pred + t * total_g + g0;
      T* miou = matched_iou + t * total_g + g0;
      long long* p2g = pred_to_gt + t * total_p + p0;
      bool* pign = pred_ignored + t * total_p + p0;
      for (long long j = tid; j < ng; j += blockDim.x) {
        g2p[j] = -1;
        miou[j] = T(0);
      }
      for (long long k = tid; k < np; k += blockDim.x) {
        p2g[k] = -1;
        pign[k] = false;
      }
      __syncthreads();
      for (long long k = 0; k < np; ++k) {
        const long long q = order[p0 + k];
        if (!pvalid[p0 + q]) continue;  // the same for every thread of the block
        int bc = 0;
        T bv = cut;
        long long bj = -1;
        for (long long j = tid; j < ng; j += blockDim.x) {
          const T v = block[j * np + q];
          if (!(v >= cut && v > T(0))) continue;  // NaN never matches
          const unsigned f = flags[j];
          const bool free = g2p[j] < 0;
          const int c = (f == 1u && free) ? 2 : ((f & 3u) == 3u && ((f & 4u) || free)) ? 1 : 0;
          if (c != 0 && better(c, v, j, bc, bv, bj)) {
            bc = c;
            bv = v;
            bj = j;
          }
        }
        s_cls[tid] = bc;
        s_val[tid] = bv;
        s_idx[tid] = bj;
        __syncthreads();
        for (int stride = MATCH_BLOCK / 2; stride > 0; stride >>= 1) {
          if (tid < stride && better(s_cls[tid + stride], s_val[tid + stride], s_idx[tid + stride],
                                     s_cls[tid], s_val[tid], s_idx[tid])) {
            s_cls[tid] = s_cls[tid + stride];
            s_val[tid] = s_val[tid + stride];
            s_idx[tid] = s_idx[tid + stride];
          }
          __syncthreads();
        }
        if (tid == 0 && s_cls[0] > 0) {
          const long long j = s_idx[0];
          p2g[q] = j;
          pign[q] = s_cls[0] == 1;
          g2p[j] = q;
          miou[j] = s_val[0];
        }
        __syncthreads();
      }
    }
  }
}

}  // namespace fastiou
