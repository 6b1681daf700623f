// Reductions of IoU tiles: per row, the first k entries in IoU order (k = 1: max and argmax), the
// number of entries >= a threshold, and those entries written at a row's offset in row-major
// order. The tiles are (rows, cols) row-major arrays of O (float or double) made by the box and
// mask kernels. One block per row (grid-stride over rows), REDUCE_THREADS threads; every result is
// a deterministic function of the tile (a total order, a scan), whatever the schedule.
#include "common.cuh"

namespace fastiou {

enum Reduce { REDUCE_THREADS = 256 };

// (va, ia) ranks before (vb, ib): NaN before any number, then the greater value, then the lower
// index. An index < 0 stands for no entry and ranks after every entry.
template <typename O>
__device__ __forceinline__ bool ranks_before(O va, long long ia, O vb, long long ib) {
  if (ia < 0 || ib < 0) return ib < 0 && ia >= 0;
  const bool na = va != va, nb = vb != vb;
  if (na != nb) return na;
  if (!na && va != vb) return va > vb;
  return ia < ib;
}

// The first (value, index) of the block's candidates, returned to every thread.
template <typename O>
__device__ __forceinline__ void block_first(O& v, long long& i) {
  __shared__ O sv[REDUCE_THREADS];
  __shared__ long long si[REDUCE_THREADS];
  const int t = threadIdx.x;
  sv[t] = v;
  si[t] = i;
  __syncthreads();
  for (int s = REDUCE_THREADS / 2; s > 0; s /= 2) {
    if (t < s && ranks_before(sv[t + s], si[t + s], sv[t], si[t])) {
      sv[t] = sv[t + s];
      si[t] = si[t + s];
    }
    __syncthreads();
  }
  v = sv[0];
  i = si[0];
  __syncthreads();
}

// out_v[r, q], out_i[r, q] for q in [0, k): the q-th entry of row r of v (rows, cols) in the order
// of ranks_before; k <= cols. Round q takes the first entry ranking after round q - 1's pick.
template <typename O>
__global__ void __launch_bounds__(REDUCE_THREADS)
iou_row_topk(const O* __restrict__ v, long long rows, long long cols, long long k,
             O* __restrict__ out_v, long long* __restrict__ out_i) {
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const O* row = v + r * cols;
    O pv = O(0);
    long long pi = -1;
    for (long long q = 0; q < k; ++q) {
      O bv = O(0);
      long long bi = -1;
      for (long long j = threadIdx.x; j < cols; j += REDUCE_THREADS) {
        const O x = row[j];
        if (pi >= 0 && !ranks_before(pv, pi, x, j)) continue;  // taken in an earlier round
        if (ranks_before(x, j, bv, bi)) {
          bv = x;
          bi = j;
        }
      }
      block_first(bv, bi);
      if (threadIdx.x == 0) {
        out_v[r * k + q] = bv;
        out_i[r * k + q] = bi;
      }
      pv = bv;
      pi = bi;
    }
  }
}

// counts[r] = number of entries of row r with v >= thr (NaN never counts).
template <typename O>
__global__ void __launch_bounds__(REDUCE_THREADS)
iou_row_count(const O* __restrict__ v, long long rows, long long cols, O thr,
              long long* __restrict__ counts) {
  __shared__ long long s[REDUCE_THREADS];
  const int t = threadIdx.x;
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const O* row = v + r * cols;
    long long c = 0;
    for (long long j = t; j < cols; j += REDUCE_THREADS) c += row[j] >= thr ? 1 : 0;
    s[t] = c;
    __syncthreads();
    for (int h = REDUCE_THREADS / 2; h > 0; h /= 2) {
      if (t < h) s[t] += s[t + h];
      __syncthreads();
    }
    if (t == 0) counts[r] = s[0];
    __syncthreads();
  }
}

// The entries of row r with v >= thr, in column order, written from offsets[r] on: out_r (row0 +
// r), out_c (column), out_v (value); positions >= limit are not written.
template <typename O>
__global__ void __launch_bounds__(REDUCE_THREADS)
iou_row_pairs(const O* __restrict__ v, long long rows, long long cols, O thr,
              const long long* __restrict__ offsets, long long row0, long long limit,
              long long* __restrict__ out_r, long long* __restrict__ out_c, O* __restrict__ out_v) {
  __shared__ long long scan[REDUCE_THREADS];
  const int t = threadIdx.x;
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const O* row = v + r * cols;
    long long at = offsets[r];  // the same in every thread of the block
    for (long long j0 = 0; j0 < cols && at < limit; j0 += REDUCE_THREADS) {
      const long long j = j0 + t;
      const long long hit = (j < cols && row[j] >= thr) ? 1 : 0;
      scan[t] = hit;
      __syncthreads();
      for (int s = 1; s < REDUCE_THREADS; s *= 2) {  // inclusive scan (Hillis-Steele)
        const long long add = t >= s ? scan[t - s] : 0;
        __syncthreads();
        scan[t] += add;
        __syncthreads();
      }
      const long long pos = at + scan[t] - hit;
      if (hit && pos < limit) {
        out_r[pos] = row0 + r;
        out_c[pos] = j;
        out_v[pos] = row[j];
      }
      at += scan[REDUCE_THREADS - 1];
      __syncthreads();
    }
  }
}

}  // namespace fastiou
