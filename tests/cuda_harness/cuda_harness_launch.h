// The host side of the harness: kernel signatures, guarded buffers, fault capture and the grid
// loop. Included by the generated wrapper after the .cu source it instantiates.
#pragma once


namespace cuda_harness {

// ------------------------------------------------------------------------------------------------
// Signatures: one code per parameter, "f4" (float), "i8" (long long), "pcf4" (const float*),
// "pu8" (unsigned long long*), ... so that Python can check the argument tuple before a launch.

template <typename T> struct Code { static constexpr const char* value = nullptr; };
#define CUDA_HARNESS_CODE(T, C) \
  template <> struct Code<T> { static constexpr const char* value = C; };
CUDA_HARNESS_CODE(bool, "b1")
CUDA_HARNESS_CODE(char, "i1")
CUDA_HARNESS_CODE(signed char, "i1")
CUDA_HARNESS_CODE(unsigned char, "u1")
CUDA_HARNESS_CODE(short, "i2")
CUDA_HARNESS_CODE(unsigned short, "u2")
CUDA_HARNESS_CODE(int, "i4")
CUDA_HARNESS_CODE(unsigned int, "u4")
CUDA_HARNESS_CODE(long, "i8")
CUDA_HARNESS_CODE(unsigned long, "u8")
CUDA_HARNESS_CODE(long long, "i8")
CUDA_HARNESS_CODE(unsigned long long, "u8")
CUDA_HARNESS_CODE(float, "f4")
CUDA_HARNESS_CODE(double, "f8")
CUDA_HARNESS_CODE(float2, "f4x2")
CUDA_HARNESS_CODE(float4, "f4x4")
CUDA_HARNESS_CODE(double2, "f8x2")
CUDA_HARNESS_CODE(int2, "i4x2")
CUDA_HARNESS_CODE(int4, "i4x4")
CUDA_HARNESS_CODE(uint2, "u4x2")
CUDA_HARNESS_CODE(uint4, "u4x4")
CUDA_HARNESS_CODE(uchar4, "u1x4")
CUDA_HARNESS_CODE(longlong2, "i8x2")
CUDA_HARNESS_CODE(ulonglong2, "u8x2")

template <typename A> std::string arg_code() {
  if constexpr (std::is_pointer_v<A>) {
    using P = std::remove_pointer_t<A>;
    using E = std::remove_cv_t<P>;
    const std::string prefix = std::is_const_v<P> ? "pc" : "p";
    if constexpr (std::is_void_v<E>) {
      return prefix + "v";
    } else {
      static_assert(Code<E>::value != nullptr, "kernel parameter: pointer to a type the harness cannot check");
      return prefix + Code<E>::value;
    }
  } else {
    static_assert(!std::is_reference_v<A> && Code<A>::value != nullptr,
                  "kernel parameter of a type the harness cannot marshal");
    return Code<A>::value;
  }
}

template <typename F> struct Kernel;
template <typename... A> struct Kernel<void (*)(A...)> {
  using Args = std::tuple<A...>;
  static std::string signature() {
    std::string s;
    ((s += arg_code<A>(), s += ","), ...);
    if (!s.empty()) s.pop_back();
    return s;
  }
};

template <auto Fn, typename Args, size_t... I>
void invoke_with(void** args, std::index_sequence<I...>) {
  Fn(*static_cast<std::tuple_element_t<I, Args>*>(args[I])...);
}
template <auto Fn> void invoke(void** args) {
  using Args = typename Kernel<decltype(Fn)>::Args;
  invoke_with<Fn, Args>(args, std::make_index_sequence<std::tuple_size_v<Args>>{});
}

struct KernelEntry {
  const char* name;
  const char* signature;
  void (*invoke)(void**);
};

template <auto Fn> KernelEntry entry(const char* name) {
  static const std::string signature = Kernel<decltype(Fn)>::signature();
  return KernelEntry{name, signature.c_str(), &invoke<Fn>};
}

// ------------------------------------------------------------------------------------------------
// Fibers

inline void fiber_main() {
  for (;;) {
    Launch* L = tl_launch;
    Fiber* f = L->current;
    L->invoke(L->args);
    f->wait = DONE;
    swapcontext(&f->ctx, &L->scheduler);
  }
}

struct StackPool {
  std::vector<char*> stacks;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  ~StackPool() {
    for (char* s : stacks) munmap(s, kStackSize + page);
  }
  char* get(size_t i) {
    while (stacks.size() <= i) {
      void* p = mmap(nullptr, kStackSize + page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) return nullptr;
      mprotect(p, page, PROT_NONE);  // overflow guard at the low end
      stacks.push_back(static_cast<char*>(p));
    }
    return stacks[i];
  }
};
inline thread_local StackPool tl_stacks;
inline thread_local std::vector<Fiber> tl_fibers;

// ------------------------------------------------------------------------------------------------
// Faults: a SIGSEGV/SIGBUS/SIGFPE while a kernel runs ends the launch with the faulting address

inline std::mutex g_signal_mutex;
inline int g_signal_users = 0;
inline struct sigaction g_old_actions[3];
inline const int kSignals[3] = {SIGSEGV, SIGBUS, SIGFPE};

inline void on_fault(int sig, siginfo_t* info, void* context) {
  Launch* L = tl_launch;
  if (L == nullptr) {  // not ours: hand it to whoever was there before
    for (int i = 0; i < 3; ++i)
      if (kSignals[i] == sig) sigaction(sig, &g_old_actions[i], nullptr);
    return;
  }
  L->fault_addr = info->si_addr;
  L->fault_signal = sig;
#if defined(__x86_64__)
  L->fault_write = (static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_ERR] & 2) ? 1 : 0;
#else
  (void)context;
  L->fault_write = -1;
#endif
  siglongjmp(L->fault_jump, 1);
}

