// What CUDA provides to a kernel, for running fastiou's .cu sources unchanged on the CPU.
//
// Force-included (g++ -include) before a generated wrapper that includes one .cu source and lists
// its kernels. One shared object per source; Python (tests/cuda_harness/__init__.py) loads it with
// ctypes, type-checks the arguments against the signature strings exported here and calls
// cuda_harness_launch.
//
// Execution model: the blocks of the grid run one after another (in a permuted order) on the
// calling OS thread; the threads of one block run concurrently as fibers (ucontext) with their own
// stacks, scheduled cooperatively in a shuffled order. A thread runs until it finishes or waits:
// at __syncthreads (every thread of the block must arrive), at a warp primitive (every lane named
// in the mask must arrive; the result is computed when the last one does, with PTX's shfl rules),
// or at __nanosleep (a yield). No thread that is ready to run can wait forever, and a barrier that
// can never complete is reported as a deadlock. Static __shared__ variables are thread_local (one
// copy per OS thread, shared by the fibers of the block that runs on it); dynamic shared memory
// (extern __shared__) is one thread_local buffer that every such declaration aliases, poisoned
// before each block and followed by a guard region. See README.md for what this cannot check.
#pragma once

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define FASTIOU_CUDA_HARNESS 1
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 900
#endif
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ thread_local
#define __constant__
#define __managed__
#define __grid_constant__

// ------------------------------------------------------------------------------------------------
// Built-in variables and vector types

struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
static const int warpSize = 32;

#define CUDA_HARNESS_VEC2(T, N, A)                                                               \
  struct __attribute__((aligned(A))) N##2 { T x, y; };                                           \
  inline N##2 make_##N##2(T x, T y) { return N##2{x, y}; }
#define CUDA_HARNESS_VEC3(T, N)                                                                  \
  struct N##3 { T x, y, z; };                                                                    \
  inline N##3 make_##N##3(T x, T y, T z) { return N##3{x, y, z}; }
#define CUDA_HARNESS_VEC4(T, N, A)                                                               \
  struct __attribute__((aligned(A))) N##4 { T x, y, z, w; };                                     \
  inline N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }

CUDA_HARNESS_VEC2(float, float, 8)
CUDA_HARNESS_VEC3(float, float)
CUDA_HARNESS_VEC4(float, float, 16)
CUDA_HARNESS_VEC2(double, double, 16)
CUDA_HARNESS_VEC3(double, double)
CUDA_HARNESS_VEC4(double, double, 16)
CUDA_HARNESS_VEC2(int, int, 8)
CUDA_HARNESS_VEC3(int, int)
CUDA_HARNESS_VEC4(int, int, 16)
CUDA_HARNESS_VEC2(unsigned int, uint, 8)
CUDA_HARNESS_VEC4(unsigned int, uint, 16)
CUDA_HARNESS_VEC2(long long, longlong, 16)
CUDA_HARNESS_VEC2(unsigned long long, ulonglong, 16)
CUDA_HARNESS_VEC4(unsigned char, uchar, 4)
CUDA_HARNESS_VEC4(signed char, char, 4)
CUDA_HARNESS_VEC2(unsigned short, ushort, 4)
inline uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { return uint3{x, y, z}; }

// ------------------------------------------------------------------------------------------------
// Math and bit intrinsics (the C math library supplies the standard names and their float
// overloads; CUDA's min/max on floating point are fminf/fmaxf, which drop NaN)

template <typename T, typename U,
          typename = std::enable_if_t<std::is_arithmetic_v<T> && std::is_arithmetic_v<U>>>
inline std::common_type_t<T, U> min(T a, U b) {
  using C = std::common_type_t<T, U>;
  if constexpr (std::is_floating_point_v<C>) return std::fmin(C(a), C(b));
  else return C(b) < C(a) ? C(b) : C(a);
}
template <typename T, typename U,
          typename = std::enable_if_t<std::is_arithmetic_v<T> && std::is_arithmetic_v<U>>>
