// Test-only kernels for the harness's own tests (tests/test_cuda_harness.py): some correct ones
// that use what the package's kernels may use (shared memory, barriers, atomics, warp primitives),
// and some with a planted bug that the harness must catch. Never shipped, never built by CuPy.

namespace planted {

__device__ __forceinline__ long long index() {
  return static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// Correct: out[i] = 2 * in[i].
template <typename T> __global__ void twice(const T* __restrict__ in, long long n, T* __restrict__ out) {
  for (long long i = index(); i < n; i += static_cast<long long>(blockDim.x) * gridDim.x) out[i] = 2 * in[i];
}

// Planted: `<=` writes one element past the end.
__global__ void write_past_end(const float* in, long long n, float* out) {
  const long long i = index();
  if (i <= n) out[i] = in[i < n ? i : 0];
}

// Planted: writes one element before the start.
__global__ void write_before_start(const float* in, long long n, float* out) {
  const long long i = index();
  if (i < n) out[i - 1] = in[i];
}

// Planted: reads a whole page past the end.
__global__ void read_far_past_end(const float* in, long long n, float* out) {
  const long long i = index();
  if (i < n) out[i] = in[i + 4096];
}

// Planted: never writes the last element.
__global__ void skip_last(const float* in, long long n, float* out) {
  const long long i = index();
  if (i < n - 1) out[i] = in[i];
}

// Writes through a pointer to const (cast away): the harness reports it.
__global__ void write_const(const float* in, long long n, float* out) {
  const long long i = index();
  if (i < n) {
    out[i] = in[i];
    const_cast<float*>(in)[i] = 0.0f;
  }
}

// Reverses each block's slice through static shared memory; `sync` == 0 plants a missing barrier.
__global__ void reverse_blocks(const int* in, int* out, int sync) {
  __shared__ int tile[256];
  const long long i = index();
  tile[threadIdx.x] = in[i];
  if (sync) __syncthreads();
  out[i] = tile[blockDim.x - 1 - threadIdx.x];
}

// Planted: threads past `n` return before the barrier the others wait at.
__global__ void early_return(const int* in, long long n, int* out) {
  __shared__ int tile[256];
  const long long i = index();
  if (i >= n) return;
  tile[threadIdx.x] = in[i];
  __syncthreads();
  out[i] = tile[0];
}

// Per-block sums: a shared-memory tree, then a warp-shuffle finish, then a 64-bit atomicAdd.
__global__ void block_sums(const int* in, long long n, unsigned long long* total, int* per_block) {
  extern __shared__ __align__(16) unsigned char dynamic[];
  int* partial = reinterpret_cast<int*>(dynamic);
  const long long i = index();
  partial[threadIdx.x] = i < n ? in[i] : 0;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s >= 32; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x < 32) {
    int v = partial[threadIdx.x];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (threadIdx.x == 0) {
      per_block[blockIdx.x] = v;
      atomicAdd(total, static_cast<unsigned long long>(v));
    }
  }
}

// Warp primitives: for each lane, the results of several collectives over the full warp.
// out[lane * 8 + k]: xor-butterfly sum, ballot of odd values, popcount of that ballot, shfl from
// lane 0, shfl_up by 1, any(v > 100), all(v >= 0), match_any on v % 3.
__global__ void warp_ops(const int* in, int* out) {
  const unsigned lane = threadIdx.x % 32;
  const int v = in[threadIdx.x];
  int sum = v;
  for (int m = 16; m > 0; m /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, m);
  const unsigned odd = __ballot_sync(0xffffffffu, v & 1);
  int* o = out + threadIdx.x * 8;
  o[0] = sum;
  o[1] = static_cast<int>(odd);
  o[2] = __popc(odd);
  o[3] = __shfl_sync(0xffffffffu, v, 0);
  o[4] = __shfl_up_sync(0xffffffffu, v, 1);
  o[5] = __any_sync(0xffffffffu, v > 100);
  o[6] = __all_sync(0xffffffffu, v >= 0);
  o[7] = static_cast<int>(__match_any_sync(0xffffffffu, v % 3));
  (void)lane;
}

// Sub-warp widths, a partial mask and block-wide counting: out[t * 6 + k].
__global__ void warp_segments(const int* in, int* out) {
  const int v = in[threadIdx.x];
  int* o = out + threadIdx.x * 6;
  o[0] = __shfl_sync(0xffffffffu, v, 3, 8);        // lane 3 of the thread's group of 8
  o[1] = __shfl_down_sync(0xffffffffu, v, 5, 16);  // the thread's own value past its group of 16
  o[2] = __shfl_up_sync(0xffffffffu, v, 2, 4);
#if __CUDA_ARCH__ >= 800
  o[3] = static_cast<int>(__reduce_add_sync(0xffffffffu, static_cast<unsigned>(v)));
#else
  int sum = v;
  for (int m = 16; m > 0; m /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, m);
  o[3] = sum;
#endif
  if (threadIdx.x % 32 < 16) o[4] = __shfl_xor_sync(0x0000ffffu, v, 1);
  else o[4] = -1;
  o[5] = __syncthreads_count(v & 1);
}

// Planted: only even lanes call the shuffle but the mask names every lane.
__global__ void bad_mask(const int* in, int* out) {
  const int v = in[threadIdx.x];
  if (threadIdx.x % 2 == 0) out[threadIdx.x] = __shfl_down_sync(0xffffffffu, v, 1);
  else out[threadIdx.x] = v;
}

// Planted: writes dynamic shared memory past what the launch provides (blockDim ints).
__global__ void shared_overflow(int* out) {
  extern __shared__ __align__(16) unsigned char dynamic[];
  int* s = reinterpret_cast<int*>(dynamic);
  s[threadIdx.x + blockDim.x] = 1;
  __syncthreads();
  out[threadIdx.x] = 0;
}

// Planted when d == 0: an integer division by zero (garbage on a GPU, a trap on the CPU).
__global__ void divide(const int* in, int d, int* out) { out[threadIdx.x] = in[threadIdx.x] / d; }

// Histogram of byte values with shared 32-bit and global 64-bit atomics.
__global__ void histogram(const unsigned char* in, long long n, unsigned long long* bins) {
  __shared__ unsigned int local[256];
  for (unsigned b = threadIdx.x; b < 256; b += blockDim.x) local[b] = 0;
  __syncthreads();
  for (long long i = index(); i < n; i += static_cast<long long>(blockDim.x) * gridDim.x)
    atomicAdd(&local[in[i]], 1u);
  __syncthreads();
  for (unsigned b = threadIdx.x; b < 256; b += blockDim.x)
    if (local[b]) atomicAdd(&bins[b], static_cast<unsigned long long>(local[b]));
}

}  // namespace planted
