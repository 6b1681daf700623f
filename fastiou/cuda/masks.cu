// Dense masks packed to 64-bit words (see mask_ops.cuh, which holds the per-pair formulas): bit q
// of word k of a row holds pixel x = 64 k + q, bits past the width are 0. T is the mask element
// type, RULE one of MaskRule, O the output type, OP one of MaskOp. Kernels that work a warp at a
// time must be launched with whole warps (the block size a multiple of 32).
#include "mask_ops.cuh"

namespace fastiou {

enum MaskRule { NONZERO = 0, ATLEAST = 1 };

// words[t] for t in [0, rows * nwords), word t % nwords of row t / nwords of x (rows, width): one
// warp per word, each lane reading two pixels (coalesced) and __ballot_sync gathering the bits.
// NONZERO: x != 0 is foreground; ATLEAST: x >= cut (false for NaN).
template <typename T, int RULE>
__global__ void mask_pack(const T* __restrict__ x, long long rows, long long width,
                          long long nwords, T cut, word_t* __restrict__ words) {
  const int lane = threadIdx.x % 32;
  const long long total = rows * nwords;
  for (long long t = warp_start(); t < total; t += warp_stride()) {
    const long long r = t / nwords, k = t - r * nwords;
    const long long x0 = k * 64 + lane, x1 = x0 + 32;
    const T* row = x + r * width;
    bool on0 = false, on1 = false;
    if (x0 < width) on0 = RULE == ATLEAST ? (row[x0] >= cut) : (row[x0] != T(0));
    if (x1 < width) on1 = RULE == ATLEAST ? (row[x1] >= cut) : (row[x1] != T(0));
    const unsigned lo = __ballot_sync(FASTIOU_FULL_WARP, on0);
    const unsigned hi = __ballot_sync(FASTIOU_FULL_WARP, on1);
    if (lane == 0) words[t] = static_cast<word_t>(lo) | (static_cast<word_t>(hi) << 32);
  }
}

// out[r] = number of set bits in words[r, 0..nwords), r in [0, rows): one warp per row.
__global__ void mask_count(const word_t* __restrict__ words, long long rows, long long nwords,
                           long long* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  for (long long r = warp_start(); r < rows; r += warp_stride()) {
    const word_t* w = words + r * nwords;
    long long s = 0;
    for (long long k = lane; k < nwords; k += 32) s += __popcll(w[k]);
    s = warp_sum(s);
    if (lane == 0) out[r] = s;
  }
}

// Pairwise: out[b, i, j] for b in [0, batch), i in [0, n), j in [0, m), from the masks
// w1[b, i, 0..nwords) and w2[b, j, 0..nwords). A popcount "matrix product": each block computes a
// TILE x TILE tile of pairs, staging KC words of TILE masks of each set in shared memory at a time;
// each of its 16 x 16 threads accumulates 4 x 4 pairs. Every mask word is read from global memory
// once per tile instead of once per pair.
enum PairTiling { PAIR_TILE = 64, PAIR_KC = 16, PAIR_THREADS = 256 };

template <typename O, int OP>
__global__ void __launch_bounds__(PAIR_THREADS)
mask_pairwise(const word_t* __restrict__ w1, const long long* __restrict__ a1,
              const word_t* __restrict__ w2, const long long* __restrict__ a2, long long batch,
              long long n, long long m, long long nwords, double zd, O* __restrict__ out) {
  __shared__ word_t sa[PAIR_KC][PAIR_TILE];
  __shared__ word_t sb[PAIR_KC][PAIR_TILE];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  for (long long b = blockIdx.z; b < batch; b += gridDim.z) {
    const word_t* first = w1 + b * n * nwords;
    const word_t* second = w2 + b * m * nwords;
    for (long long i0 = static_cast<long long>(blockIdx.y) * PAIR_TILE; i0 < n;
         i0 += static_cast<long long>(gridDim.y) * PAIR_TILE) {
      for (long long j0 = static_cast<long long>(blockIdx.x) * PAIR_TILE; j0 < m;
           j0 += static_cast<long long>(gridDim.x) * PAIR_TILE) {
        long long acc[4][4] = {};
        for (long long k0 = 0; k0 < nwords; k0 += PAIR_KC) {
          // Stage words k0..k0+KC of masks i0.. and j0.. (consecutive threads, consecutive words).
          for (int e = threadIdx.x; e < PAIR_TILE * PAIR_KC; e += PAIR_THREADS) {
            const int row = e / PAIR_KC, k = e % PAIR_KC;
            const long long gk = k0 + k, gi = i0 + row, gj = j0 + row;
            sa[k][row] = (gi < n && gk < nwords) ? first[gi * nwords + gk] : word_t(0);
            sb[k][row] = (gj < m && gk < nwords) ? second[gj * nwords + gk] : word_t(0);
          }
          __syncthreads();
          for (int k = 0; k < PAIR_KC; ++k) {
            word_t ra[4], rb[4];
            for (int q = 0; q < 4; ++q) {
              ra[q] = sa[k][ty + 16 * q];
              rb[q] = sb[k][tx + 16 * q];
            }
            for (int r = 0; r < 4; ++r)
              for (int c = 0; c < 4; ++c) acc[r][c] += __popcll(ra[r] & rb[c]);
          }
          __syncthreads();
        }
        for (int r = 0; r < 4; ++r) {
          const long long i = i0 + ty + 16 * r;
          if (i >= n) continue;
          for (int c = 0; c < 4; ++c) {
            const long long j = j0 + tx + 16 * c;
            if (j >= m) continue;
            out[(b * n + i) * m + j] =
                static_cast<O>(mask_value<OP>(acc[r][c], a1[b * n + i], a2[b * m + j], zd));
          }
        }
      }
    }
  }
}

// Aligned: out[i] for i in [0, count), mask i of w1 against mask i of w2: one warp per pair.
template <typename O, int OP>
__global__ void mask_aligned(const word_t* __restrict__ w1, const long long* __restrict__ a1,
                             const word_t* __restrict__ w2, const long long* __restrict__ a2,
                             long long count, long long nwords, double zd, O* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  for (long long i = warp_start(); i < count; i += warp_stride()) {
    const long long s = warp_intersection(w1 + i * nwords, w2 + i * nwords, nwords, lane);
    if (lane == 0) out[i] = static_cast<O>(mask_value<OP>(s, a1[i], a2[i], zd));
  }
}

// out[r, 0..4) = tightest 'xyxy' box in pixel edges of mask r (height rows of nwords words);
// (0, 0, 0, 0) for an empty mask.
template <typename O>
__global__ void mask_boxes(const word_t* __restrict__ words, long long count, long long height,
                           long long nwords, O* __restrict__ out) {
  for (long long r = grid_start_x(); r < count; r += grid_stride_x()) {
    long long x0 = -1, y0 = -1, x1 = -1, y1 = -1;
    for (long long y = 0; y < height; ++y) {
      const word_t* row = words + (r * height + y) * nwords;
      long long first = -1, last = -1;
      for (long long k = 0; k < nwords; ++k) {
        const word_t v = row[k];
        if (v == 0) continue;
        if (first < 0) first = k * 64 + (__ffsll(static_cast<long long>(v)) - 1);
        last = k * 64 + 63 - __clzll(static_cast<long long>(v));
      }
      if (first < 0) continue;
      if (y0 < 0) {
        y0 = y;
        x0 = first;
        x1 = last;
      }
      x0 = first < x0 ? first : x0;
      x1 = last > x1 ? last : x1;
      y1 = y;
    }
    O* dst = out + r * 4;
    const bool empty = y0 < 0;
    dst[0] = empty ? O(0) : static_cast<O>(x0);
    dst[1] = empty ? O(0) : static_cast<O>(y0);
    dst[2] = empty ? O(0) : static_cast<O>(x1 + 1);
    dst[3] = empty ? O(0) : static_cast<O>(y1 + 1);
  }
}

// Segmented intersection counts: the pairs of many segments (images) in one launch. Segment s
// pairs masks off1[s]..off1[s+1] of the first set with masks off2[s]..off2[s+1] of the second;
// its masks have nw[s] words each, mask i of the first set at w1 + at1[i] and mask j of the second
// at w2 + at2[j]. Its block of exact counts is written row-major at out[start[s]..start[s+1]); one
// warp per pair, which finds its segment by a binary search in start (segment_of). The
// host has checked the offsets (monotone, within the arrays); indices are 64-bit.
template <typename O>
__global__ void mask_segment_counts(const word_t* __restrict__ w1,
                                    const long long* __restrict__ at1,
                                    const word_t* __restrict__ w2,
                                    const long long* __restrict__ at2,
                                    const long long* __restrict__ nw,
                                    const long long* __restrict__ off1,
                                    const long long* __restrict__ off2,
                                    const long long* __restrict__ start, long long segments,
                                    long long total, O* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  for (long long k = warp_start(); k < total; k += warp_stride()) {
    const long long s = segment_of(start, segments, k);
    const long long width = off2[s + 1] - off2[s], r = k - start[s];
    const long long i = off1[s] + r / width, j = off2[s] + r % width;
    const long long c = warp_intersection(w1 + at1[i], w2 + at2[j], nw[s], lane);
    if (lane == 0) out[k] = static_cast<O>(c);
  }
}

}  // namespace fastiou