inline std::common_type_t<T, U> max(T a, U b) {
  using C = std::common_type_t<T, U>;
  if constexpr (std::is_floating_point_v<C>) return std::fmax(C(a), C(b));
  else return C(a) < C(b) ? C(b) : C(a);
}

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float fdividef(float a, float b) { return a / b; }
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline int __float2int_rn(float x) { return int(nearbyintf(x)); }
inline int __float2int_rz(float x) { return int(x); }
inline int __float2int_rd(float x) { return int(floorf(x)); }
inline int __float2int_ru(float x) { return int(ceilf(x)); }
inline unsigned int __float2uint_rn(float x) { return (unsigned int)(nearbyintf(x)); }
inline long long __float2ll_rn(float x) { return (long long)(nearbyintf(x)); }
inline int __double2int_rn(double x) { return int(nearbyint(x)); }
inline long long __double2ll_rn(double x) { return (long long)(nearbyint(x)); }
inline float __int2float_rn(int x) { return float(x); }
inline float __uint2float_rn(unsigned int x) { return float(x); }
inline float __ll2float_rn(long long x) { return float(x); }
inline float __double2float_rn(double x) { return float(x); }
inline double __ll2double_rn(long long x) { return double(x); }
inline double __ull2double_rn(unsigned long long x) { return double(x); }

template <typename To, typename From> inline To cuda_harness_bits(From v) {
  static_assert(sizeof(To) == sizeof(From));
  To out;
  memcpy(&out, &v, sizeof out);
  return out;
}
inline int __float_as_int(float x) { return cuda_harness_bits<int>(x); }
inline unsigned int __float_as_uint(float x) { return cuda_harness_bits<unsigned int>(x); }
inline float __int_as_float(int x) { return cuda_harness_bits<float>(x); }
inline float __uint_as_float(unsigned int x) { return cuda_harness_bits<float>(x); }
inline long long __double_as_longlong(double x) { return cuda_harness_bits<long long>(x); }
inline double __longlong_as_double(long long x) { return cuda_harness_bits<double>(x); }
inline int __double2hiint(double x) { return int(cuda_harness_bits<unsigned long long>(x) >> 32); }
inline int __double2loint(double x) { return int(cuda_harness_bits<unsigned long long>(x)); }
inline double __hiloint2double(int hi, int lo) {
  return cuda_harness_bits<double>((unsigned long long)(unsigned int)hi << 32 | (unsigned int)lo);
}

inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned int __brev(unsigned int x) {
  unsigned int r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned long long __brevll(unsigned long long x) {
  return (unsigned long long)__brev((unsigned int)x) << 32 | __brev((unsigned int)(x >> 32));
}
inline int __mulhi(int a, int b) { return int(((long long)a * b) >> 32); }
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
  return (unsigned int)(((unsigned long long)a * b) >> 32);
}
inline long long __mul64hi(long long a, long long b) { return (long long)(((__int128)a * b) >> 64); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int __mul24(int a, int b) { return ((a << 8) >> 8) * ((b << 8) >> 8); }
inline unsigned int __umul24(unsigned int a, unsigned int b) { return (a & 0xffffffu) * (b & 0xffffffu); }
inline unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s) {
  const unsigned long long v = (unsigned long long)y << 32 | x;
  unsigned int r = 0;
  for (int i = 0; i < 4; ++i) r |= (unsigned int)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return r;
}
inline unsigned int __funnelshift_l(unsigned int lo, unsigned int hi, unsigned int shift) {
  const unsigned long long v = (unsigned long long)hi << 32 | lo;
  return (unsigned int)((v << (shift & 31)) >> 32);
}
inline unsigned int __funnelshift_r(unsigned int lo, unsigned int hi, unsigned int shift) {
  const unsigned long long v = (unsigned long long)hi << 32 | lo;
  return (unsigned int)(v >> (shift & 31));
}
template <typename T> inline T __ldg(const T* p) { return *p; }
template <typename T> inline T __ldcs(const T* p) { return *p; }
template <typename T> inline void __stcs(T* p, T v) { *p = v; }

// ------------------------------------------------------------------------------------------------
// Atomics (the blocks of a launch run on one OS thread, but these are real atomics anyway)

#define CUDA_HARNESS_ATOMIC_INT(T)                                                               \
  inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }           \
  inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }           \
  inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }         \
  inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }           \
  inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }             \
  inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); }           \
  inline T atomicCAS(T* p, T expected, T desired) {                                              \
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); \
    return expected;                                                                             \
  }                                                                                              \
  inline T atomicMin(T* p, T v) {                                                                \
    T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);                                                \
    while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST,          \
                                                   __ATOMIC_SEQ_CST)) {}                         \
    return old;                                                                                  \
  }                                                                                              \
  inline T atomicMax(T* p, T v) {                                                                \
    T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);                                                \
    while (v > old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST,          \
                                                   __ATOMIC_SEQ_CST)) {}                         \
    return old;                                                                                  \
  }