struct SignalScope {
  stack_t old_stack{};
  bool stack_set = false;
  SignalScope() {
    static thread_local std::vector<char> alt(1 << 16);
    stack_t ss{};
    ss.ss_sp = alt.data();
    ss.ss_size = alt.size();
    stack_set = sigaltstack(&ss, &old_stack) == 0;
    std::lock_guard<std::mutex> lock(g_signal_mutex);
    if (g_signal_users++ == 0) {
      struct sigaction sa {};
      sa.sa_sigaction = on_fault;
      sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
      sigemptyset(&sa.sa_mask);
      for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &sa, &g_old_actions[i]);
    }
  }
  ~SignalScope() {
    {
      std::lock_guard<std::mutex> lock(g_signal_mutex);
      if (--g_signal_users == 0)
        for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &g_old_actions[i], nullptr);
    }
    if (stack_set) sigaltstack(&old_stack, nullptr);
  }
};

// ------------------------------------------------------------------------------------------------
// The grid

inline void describe_deadlock(Launch* L) {
  unsigned at_barrier = 0, at_warp = 0, done = 0;
  const Fiber* first_done = nullptr;
  const Fiber* first_warp = nullptr;
  for (unsigned t = 0; t < L->nthreads; ++t) {
    const Fiber& f = L->fibers[t];
    if (f.wait == AT_BARRIER) ++at_barrier;
    if (f.wait == AT_WARP && !first_warp) first_warp = &f;
    if (f.wait == AT_WARP) ++at_warp;
    if (f.wait == DONE && !first_done) first_done = &f;
    if (f.wait == DONE) ++done;
  }
  char warp[256] = "";
  if (first_warp) {
    const unsigned w = first_warp->linear / kWarp;
    for (const WarpOp& op : L->warp_ops[w]) {
      snprintf(warp, sizeof warp, "; lanes 0x%08x of warp %u wait at %s(mask=0x%08x) for lanes 0x%08x",
               op.arrived, w, kCollectiveNames[op.kind], op.mask, op.mask & ~op.arrived);
      break;
    }
  }
  char exited[128] = "";
  if (first_done)
    snprintf(exited, sizeof exited, " (first: thread (%u, %u, %u))", first_done->tid.x,
             first_done->tid.y, first_done->tid.z);
  snprintf(L->error, sizeof L->error,
           "block (%u, %u, %u): deadlock: %u thread(s) wait at %s, %u at warp primitives, %u have "
           "exited%s%s. Every thread of the block must reach each __syncthreads (returning early "
           "before one is undefined behaviour on a GPU) and every lane of a mask its warp primitive",
           blockIdx.x, blockIdx.y, blockIdx.z, at_barrier, kBarrierNames[L->bar_kind], at_warp,
           done, exited, warp);
  L->failed = true;
}