CUDA_HARNESS_ATOMIC_INT(int)
CUDA_HARNESS_ATOMIC_INT(unsigned int)
CUDA_HARNESS_ATOMIC_INT(long long)
CUDA_HARNESS_ATOMIC_INT(unsigned long long)

inline unsigned short atomicCAS(unsigned short* p, unsigned short expected, unsigned short desired) {
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return expected;
}
inline unsigned int atomicInc(unsigned int* p, unsigned int limit) {
  unsigned int old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (!__atomic_compare_exchange_n(p, &old, old >= limit ? 0u : old + 1u, false,
                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
  return old;
}
inline unsigned int atomicDec(unsigned int* p, unsigned int limit) {
  unsigned int old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (!__atomic_compare_exchange_n(p, &old, (old == 0u || old > limit) ? limit : old - 1u,
                                      false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
  return old;
}
template <typename F, typename B> inline F cuda_harness_atomic_float(F* p, F v, bool add) {
  B* bits = reinterpret_cast<B*>(p);
  B old = __atomic_load_n(bits, __ATOMIC_SEQ_CST);
  for (;;) {
    const F cur = cuda_harness_bits<F>(old);
    const F next = add ? cur + v : v;
    if (__atomic_compare_exchange_n(bits, &old, cuda_harness_bits<B>(next), false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST))
      return cur;
  }
}
inline float atomicAdd(float* p, float v) {
  return cuda_harness_atomic_float<float, unsigned int>(p, v, true);
}
inline double atomicAdd(double* p, double v) {
  return cuda_harness_atomic_float<double, unsigned long long>(p, v, true);
}
inline float atomicExch(float* p, float v) {
  return cuda_harness_atomic_float<float, unsigned int>(p, v, false);
}
#define atomicAdd_block atomicAdd
#define atomicAdd_system atomicAdd
#define atomicMax_block atomicMax
#define atomicMin_block atomicMin
#define atomicOr_block atomicOr
#define atomicCAS_block atomicCAS
#define atomicExch_block atomicExch

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline long long clock64() { return (long long)__builtin_ia32_rdtsc(); }

// ------------------------------------------------------------------------------------------------
// The scheduler: fibers, block barrier, warp collectives, faults

namespace cuda_harness {

constexpr unsigned kWarp = 32;
constexpr size_t kStackSize = 512 * 1024;
constexpr size_t kDynamicSharedMax = 48 * 1024;  // the default limit without an opt-in attribute
constexpr size_t kDynamicSharedGuard = 16 * 1024;
constexpr unsigned char kSharedPoison = 0xFF;    // NaN for float/double, -1 for integers
constexpr unsigned char kSharedGuard = 0x5A;

enum Collective : int {
  SHFL_IDX, SHFL_UP, SHFL_DOWN, SHFL_XOR, BALLOT, ANY, ALL, SYNCWARP, MATCH_ANY, MATCH_ALL,
  REDUCE_ADD, REDUCE_MIN, REDUCE_MAX, REDUCE_UMIN, REDUCE_UMAX, REDUCE_AND, REDUCE_OR, REDUCE_XOR,
};
static const char* const kCollectiveNames[] = {
  "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync", "__ballot_sync",
  "__any_sync", "__all_sync", "__syncwarp", "__match_any_sync", "__match_all_sync",
  "__reduce_add_sync", "__reduce_min_sync", "__reduce_max_sync", "__reduce_min_sync",
  "__reduce_max_sync", "__reduce_and_sync", "__reduce_or_sync", "__reduce_xor_sync",
};
enum BarrierKind : int { BAR_SYNC, BAR_COUNT, BAR_AND, BAR_OR };
static const char* const kBarrierNames[] = {
  "__syncthreads", "__syncthreads_count", "__syncthreads_and", "__syncthreads_or",
};
enum Wait : int { RUNNING, AT_BARRIER, AT_WARP, YIELDED, DONE };

struct Fiber {
  ucontext_t ctx;
  uint3 tid;
  unsigned linear;
  int wait;
  unsigned long long result;
};

struct WarpOp {
  int kind;
  unsigned mask;
  unsigned arrived;
  unsigned long long value[kWarp];
  int arg[kWarp];
  int width[kWarp];
};

struct Launch {
  void (*invoke)(void**);
  void** args;
  dim3 grid, block;
  unsigned nthreads;
  unsigned long long shared_mem;
  unsigned long long seed;
  Fiber* fibers;
  std::vector<unsigned> order;
  Fiber* current;
  ucontext_t scheduler;
  unsigned bar_arrived;
  int bar_kind;
  unsigned long long bar_acc;
  std::vector<std::vector<WarpOp>> warp_ops;
  bool failed;
  char error[1024];
  sigjmp_buf fault_jump;
  void* fault_addr;
  int fault_signal;
  int fault_write;
};

inline thread_local Launch* tl_launch = nullptr;

// Dynamic shared memory: every `extern __shared__` declaration of a source is an alias of this
// buffer (the generated wrapper declares the aliases before including the source).
// (Not `inline`: an alias needs a strong definition in this translation unit.)
extern "C" {
alignas(256) thread_local unsigned char cuda_harness_dynamic_shared[kDynamicSharedMax + kDynamicSharedGuard];
}

inline unsigned long long splitmix(unsigned long long& state) {
  unsigned long long z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

__attribute__((noinline)) inline void switch_to_scheduler(Launch* L, Fiber* f) {
  swapcontext(&f->ctx, &L->scheduler);
}

// Stop the launch with an error: the fiber never runs again.
__attribute__((noinline, format(printf, 1, 2))) inline void fail(const char* fmt, ...) {
  Launch* L = tl_launch;
  Fiber* f = L->current;
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(L->error, sizeof L->error, "block (%u, %u, %u), thread (%u, %u, %u): %s", blockIdx.x,
           blockIdx.y, blockIdx.z, f->tid.x, f->tid.y, f->tid.z, msg);
  L->failed = true;
  switch_to_scheduler(L, f);
  __builtin_unreachable();
}

__attribute__((noinline)) inline unsigned long long block_barrier(int kind, int predicate) {
  Launch* L = tl_launch;
  Fiber* f = L->current;
  if (L->bar_arrived == 0) {
    L->bar_kind = kind;
    L->bar_acc = kind == BAR_AND ? 1 : 0;
  } else if (L->bar_kind != kind) {
    fail("%s reached while other threads of the block wait at %s", kBarrierNames[kind],
         kBarrierNames[L->bar_kind]);
  }
  const bool p = predicate != 0;
  if (kind == BAR_COUNT) L->bar_acc += p;
  if (kind == BAR_AND) L->bar_acc &= p;
  if (kind == BAR_OR) L->bar_acc |= p;
  if (++L->bar_arrived == L->nthreads) {
    L->bar_arrived = 0;
    for (unsigned t = 0; t < L->nthreads; ++t) {
      if (L->fibers[t].wait == AT_BARRIER) {
        L->fibers[t].wait = RUNNING;
        L->fibers[t].result = L->bar_acc;
      }
    }
    return L->bar_acc;
  }
  f->wait = AT_BARRIER;
  switch_to_scheduler(L, f);
  return f->result;
}

inline unsigned warp_population(const Launch* L, unsigned warp) {
  const unsigned first = warp * kWarp;
  const unsigned n = L->nthreads - first < kWarp ? L->nthreads - first : kWarp;
  return n == kWarp ? 0xffffffffu : ((1u << n) - 1u);
}

inline unsigned shfl_source(int kind, unsigned lane, int b, int width, bool* valid) {
  const unsigned w = (unsigned)width;
  const unsigned min_lane = lane & ~(w - 1u) & 31u;
  const unsigned max_lane = min_lane | (31u & (w - 1u));
  long j = lane;
  bool ok = true;
  switch (kind) {
    case SHFL_IDX: j = min_lane | ((unsigned)b & (w - 1u)); ok = j <= (long)max_lane; break;
    case SHFL_UP: j = (long)lane - b; ok = j >= (long)min_lane; break;
    case SHFL_DOWN: j = (long)lane + b; ok = j <= (long)max_lane; break;
    case SHFL_XOR: j = (long)(lane ^ (unsigned)b); ok = j <= (long)max_lane; break;
  }
  *valid = ok;
  return ok ? (unsigned)j : lane;
}

__attribute__((noinline)) inline unsigned long long warp_collective(int kind, unsigned mask,
                                                                   unsigned long long value,
                                                                   int arg = 0, int width = 32) {
  Launch* L = tl_launch;
  Fiber* f = L->current;
  const unsigned lane = f->linear % kWarp, warp = f->linear / kWarp;
  const char* name = kCollectiveNames[kind];
  if (!((mask >> lane) & 1u))
    fail("%s(mask=0x%08x) called by lane %u, which is not in the mask", name, mask, lane);
  const unsigned population = warp_population(L, warp);
  if (mask & ~population)
    fail("%s(mask=0x%08x) names lanes that do not exist (the block has %u threads)", name, mask,
         L->nthreads);
  if (kind <= SHFL_XOR && (width <= 0 || width > 32 || (width & (width - 1))))
    fail("%s: width %d is not a power of two in [1, 32]", name, width);
  std::vector<WarpOp>& ops = L->warp_ops[warp];
  WarpOp* op = nullptr;
  for (WarpOp& o : ops) {
    if (!(o.mask & mask)) continue;
    if (o.mask != mask)
      fail("%s(mask=0x%08x) while lanes of mask 0x%08x wait at %s: overlapping masks", name, mask,
           o.mask, kCollectiveNames[o.kind]);
    if (o.kind != kind)
      fail("%s(mask=0x%08x) while other lanes of the mask wait at %s", name, mask,
           kCollectiveNames[o.kind]);
    op = &o;
  }
  if (!op) {
    ops.push_back(WarpOp{});
    op = &ops.back();
    op->kind = kind;
    op->mask = mask;
    op->arrived = 0;
  }
  op->value[lane] = value;
  op->arg[lane] = arg;
  op->width[lane] = width;
  op->arrived |= 1u << lane;
  if (op->arrived != mask) {
    f->wait = AT_WARP;
    switch_to_scheduler(L, f);
    return f->result;
  }
  // The last lane computes every lane's result.
  unsigned long long result[kWarp] = {};
  unsigned ballot = 0;
  bool all_equal = true;
  for (unsigned l = 0; l < kWarp; ++l) {
    if (!((mask >> l) & 1u)) continue;
    if (op->value[l] != 0) ballot |= 1u << l;
    if (op->value[l] != op->value[lane]) all_equal = false;
  }
  for (unsigned l = 0; l < kWarp; ++l) {
    if (!((mask >> l) & 1u)) continue;
    switch (kind) {
      case SHFL_IDX: case SHFL_UP: case SHFL_DOWN: case SHFL_XOR: {
        bool valid;
        const unsigned src = shfl_source(kind, l, op->arg[l], op->width[l], &valid);
        if (!((mask >> src) & 1u))
          fail("%s(mask=0x%08x): lane %u reads lane %u, which is not in the mask (undefined)", name,
               mask, l, src);
        result[l] = op->value[src];
        break;
      }
      case BALLOT: result[l] = ballot; break;
      case ANY: result[l] = ballot != 0; break;
      case ALL: result[l] = ballot == mask; break;
      case SYNCWARP: result[l] = 0; break;
      case MATCH_ANY: {
        unsigned same = 0;
        for (unsigned k = 0; k < kWarp; ++k)
          if (((mask >> k) & 1u) && op->value[k] == op->value[l]) same |= 1u << k;
        result[l] = same;
        break;
      }
      case MATCH_ALL: result[l] = all_equal ? (mask | (1ull << 32)) : 0; break;
      default: {
        unsigned long long acc = kind == REDUCE_AND ? 0xffffffffull : 0;
        bool first = true;
        for (unsigned k = 0; k < kWarp; ++k) {
          if (!((mask >> k) & 1u)) continue;
          const unsigned u = (unsigned)op->value[k];
          const int s = (int)u;
          switch (kind) {
            case REDUCE_ADD: acc = (unsigned)(acc + u); break;
            case REDUCE_MIN: acc = (first || s < (int)(unsigned)acc) ? (unsigned)s : acc; break;
            case REDUCE_MAX: acc = (first || s > (int)(unsigned)acc) ? (unsigned)s : acc; break;
            case REDUCE_UMIN: acc = (first || u < (unsigned)acc) ? u : acc; break;
            case REDUCE_UMAX: acc = (first || u > (unsigned)acc) ? u : acc; break;
            case REDUCE_AND: acc &= u; break;
            case REDUCE_OR: acc |= u; break;
            case REDUCE_XOR: acc ^= u; break;
          }
          first = false;
        }
        result[l] = acc;
      }
    }
  }
  for (unsigned l = 0; l < kWarp; ++l) {
    if (!((mask >> l) & 1u) || l == lane) continue;
    Fiber& other = L->fibers[warp * kWarp + l];
    other.result = result[l];
    other.wait = RUNNING;
  }
  ops.erase(ops.begin() + (op - ops.data()));
  return result[lane];
}

__attribute__((noinline)) inline unsigned active_mask() {
  Launch* L = tl_launch;
  const unsigned warp = L->current->linear / kWarp;
  const unsigned population = warp_population(L, warp);
  unsigned mask = 0;
  for (unsigned l = 0; l < kWarp; ++l)
    if (((population >> l) & 1u) && L->fibers[warp * kWarp + l].wait != DONE) mask |= 1u << l;
  return mask;
}

__attribute__((noinline)) inline void yield() {
  Launch* L = tl_launch;
  Fiber* f = L->current;
  f->wait = YIELDED;
  switch_to_scheduler(L, f);
}

template <typename T> inline unsigned long long to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp primitive on a wide type");
  unsigned long long out = 0;
  memcpy(&out, &v, sizeof v);
  return out;
}
template <typename T> inline T from_bits(unsigned long long v) {
  T out;
  memcpy(&out, &v, sizeof out);
  return out;
}

}  // namespace cuda_harness

inline void __syncthreads() { cuda_harness::block_barrier(cuda_harness::BAR_SYNC, 1); }
inline int __syncthreads_count(int p) { return (int)cuda_harness::block_barrier(cuda_harness::BAR_COUNT, p); }
inline int __syncthreads_and(int p) { return (int)cuda_harness::block_barrier(cuda_harness::BAR_AND, p); }
inline int __syncthreads_or(int p) { return (int)cuda_harness::block_barrier(cuda_harness::BAR_OR, p); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  cuda_harness::warp_collective(cuda_harness::SYNCWARP, mask, 0);
}
inline unsigned __activemask() { return cuda_harness::active_mask(); }
inline void __nanosleep(unsigned) { cuda_harness::yield(); }

template <typename T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  using namespace cuda_harness;
  return from_bits<T>(warp_collective(SHFL_IDX, mask, to_bits(v), src, width));
}
template <typename T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  using namespace cuda_harness;
  return from_bits<T>(warp_collective(SHFL_UP, mask, to_bits(v), (int)delta, width));
}
template <typename T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  using namespace cuda_harness;
  return from_bits<T>(warp_collective(SHFL_DOWN, mask, to_bits(v), (int)delta, width));
}
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  using namespace cuda_harness;
  return from_bits<T>(warp_collective(SHFL_XOR, mask, to_bits(v), lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int p) {
  return (unsigned)cuda_harness::warp_collective(cuda_harness::BALLOT, mask, p != 0);
}
inline int __any_sync(unsigned mask, int p) {
  return (int)cuda_harness::warp_collective(cuda_harness::ANY, mask, p != 0);
}
inline int __all_sync(unsigned mask, int p) {
  return (int)cuda_harness::warp_collective(cuda_harness::ALL, mask, p != 0);
}
template <typename T> inline unsigned __match_any_sync(unsigned mask, T v) {
  using namespace cuda_harness;
  return (unsigned)warp_collective(MATCH_ANY, mask, to_bits(v));
}
template <typename T> inline unsigned __match_all_sync(unsigned mask, T v, int* pred) {
  using namespace cuda_harness;
  const unsigned long long r = warp_collective(MATCH_ALL, mask, to_bits(v));
  *pred = (int)(r >> 32);
  return (unsigned)r;
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned v) {
  return (unsigned)cuda_harness::warp_collective(cuda_harness::REDUCE_ADD, mask, v);
}
inline int __reduce_add_sync(unsigned mask, int v) {
  return (int)(unsigned)cuda_harness::warp_collective(cuda_harness::REDUCE_ADD, mask, (unsigned)v);
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned v) {
  return (unsigned)cuda_harness::warp_collective(cuda_harness::REDUCE_UMIN, mask, v);
}
inline int __reduce_min_sync(unsigned mask, int v) {
  return (int)(unsigned)cuda_harness::warp_collective(cuda_harness::REDUCE_MIN, mask, (unsigned)v);
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned v) {
  return (unsigned)cuda_harness::warp_collective(cuda_harness::REDUCE_UMAX, mask, v);
}
inline int __reduce_max_sync(unsigned mask, int v) {
  return (int)(unsigned)cuda_harness::warp_collective(cuda_harness::REDUCE_MAX, mask, (unsigned)v);
}
inline unsigned __reduce_and_sync(unsigned mask, unsigned v) {
  return (unsigned)cuda_harness::warp_collective(cuda_harness::REDUCE_AND, mask, v);
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned v) {
  return (unsigned)cuda_harness::warp_collective(cuda_harness::REDUCE_OR, mask, v);
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned v) {
  return (unsigned)cuda_harness::warp_collective(cuda_harness::REDUCE_XOR, mask, v);
}