inline bool run_block(Launch* L) {
  unsigned char* shared = cuda_harness_dynamic_shared;
  memset(shared, kSharedPoison, L->shared_mem);
  const unsigned n = L->nthreads;
  for (unsigned i = n - 1; i > 0; --i) {
    const unsigned j = (unsigned)(splitmix(L->seed) % (i + 1));
    std::swap(L->order[i], L->order[j]);
  }
  for (unsigned t = 0; t < n; ++t) L->fibers[t].wait = RUNNING;
  L->bar_arrived = 0;
  L->bar_kind = BAR_SYNC;
  for (auto& ops : L->warp_ops) ops.clear();
  unsigned done = 0;
  unsigned long long spinning = 0;
  while (done < n) {
    bool progress = false;
    for (unsigned k = 0; k < n; ++k) {
      Fiber* f = &L->fibers[L->order[k]];
      if (f->wait == YIELDED) f->wait = RUNNING;
      else if (f->wait != RUNNING) continue;
      threadIdx = f->tid;
      L->current = f;
      swapcontext(&L->scheduler, &f->ctx);
      if (L->failed) return false;
      progress = true;
      if (f->wait == DONE) ++done;
      spinning = f->wait == YIELDED ? spinning + 1 : 0;
    }
    if (spinning > 10000000ull) {
      snprintf(L->error, sizeof L->error,
               "block (%u, %u, %u): threads keep spinning (__nanosleep) for something no thread "
               "of the block does; waiting for another block is not supported (blocks run one "
               "after another)", blockIdx.x, blockIdx.y, blockIdx.z);
      L->failed = true;
      return false;
    }
    if (!progress) {
      describe_deadlock(L);
      return false;
    }
  }
  static const std::vector<unsigned char> intact(kDynamicSharedMax + kDynamicSharedGuard, kSharedGuard);
  const size_t tail = kDynamicSharedMax + kDynamicSharedGuard - L->shared_mem;
  if (memcmp(shared + L->shared_mem, intact.data(), tail) == 0) return true;
  for (size_t i = L->shared_mem; i < kDynamicSharedMax + kDynamicSharedGuard; ++i) {
    if (shared[i] != kSharedGuard) {
      snprintf(L->error, sizeof L->error,
               "block (%u, %u, %u) wrote dynamic shared memory at byte %zu, beyond the %llu bytes "
               "given at launch", blockIdx.x, blockIdx.y, blockIdx.z, i, L->shared_mem);
      L->failed = true;
      return false;
    }
  }
  return true;
}

inline unsigned long long gcd(unsigned long long a, unsigned long long b) {
  while (b) {
    const unsigned long long t = a % b;
    a = b;
    b = t;
  }
  return a;
}

inline int run_grid(Launch* L) {
  gridDim = L->grid;
  blockDim = L->block;
  const unsigned long long nblocks = (unsigned long long)L->grid.x * L->grid.y * L->grid.z;
  // Blocks in a permuted order: b = (a * i + c) mod nblocks with a coprime to nblocks.
  unsigned long long a = 1, c = 0;
  if (nblocks > 1) {
    a = splitmix(L->seed) % nblocks;
    while (a == 0 || gcd(a, nblocks) != 1) a = (a + 1) % nblocks;
    c = splitmix(L->seed) % nblocks;
  }
  memset(cuda_harness_dynamic_shared, kSharedGuard, sizeof cuda_harness_dynamic_shared);
  for (unsigned long long i = 0; i < nblocks; ++i) {
    const unsigned long long b =
        (unsigned long long)(((unsigned __int128)a * i + c) % (unsigned __int128)nblocks);
    blockIdx.x = (unsigned)(b % L->grid.x);
    blockIdx.y = (unsigned)((b / L->grid.x) % L->grid.y);
    blockIdx.z = (unsigned)(b / ((unsigned long long)L->grid.x * L->grid.y));
    if (!run_block(L)) return 1;
  }
  return 0;
}

// (A function of its own: getcontext returns twice as far as the compiler knows.)
__attribute__((noinline)) inline void start_fiber(Fiber* f, char* stack) {
  getcontext(&f->ctx);
  f->ctx.uc_stack.ss_sp = stack;
  f->ctx.uc_stack.ss_size = kStackSize;
  f->ctx.uc_link = nullptr;
  makecontext(&f->ctx, fiber_main, 0);
}

// run_grid with the fault handlers installed: 0 ran, 1 error, 2 fault (details in `fault`).
__attribute__((noinline)) inline int run_with_signals(Launch* const L, long long* const fault) {
  SignalScope signals;
  tl_launch = L;
  int rc = 2;
  if (sigsetjmp(L->fault_jump, 1) == 0) {
    rc = run_grid(L);
  } else {
    fault[0] = (long long)(intptr_t)L->fault_addr;
    fault[1] = L->fault_signal;
    fault[2] = L->fault_write;
    snprintf(L->error, sizeof L->error, "block (%u, %u, %u), thread (%u, %u, %u): signal %d",
             blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z,
             L->fault_signal);
  }
  tl_launch = nullptr;
  return rc;
}

}  // namespace cuda_harness

extern "C" {

// 0: ran; 1: error (message in `error`); 2: fault (fault[0] address, fault[1] signal,
// fault[2] 1 for a write, 0 for a read, -1 unknown).
__attribute__((visibility("default"))) int cuda_harness_launch(
    void (*invoke)(void**), void** args, const unsigned* grid, const unsigned* block,
    unsigned long long shared_mem, unsigned long long seed, char* error, int error_len,
    long long* fault) {
  using namespace cuda_harness;
  auto reject = [&](const char* fmt, unsigned long long a, unsigned long long b) {
    snprintf(error, (size_t)error_len, fmt, a, b);
    return 1;
  };
  for (int d = 0; d < 3; ++d) {
    if (grid[d] == 0 || block[d] == 0)
      return reject("grid and block sizes must be >= 1 (%llu, %llu)", grid[d], block[d]);
  }
  if (block[0] > 1024 || block[1] > 1024 || block[2] > 64)
    return reject("block (%llu, %llu, ...) exceeds the limits (1024, 1024, 64)", block[0], block[1]);
  const unsigned long long nthreads = (unsigned long long)block[0] * block[1] * block[2];
  if (nthreads > 1024) return reject("block of %llu threads: at most %llu per block", nthreads, 1024);
  if (grid[0] > 2147483647u) return reject("grid.x = %llu exceeds %llu", grid[0], 2147483647ull);
  if (grid[1] > 65535 || grid[2] > 65535)
    return reject("grid.y = %llu or grid.z = %llu exceeds 65535", grid[1], grid[2]);
  if (shared_mem > kDynamicSharedMax)
    return reject("dynamic shared memory of %llu bytes exceeds the %llu bytes allowed without "
                  "an opt-in attribute", shared_mem, kDynamicSharedMax);

  std::unique_ptr<Launch> holder(new Launch());
  Launch* const L = holder.get();
  L->invoke = invoke;
  L->args = args;
  L->grid = dim3(grid[0], grid[1], grid[2]);
  L->block = dim3(block[0], block[1], block[2]);
  L->nthreads = (unsigned)nthreads;
  L->shared_mem = shared_mem;
  L->seed = seed;
  L->order.resize(nthreads);
  L->warp_ops.resize((nthreads + kWarp - 1) / kWarp);
  tl_fibers.resize(nthreads);
  L->fibers = tl_fibers.data();
  for (unsigned t = 0; t < nthreads; ++t) {
    Fiber& f = L->fibers[t];
    char* stack = tl_stacks.get(t);
    if (stack == nullptr) return reject("cannot allocate a stack for thread %llu of %llu", t, nthreads);
    start_fiber(&f, stack + tl_stacks.page);
    f.linear = t;
    f.tid = uint3{t % block[0], (t / block[0]) % block[1], t / (block[0] * block[1])};
    L->order[t] = t;
  }

  const int rc = run_with_signals(L, fault);
  snprintf(error, (size_t)error_len, "%s", L->error);
  return rc;
}

// A buffer whose data ends at a page boundary (rounded up to 256 bytes, the alignment CUDA
// allocations have), between two inaccessible megabytes.
__attribute__((visibility("default"))) void* cuda_harness_alloc(unsigned long long nbytes,
                                                               unsigned long long* base,
                                                               unsigned long long* size) {
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  const size_t guard = 1 << 20;
  const size_t rounded = (nbytes + 255) / 256 * 256;
  const size_t pages = (rounded + page - 1) / page * page;
  const size_t total = guard + pages + guard;
  void* p = mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  char* start = static_cast<char*>(p);
  if (pages && mprotect(start + guard, pages, PROT_READ | PROT_WRITE) != 0) {
    munmap(p, total);
    return nullptr;
  }
  *base = (unsigned long long)(uintptr_t)p;
  *size = total;
  return start + guard + pages - rounded;
}

__attribute__((visibility("default"))) void cuda_harness_free(unsigned long long base,
                                                             unsigned long long size) {
  munmap(reinterpret_cast<void*>((uintptr_t)base), size);
}

}  // extern "C"
