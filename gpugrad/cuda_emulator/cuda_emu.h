// CUDA built-ins for running kernels/*.cu on the CPU: gpugrad's CUDA emulator.
//
// g++ compiles a kernel file (the exact text NVRTC gets) after this header. Each CUDA thread of a
// block is a fiber with its own stack; the threads of one block run interleaved on one OS thread
// and switch only at synchronisation points (__syncthreads, warp shuffles and votes, __syncwarp),
// in an order the launch chooses (forward, reverse, or a seeded shuffle redrawn every round), so
// a missing barrier or a race between threads changes the result. Blocks run one after another.
//
// What is checked while a kernel runs, each failure reported with the thread, block and source
// line: every thread of the block reaches the same __syncthreads (none exited, none elsewhere);
// every lane a warp intrinsic's mask names exists, has not exited and arrives at the same call
// (mask, width and line agree); a lane never reads a lane outside the mask; vector loads and
// stores (float4, double2, ...) are aligned to their size; atomics are aligned; __trap and a
// failed assert stop the launch. A wild access faults on the guard pages around every device
// buffer and is reported by the launcher in Python. Static __shared__ memory is refilled with a
// NaN pattern at the start of every block, so reading shared memory no thread wrote shows up.
//
// GG_EMU_SCAN: only the macros that let a preprocessor run find each kernel and its launch
// bounds (gpugrad/cuda_emulator/_build.py).
#pragma once

#ifdef GG_EMU_SCAN
#define __global__ gg_emu_global_marker
#define __launch_bounds__(...) gg_emu_launch_bounds(__VA_ARGS__)
#else

#undef _FORTIFY_SOURCE  // its longjmp check rejects jumps from a fiber's stack to the launcher
#include <dlfcn.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <string>
#include <type_traits>
#include <utility>

// ---------------------------------------------------------------------------- built-in types

namespace gg_emu {
[[noreturn]] void misaligned_vector(const void* p, int align, const char* type, bool store,
                                    void* pc);
}

// Vector types with CUDA's alignment. A copy from or to memory that is not aligned to the
// type's size is what the GPU reports as a misaligned address; here the copy checks it.
#define GG_EMU_CHECK_VEC(p, A, NAME, STORE)                                            \
  do {                                                                                 \
    if (__builtin_expect(((uintptr_t)(p)) & ((A)-1), 0))                               \
      gg_emu::misaligned_vector((p), (A), NAME, STORE, __builtin_return_address(0));   \
  } while (0)

#define GG_EMU_VEC1(T, N)                                                              \
  struct N##1 {                                                                        \
    T x;                                                                               \
  };                                                                                   \
  static inline N##1 make_##N##1(T a) { return N##1{a}; }
#define GG_EMU_VEC3(T, N)                                                              \
  struct N##3 {                                                                        \
    T x, y, z;                                                                         \
  };                                                                                   \
  static inline N##3 make_##N##3(T a, T b, T c) { return N##3{a, b, c}; }
#define GG_EMU_VEC2(T, N, A)                                                           \
  struct alignas(A) N##2 {                                                             \
    T x, y;                                                                            \
    N##2() = default;                                                                  \
    constexpr N##2(T a, T b) : x(a), y(b) {}                                           \
    __attribute__((noinline)) N##2(const N##2& o) {                                    \
      GG_EMU_CHECK_VEC(&o, A, #N "2", false);                                          \
      x = o.x, y = o.y;                                                                \
    }                                                                                  \
    __attribute__((noinline)) N##2& operator=(const N##2& o) {                         \
      GG_EMU_CHECK_VEC(&o, A, #N "2", false);                                          \
      GG_EMU_CHECK_VEC(this, A, #N "2", true);                                         \
      x = o.x, y = o.y;                                                                \
      return *this;                                                                    \
    }                                                                                  \
  };                                                                                   \
  static inline N##2 make_##N##2(T a, T b) { return N##2(a, b); }
#define GG_EMU_VEC4(T, N, A)                                                           \
  struct alignas(A) N##4 {                                                             \
    T x, y, z, w;                                                                      \
    N##4() = default;                                                                  \
    constexpr N##4(T a, T b, T c, T d) : x(a), y(b), z(c), w(d) {}                     \
    __attribute__((noinline)) N##4(const N##4& o) {                                    \
      GG_EMU_CHECK_VEC(&o, A, #N "4", false);                                          \
      x = o.x, y = o.y, z = o.z, w = o.w;                                              \
    }                                                                                  \
    __attribute__((noinline)) N##4& operator=(const N##4& o) {                         \
      GG_EMU_CHECK_VEC(&o, A, #N "4", false);                                          \
      GG_EMU_CHECK_VEC(this, A, #N "4", true);                                         \
      x = o.x, y = o.y, z = o.z, w = o.w;                                              \
      return *this;                                                                    \
    }                                                                                  \
  };                                                                                   \
  static inline N##4 make_##N##4(T a, T b, T c, T d) { return N##4(a, b, c, d); }
#define GG_EMU_VECS(T, N, A2, A4) \
  GG_EMU_VEC1(T, N) GG_EMU_VEC2(T, N, A2) GG_EMU_VEC3(T, N) GG_EMU_VEC4(T, N, A4)

GG_EMU_VECS(signed char, char, 2, 4)
GG_EMU_VECS(unsigned char, uchar, 2, 4)
GG_EMU_VECS(short, short, 4, 8)
GG_EMU_VECS(unsigned short, ushort, 4, 8)
GG_EMU_VECS(int, int, 8, 16)
GG_EMU_VECS(unsigned int, uint, 8, 16)
GG_EMU_VECS(long, long, 16, 16)
GG_EMU_VECS(unsigned long, ulong, 16, 16)
GG_EMU_VECS(long long, longlong, 16, 16)
GG_EMU_VECS(unsigned long long, ulonglong, 16, 16)
GG_EMU_VECS(float, float, 8, 16)
GG_EMU_VECS(double, double, 16, 16)

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
      : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

// ---------------------------------------------------------------------------- the launch record

namespace gg_emu {

// Shared with Python (ctypes Structure `_Launch` in _runtime.py): keep the two in step.
struct Launch {
  uint32_t grid[3], block[3];
  uint64_t shared_mem;
  void** args;
  int32_t order;  // 0 forward, 1 reverse, 2 seeded shuffle
  int32_t reserved;
  uint64_t seed;
  int64_t n_buffers;        // device buffers, sorted by start: [lo, hi) each
  const uint64_t* buf_lo;
  const uint64_t* buf_hi;
  int32_t* buf_float_atomic;  // set to 1 where a float atomic landed (order of sums varies)
  int64_t n_shared;           // static __shared__ variables: [lo, hi), refilled every block
  const uint64_t* shared_lo;
  const uint64_t* shared_hi;
  // results
  int32_t status;  // 0 ok; see Status
  int32_t signal;
  uint64_t fault_addr;
  uint64_t fault_pc;  // offset in the shared object of the faulting or checking instruction
  int32_t fault_write;  // 1 write, 0 read, -1 unknown
  int32_t thread[3], block_idx[3];
  char message[4096];
};

enum Status { OK = 0, FAULT = 1, SYNC = 2, MISALIGNED = 3, TRAP = 4, BAD_LAUNCH = 5 };

constexpr int kMaxThreads = 1024;
constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kPage = 4096;
constexpr size_t kDynShared = 227 * 1024;

struct SyncDesc {
  int kind;  // 1 shfl idx, 2 up, 3 down, 4 xor, 5 syncwarp, 6 ballot/any/all, 7 match
  unsigned mask;
  int width;
  const char* file;
  int line;
  const char* name;
};

struct Fiber {
  void* sp;
  uint3 tid;
  int lin;
  int done;
  int wait;  // 0 running, 1 __syncthreads, 2 warp intrinsic
  const char* wait_file;
  int wait_line;
  const char* wait_name;
  unsigned wait_mask;
};

struct Warp {
  unsigned present;   // lanes that exist in this block
  unsigned exited;
  unsigned pending;   // lanes waiting in a warp intrinsic
  unsigned released;  // lanes whose intrinsic completed and who have yet to resume
  uint64_t val[32];
  uint64_t out[32];
  int arg[32];
  SyncDesc desc[32];
};

// State of the launch in progress (one at a time per shared object: the launcher holds a lock).
static Launch* g_launch;
static Fiber g_fibers[kMaxThreads];
static Warp g_warps[kMaxThreads / 32];
static Fiber* g_cur;
static void* g_sched_sp;
static int g_nthreads, g_alive, g_exited;
static uint64_t g_progress;
static int g_failed;
static uint3 g_block_idx;
static dim3 g_block_dim, g_grid_dim;
static int g_bar_arrived;
static unsigned g_bar_gen;
static const char* g_bar_file;
static int g_bar_line;
static int g_bar_count, g_bar_result;
static unsigned long long g_clock;
static void (*g_body)(void*);
static void* g_body_ctx;
static char* g_stacks;
static char* g_altstack;
static sigjmp_buf g_jmp;
static int g_perm[kMaxThreads];
alignas(256) static unsigned char g_dyn_shared[kDynShared];

static const uint32_t kPoison = 0xFFF7FBA5u;  // a NaN as float32 and (twice) as float64

static void fill_poison(unsigned char* lo, unsigned char* hi) {
  // The pattern is laid out by address, so every 4-aligned word reads as the same NaN.
  for (unsigned char* p = lo; p < hi; ++p) *p = (unsigned char)(kPoison >> (8 * ((uintptr_t)p & 3)));
}

static void message(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_launch->message, sizeof(g_launch->message), fmt, ap);
  va_end(ap);
}

static void note_thread() {
  if (g_cur) {
    g_launch->thread[0] = g_cur->tid.x, g_launch->thread[1] = g_cur->tid.y;
    g_launch->thread[2] = g_cur->tid.z;
  } else {
    g_launch->thread[0] = g_launch->thread[1] = g_launch->thread[2] = -1;
  }
  g_launch->block_idx[0] = g_block_idx.x, g_launch->block_idx[1] = g_block_idx.y;
  g_launch->block_idx[2] = g_block_idx.z;
}

static uint64_t pc_offset(void* pc) {
  Dl_info info;
  if (pc && dladdr(pc, &info) && info.dli_fbase) return (uint64_t)((char*)pc - (char*)info.dli_fbase);
  return 0;
}

// ---------------------------------------------------------------------------- fibers

#if defined(__x86_64__)
extern "C" void gg_emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .p2align 4
  .hidden gg_emu_switch
  .globl gg_emu_switch
  .type gg_emu_switch, @function
gg_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size gg_emu_switch, .-gg_emu_switch
)");
static void fiber_start();
static void* init_stack(char* top) {
  void** sp = (void**)((uintptr_t)top & ~(uintptr_t)15);
  *--sp = nullptr;               // fake return address: fiber_start sees a called-function rsp
  *--sp = (void*)&fiber_start;   // where gg_emu_switch's ret goes
  for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp rbx r12 r13 r14 r15
  return sp;
}
static inline void switch_to(void** save, void* load) { gg_emu_switch(save, load); }
#else
// Portable fallback: ucontext (slower: each switch saves the signal mask with a system call).
static ucontext_t g_sched_uc;
static ucontext_t g_fiber_uc[kMaxThreads];
static void fiber_start();
static void* init_stack(char* top) { return top; }
#endif

static void yield() {
#if defined(__x86_64__)
  gg_emu_switch(&g_cur->sp, g_sched_sp);
#else
  swapcontext(&g_fiber_uc[g_cur->lin], &g_sched_uc);
#endif
}

// Stop the launch from inside a thread: the scheduler sees g_failed and unwinds.
[[noreturn]] static void fail(int status, const char* fmt, ...) {
  if (!g_failed) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_launch->message, sizeof(g_launch->message), fmt, ap);
    va_end(ap);
    g_launch->status = status;
    note_thread();
    g_failed = 1;
  }
  for (;;) yield();
}

static const char* fmt_tid(const Fiber* f, char* buf, size_t n) {
  snprintf(buf, n, "(%u,%u,%u)", f->tid.x, f->tid.y, f->tid.z);
  return buf;
}

static void lane_list(unsigned m, char* buf, size_t n) {
  size_t k = 0;
  buf[0] = 0;
  for (int i = 0; i < 32 && k + 8 < n; ++i) {
    if (!(m >> i & 1)) continue;
    int j = i;
    while (j + 1 < 32 && (m >> (j + 1) & 1)) ++j;
    k += snprintf(buf + k, n - k, k ? ",%d" : "%d", i);
    if (j > i) k += snprintf(buf + k, n - k, "-%d", j);
    i = j;
  }
}

static void on_exit_thread(Fiber* f) {
  f->done = 1;
  g_alive--;
  g_exited++;
  g_progress++;
  char a[48];
  if (g_bar_arrived > 0)
    fail(SYNC,
         "thread %s exited while %d thread(s) wait at __syncthreads (%s:%d): every thread of the "
         "block must reach each barrier (a return or a loop bound that differs between threads "
         "skips it)",
         fmt_tid(f, a, sizeof a), g_bar_arrived, g_bar_file, g_bar_line);
  Warp& w = g_warps[f->lin >> 5];
  unsigned bit = 1u << (f->lin & 31);
  w.exited |= bit;
  for (int j = 0; j < 32; ++j) {
    if ((w.pending >> j & 1) && (w.desc[j].mask & bit)) {
      char l[160];
      lane_list(w.pending, l, sizeof l);
      fail(SYNC,
           "lane %d (thread %s) exited while lanes %s of warp %d wait in %s (%s:%d) with mask "
           "0x%08x, which names it: every lane in the mask must reach the same call",
           f->lin & 31, fmt_tid(f, a, sizeof a), l, f->lin >> 5, w.desc[j].name, w.desc[j].file,
           w.desc[j].line, w.desc[j].mask);
    }
  }
}

static void fiber_start() {
  g_progress++;
  g_body(g_body_ctx);
  on_exit_thread(g_cur);
  for (;;) yield();
}

#if !defined(__x86_64__)
static void fiber_start_uc() { fiber_start(); }
#endif

// ---------------------------------------------------------------------------- barriers

static void syncthreads(const char* file, int line, const char* name = "__syncthreads", int pred = 0) {
  Fiber* f = g_cur;
  char a[48];
  if (g_exited > 0)
    fail(SYNC,
         "%s at %s:%d: thread %s waits for %d thread(s) of the block that have already exited; "
         "every thread must reach each barrier",
         name, file, line, fmt_tid(f, a, sizeof a), g_exited);
  if (g_bar_arrived == 0) {
    g_bar_file = file, g_bar_line = line, g_bar_count = 0;
  } else if (line != g_bar_line || strcmp(file, g_bar_file) != 0) {
    fail(SYNC,
         "barrier divergence: thread %s reached %s at %s:%d while %d other thread(s) wait at "
         "%s:%d; all threads of a block must reach the same barrier",
         fmt_tid(f, a, sizeof a), name, file, line, g_bar_arrived, g_bar_file, g_bar_line);
  }
  g_bar_count += pred != 0;
  g_bar_arrived++;
  f->wait = 1, f->wait_file = file, f->wait_line = line, f->wait_name = name;
  unsigned gen = g_bar_gen;
  if (g_bar_arrived == g_nthreads) {
    g_bar_result = g_bar_count;
    g_bar_arrived = 0;
    g_bar_gen++;
    g_progress++;
  }
  while (g_bar_gen == gen) yield();
  g_progress++;
  f->wait = 0;
}

// ---------------------------------------------------------------------------- warp intrinsics

static int lane_of(const Fiber* f) { return f->lin & 31; }

// Source lane of a shuffle as PTX defines it (shfl.sync with c = ((32 - width) << 8) | clamp);
// returns -1 where the lane keeps its own value.
static int shfl_source(int kind, int lane, int b, int width) {
  int segmask = (32 - width) & 31;
  int clamp = kind == 2 ? 0 : 31;
  int min_lane = lane & segmask;
  int max_lane = min_lane | (clamp & ~segmask);
  int j;
  switch (kind) {
    case 1: j = min_lane | (b & ~segmask); return j <= max_lane ? j : -1;
    case 2: j = lane - b; return j >= max_lane ? j : -1;
    case 3: j = lane + b; return j <= max_lane ? j : -1;
    default: j = lane ^ b; return j <= max_lane ? j : -1;
  }
}

// Every lane of `mask` meets here; returns this lane's result from g_warps[w].out.
static uint64_t warp_meet(int kind, const char* name, unsigned mask, uint64_t bits, int arg,
                          int width, const char* file, int line) {
  Fiber* f = g_cur;
  int lane = lane_of(f), wi = f->lin >> 5;
  Warp& w = g_warps[wi];
  unsigned bit = 1u << lane;
  char a[48], l[160];
  if (!(mask & bit))
    fail(SYNC, "%s at %s:%d: lane %d (thread %s) calls it with mask 0x%08x, which does not "
               "include the calling lane",
         name, file, line, lane, fmt_tid(f, a, sizeof a), mask);
  if (mask & ~w.present) {
    lane_list(mask & ~w.present, l, sizeof l);
    fail(SYNC,
         "%s at %s:%d: mask 0x%08x names lanes %s of warp %d, which do not exist in a block of "
         "%d threads; a full mask needs a block size that is a multiple of 32",
         name, file, line, mask, l, wi, g_nthreads);
  }
  if (mask & w.exited) {
    lane_list(mask & w.exited, l, sizeof l);
    fail(SYNC, "%s at %s:%d: mask 0x%08x names lanes %s of warp %d, which have exited", name,
         file, line, mask, l, wi);
  }
  if (width < 1 || width > 32 || (width & (width - 1)))
    fail(SYNC, "%s at %s:%d: width %d is not a power of 2 between 1 and 32", name, file, line,
         width);
  w.val[lane] = bits;
  w.arg[lane] = arg;
  w.desc[lane] = SyncDesc{kind, mask, width, file, line, name};
  w.pending |= bit;
  f->wait = 2, f->wait_file = file, f->wait_line = line, f->wait_name = name, f->wait_mask = mask;
  for (;;) {
    if (w.released & bit) {
      w.released &= ~bit;
      g_progress++;
      break;
    }
    for (int j = 0; j < 32; ++j) {
      if (!((mask & w.pending) >> j & 1)) continue;
      const SyncDesc& d = w.desc[j];
      if (d.kind != kind || d.mask != mask || d.width != width || d.line != line ||
          strcmp(d.file, file) != 0)
        fail(SYNC,
             "warp divergence in warp %d: lane %d waits in %s (%s:%d, mask 0x%08x, width %d) "
             "while lane %d waits in %s (%s:%d, mask 0x%08x, width %d); the lanes of a mask must "
             "all reach the same call",
             wi, lane, name, file, line, mask, width, j, d.name, d.file, d.line, d.mask, d.width);
    }
    if ((w.pending & mask) == mask) {
      uint64_t ballot = 0;
      for (int j = 0; j < 32; ++j)
        if ((mask >> j & 1) && w.val[j]) ballot |= 1ull << j;
      for (int j = 0; j < 32; ++j) {
        if (!(mask >> j & 1)) continue;
        if (kind >= 1 && kind <= 4) {
          int src = shfl_source(kind, j, w.arg[j], width);
          if (src < 0) src = j;
          if (!(mask >> src & 1)) {
            Fiber* g = &g_fibers[wi * 32 + j];
            fail(SYNC,
                 "%s at %s:%d: lane %d (thread %s) reads lane %d, which is not in mask 0x%08x "
                 "(the value would be undefined on a GPU)",
                 name, file, line, j, fmt_tid(g, a, sizeof a), src, mask);
          }
          w.out[j] = w.val[src];
        } else {
          w.out[j] = ballot;
        }
      }
      w.pending &= ~mask;
      w.released |= mask;
      g_progress++;
      continue;
    }
    yield();
  }
  f->wait = 0;
  return w.out[lane];
}

template <typename T> static uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
  uint64_t b = 0;
  memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T> static T from_bits(uint64_t b) {
  T v;
  memcpy(&v, &b, sizeof(T));
  return v;
}

template <typename T>
static T shfl(const char* file, int line, int kind, const char* name, unsigned mask, T var, int b,
              int width) {
  return from_bits<T>(warp_meet(kind, name, mask, to_bits(var), b, width, file, line));
}

static unsigned ballot(const char* file, int line, const char* name, unsigned mask, int pred) {
  return (unsigned)warp_meet(6, name, mask, pred != 0, 0, 32, file, line);
}

// ---------------------------------------------------------------------------- misc device side

[[noreturn]] void misaligned_vector(const void* p, int align, const char* type, bool store,
                                    void* pc) {
  g_launch->fault_addr = (uint64_t)p;
  g_launch->fault_pc = pc_offset(pc);
  g_launch->fault_write = store;
  fail(MISALIGNED,
       "misaligned %d-byte %s %s at address 0x%llx (address %% %d = %d): vector loads and stores "
       "need addresses aligned to their size",
       align, type, store ? "store" : "load", (unsigned long long)(uintptr_t)p, align,
       (int)((uintptr_t)p % (unsigned)align));
}

static void note_atomic(const void* p, size_t size, bool is_float, const char* name) {
  if ((uintptr_t)p % size) {
    g_launch->fault_addr = (uint64_t)p;
    g_launch->fault_pc = pc_offset(__builtin_return_address(0));
    fail(MISALIGNED, "%s on misaligned address 0x%llx (%zu-byte operand)", name,
         (unsigned long long)(uintptr_t)p, size);
  }
  if (!is_float) return;
  uint64_t a = (uint64_t)p;
  int64_t lo = 0, hi = g_launch->n_buffers - 1;
  while (lo <= hi) {
    int64_t mid = (lo + hi) / 2;
    if (a < g_launch->buf_lo[mid]) hi = mid - 1;
    else if (a >= g_launch->buf_hi[mid]) lo = mid + 1;
    else {
      g_launch->buf_float_atomic[mid] = 1;
      return;
    }
  }
}

[[noreturn]] static void trap(const char* what, const char* file, int line) {
  fail(TRAP, "%s at %s:%d", what, file, line);
}

// ---------------------------------------------------------------------------- signals

static struct sigaction g_old_act[5];
static const int g_signals[5] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP};
static stack_t g_old_stack;

static void on_signal(int sig, siginfo_t* info, void* uc_) {
  ucontext_t* uc = (ucontext_t*)uc_;
  g_launch->status = FAULT;
  g_launch->signal = sig;
  g_launch->fault_addr = (uint64_t)info->si_addr;
  void* pc = nullptr;
#if defined(__x86_64__)
  pc = (void*)uc->uc_mcontext.gregs[REG_RIP];
  g_launch->fault_write = (uc->uc_mcontext.gregs[REG_ERR] & 2) ? 1 : 0;
#else
  (void)uc;
  g_launch->fault_write = -1;
#endif
  g_launch->fault_pc = (uint64_t)pc;  // made an offset after the jump (dladdr is not signal-safe)
  siglongjmp(g_jmp, 1);
}

static void install_signals() {
  stack_t ss;
  ss.ss_sp = g_altstack;
  ss.ss_size = 64 * 1024;
  ss.ss_flags = 0;
  sigaltstack(&ss, &g_old_stack);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < 5; ++i) sigaction(g_signals[i], &sa, &g_old_act[i]);
}

static void restore_signals() {
  for (int i = 0; i < 5; ++i) sigaction(g_signals[i], &g_old_act[i], nullptr);
  sigaltstack(&g_old_stack, nullptr);
}

// ---------------------------------------------------------------------------- the scheduler

struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  void shuffle(int* a, int64_t n) {
    for (int64_t i = n - 1; i > 0; --i) {
      int64_t j = (int64_t)(next() % (uint64_t)(i + 1));
      int t = a[i];
      a[i] = a[j], a[j] = t;
    }
  }
};

static void describe_deadlock() {
  // Group threads by what they wait for, in thread order.
  char* out = g_launch->message;
  size_t n = sizeof(g_launch->message), k = 0;
  k += snprintf(out + k, n - k,
                "deadlock in block (%u,%u,%u): no thread can proceed.",
                g_block_idx.x, g_block_idx.y, g_block_idx.z);
  int i = 0;
  while (i < g_nthreads && k + 200 < n) {
    Fiber& f = g_fibers[i];
    int j = i;
    while (j + 1 < g_nthreads) {
      Fiber& g = g_fibers[j + 1];
      if (g.done != f.done || g.wait != f.wait || g.wait_line != f.wait_line ||
          (f.wait && strcmp(g.wait_file, f.wait_file) != 0))
        break;
      ++j;
    }
    const char* what = f.done ? "exited" : f.wait == 1 ? "wait at" : f.wait == 2 ? "wait in" : "run";
    k += snprintf(out + k, n - k, " Threads %d-%d %s", i, j, what);
    if (!f.done && f.wait)
      k += snprintf(out + k, n - k, " %s (%s:%d%s)", f.wait_name, f.wait_file, f.wait_line,
                    f.wait == 2 ? ", waiting for the other lanes of its mask" : "");
    k += snprintf(out + k, n - k, ";");
    i = j + 1;
  }
  g_launch->status = SYNC;
  g_cur = nullptr;
  note_thread();
}

static int run_block(int* perm, Rng& rng) {
  const int n = g_nthreads;
  g_alive = n, g_exited = 0, g_bar_arrived = 0, g_bar_gen = 0;
  memset(g_warps, 0, sizeof(Warp) * ((n + 31) / 32));
  for (int i = 0; i < n; ++i) g_warps[i >> 5].present |= 1u << (i & 31);
  for (int64_t s = 0; s < g_launch->n_shared; ++s)
    fill_poison((unsigned char*)g_launch->shared_lo[s], (unsigned char*)g_launch->shared_hi[s]);
  if (g_launch->shared_mem) fill_poison(g_dyn_shared, g_dyn_shared + g_launch->shared_mem);
  for (int i = 0; i < n; ++i) {
    Fiber& f = g_fibers[i];
    f.lin = i;
    f.tid.x = i % g_block_dim.x;
    f.tid.y = (i / g_block_dim.x) % g_block_dim.y;
    f.tid.z = i / (g_block_dim.x * g_block_dim.y);
    f.done = 0, f.wait = 0;
    char* top = g_stacks + (size_t)(i + 1) * kStackBytes;
#if defined(__x86_64__)
    f.sp = init_stack(top);
#else
    getcontext(&g_fiber_uc[i]);
    g_fiber_uc[i].uc_stack.ss_sp = top - kStackBytes + kPage;
    g_fiber_uc[i].uc_stack.ss_size = kStackBytes - kPage;
    g_fiber_uc[i].uc_link = nullptr;
    makecontext(&g_fiber_uc[i], fiber_start_uc, 0);
#endif
    perm[i] = g_launch->order == 1 ? n - 1 - i : i;
  }
  while (g_alive > 0) {
    if (g_launch->order == 2) rng.shuffle(perm, n);
    uint64_t before = g_progress;
    for (int k = 0; k < n; ++k) {
      Fiber& f = g_fibers[perm[k]];
      if (f.done) continue;
      g_cur = &f;
#if defined(__x86_64__)
      gg_emu_switch(&g_sched_sp, f.sp);
#else
      swapcontext(&g_sched_uc, &g_fiber_uc[f.lin]);
#endif
      if (g_failed) return -1;
    }
    if (g_progress == before) {
      describe_deadlock();
      return -1;
    }
  }
  return 0;
}

static bool ensure_memory() {
  if (!g_stacks) {
    size_t bytes = kStackBytes * kMaxThreads;
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) return false;
    g_stacks = (char*)p;
    // A guard page at the bottom of every stack turns an overflow into a reported fault.
    for (int i = 0; i < kMaxThreads; ++i) mprotect(g_stacks + (size_t)i * kStackBytes, kPage, PROT_NONE);
  }
  if (!g_altstack) {
    g_altstack = (char*)malloc(64 * 1024);
    if (!g_altstack) return false;
  }
  return true;
}

static int run(Launch* L, const char* name) {
  g_launch = L;
  L->status = OK, L->signal = 0, L->message[0] = 0, L->fault_write = -1;
  g_failed = 0, g_cur = nullptr, g_progress = 0;
  g_block_dim = dim3(L->block[0], L->block[1], L->block[2]);
  g_grid_dim = dim3(L->grid[0], L->grid[1], L->grid[2]);
  g_block_idx = uint3{0, 0, 0};
  uint64_t nthreads = (uint64_t)L->block[0] * L->block[1] * L->block[2];
  if (nthreads == 0 || nthreads > kMaxThreads) {
    L->status = BAD_LAUNCH;
    message("%s: a block of %llu threads; CUDA allows 1 to %d", name,
            (unsigned long long)nthreads, kMaxThreads);
    return L->status;
  }
  if (L->shared_mem > kDynShared) {
    L->status = BAD_LAUNCH;
    message("%s: %llu bytes of dynamic shared memory; at most %zu", name,
            (unsigned long long)L->shared_mem, kDynShared);
    return L->status;
  }
  if (!ensure_memory()) {
    L->status = BAD_LAUNCH;
    message("%s: could not allocate the emulator's thread stacks", name);
    return L->status;
  }
  g_nthreads = (int)nthreads;
  uint64_t gx = L->grid[0], gy = L->grid[1], gz = L->grid[2];
  uint64_t nblocks = gx * gy * gz;
  Rng rng{L->seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull};
  rng.next();
  // Random block order: a shuffled list for grids up to 2^22 blocks, else a random rotation.
  int* blocks = nullptr;
  uint64_t rotate = 0;
  if (L->order == 2) {
    if (nblocks <= (1u << 22)) {
      blocks = (int*)malloc(sizeof(int) * nblocks);
      if (blocks) {
        for (uint64_t b = 0; b < nblocks; ++b) blocks[b] = (int)b;
        rng.shuffle(blocks, (int64_t)nblocks);
      }
    }
    if (!blocks) rotate = rng.next() % nblocks;
  }
  install_signals();
  if (sigsetjmp(g_jmp, 1)) {
    restore_signals();
    free(blocks);
    note_thread();
    uint64_t pc_abs = L->fault_pc;
    L->fault_pc = pc_offset((void*)pc_abs);
    Dl_info info;
    const char* where = "";
    if (pc_abs && dladdr((void*)pc_abs, &info) && info.dli_fname) where = info.dli_fname;
    uint64_t a = L->fault_addr;
    const char* extra = "";
    if (a >= (uint64_t)g_stacks && a < (uint64_t)g_stacks + kStackBytes * kMaxThreads)
      extra = " (a thread's stack overflowed: deep recursion or a very large local array)";
    message("%s (signal %d) at address 0x%llx, instruction in %s%s",
            L->signal == SIGSEGV ? "invalid memory access"
            : L->signal == SIGBUS ? "bus error"
            : L->signal == SIGFPE ? "arithmetic exception (integer division by zero?)"
            : L->signal == SIGILL ? "illegal instruction"
                                  : "trap",
            L->signal, (unsigned long long)a, where, extra);
    g_cur = nullptr;
    return L->status;
  }
  int rc = 0;
  for (uint64_t b = 0; b < nblocks && rc == 0; ++b) {
    uint64_t id = L->order == 1 ? nblocks - 1 - b : L->order == 2 ? (blocks ? (uint64_t)blocks[b] : (b + rotate) % nblocks) : b;
    g_block_idx.x = (unsigned)(id % gx);
    g_block_idx.y = (unsigned)((id / gx) % gy);
    g_block_idx.z = (unsigned)(id / (gx * gy));
    rc = run_block(g_perm, rng);
  }
  restore_signals();
  free(blocks);
  g_cur = nullptr;
  return L->status;
}

// ---------------------------------------------------------------------------- entry points

template <typename T> static std::string type_code() {
  typedef typename std::remove_cv<T>::type U;
  if constexpr (std::is_pointer<U>::value) {
    return "*" + type_code<typename std::remove_pointer<U>::type>();
  } else if constexpr (std::is_void<U>::value) {
    return "v";
  } else if constexpr (std::is_same<U, bool>::value) {
    return "b1";
  } else if constexpr (std::is_floating_point<U>::value) {
    return "f" + std::to_string(sizeof(U));
  } else if constexpr (std::is_integral<U>::value) {
    return (std::is_signed<U>::value ? "i" : "u") + std::to_string(sizeof(U));
  } else {
    return "s" + std::to_string(sizeof(U)) + "a" + std::to_string(alignof(U));
  }
}

template <typename... A> static const char* signature(void (*)(A...)) {
  static std::string s;
  if (s.empty()) {
    std::string parts[] = {std::string(""), type_code<A>()...};
    for (size_t i = 1; i < sizeof(parts) / sizeof(parts[0]); ++i) s += (i > 1 ? "," : "") + parts[i];
    s += ";";  // non-empty even for a kernel without parameters
  }
  return s.c_str();
}

template <typename... A, size_t... I>
static void invoke(void (*k)(A...), void** args, std::index_sequence<I...>) {
  k(*reinterpret_cast<typename std::remove_cv<A>::type*>(args[I])...);
}

template <typename... A> static int launch(Launch* L, void (*k)(A...), const char* name) {
  struct Ctx {
    void (*k)(A...);
    void** args;
  } ctx{k, L->args};
  g_body = [](void* c) {
    Ctx* x = static_cast<Ctx*>(c);
    invoke(x->k, x->args, std::index_sequence_for<A...>{});
  };
  g_body_ctx = &ctx;
  return run(L, name);
}

}  // namespace gg_emu

extern "C" __attribute__((visibility("default"))) void* gg_emu_dyn_shared() {
  return gg_emu::g_dyn_shared;
}

#define GG_EMU_ENTRY(name)                                                                  \
  extern "C" __attribute__((visibility("default"))) int gg_emu_launch_##name(              \
      gg_emu::Launch* L) {                                                                  \
    return gg_emu::launch(L, &name, #name);                                                 \
  }                                                                                         \
  extern "C" __attribute__((visibility("default"))) const char* gg_emu_signature_##name() { \
    return gg_emu::signature(&name);                                                        \
  }

// ---------------------------------------------------------------------------- CUDA's names

#define __global__
#define __device__
#define __host__
#define __noinline__ __attribute__((noinline))
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
#define __constant__ static
#define __managed__ static
#define __grid_constant__

#define threadIdx (static_cast<const uint3&>(gg_emu::g_cur->tid))
#define blockIdx (static_cast<const uint3&>(gg_emu::g_block_idx))
#define blockDim (static_cast<const dim3&>(gg_emu::g_block_dim))
#define gridDim (static_cast<const dim3&>(gg_emu::g_grid_dim))
#define warpSize 32

#define __syncthreads() gg_emu::syncthreads(__FILE__, __LINE__)
#define __syncthreads_count(p) \
  (gg_emu::syncthreads(__FILE__, __LINE__, "__syncthreads_count", (p)), gg_emu::g_bar_result)
#define __syncthreads_or(p) (__syncthreads_count(p) != 0)
#define __syncthreads_and(p) (__syncthreads_count(p) == gg_emu::g_nthreads)
#define __syncwarp(...) gg_emu::syncwarp(__FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_sync(m, v, ...) gg_emu::shfl_call(__FILE__, __LINE__, 1, "__shfl_sync", m, v, __VA_ARGS__)
#define __shfl_up_sync(m, v, ...) \
  gg_emu::shfl_call(__FILE__, __LINE__, 2, "__shfl_up_sync", m, v, __VA_ARGS__)
#define __shfl_down_sync(m, v, ...) \
  gg_emu::shfl_call(__FILE__, __LINE__, 3, "__shfl_down_sync", m, v, __VA_ARGS__)
#define __shfl_xor_sync(m, v, ...) \
  gg_emu::shfl_call(__FILE__, __LINE__, 4, "__shfl_xor_sync", m, v, __VA_ARGS__)
#define __ballot_sync(m, p) gg_emu::ballot(__FILE__, __LINE__, "__ballot_sync", m, p)
#define __any_sync(m, p) (gg_emu::ballot(__FILE__, __LINE__, "__any_sync", m, p) != 0)
#define __all_sync(m, p) (gg_emu::ballot(__FILE__, __LINE__, "__all_sync", m, p) == (m))
#define __trap() gg_emu::trap("__trap()", __FILE__, __LINE__)
#undef assert
#define assert(e) ((e) ? (void)0 : gg_emu::trap("device assert failed: " #e, __FILE__, __LINE__))

namespace gg_emu {
template <typename T> struct same {
  typedef T type;
};
template <typename T> using same_t = typename same<T>::type;
template <typename T>
static T shfl_call(const char* file, int line, int kind, const char* name, unsigned mask, T var,
                   int b, int width = 32) {
  return shfl(file, line, kind, name, mask, var, b, width);
}
static void syncwarp(const char* file, int line, unsigned mask = 0xffffffffu) {
  warp_meet(5, "__syncwarp", mask, 0, 0, 32, file, line);
}
}  // namespace gg_emu

static inline unsigned __activemask() {
  gg_emu::Warp& w = gg_emu::g_warps[gg_emu::g_cur->lin >> 5];
  return w.present & ~w.exited;
}
static inline int __lane_id() { return gg_emu::g_cur->lin & 31; }

// Atomics: a thread is never interrupted between two synchronisation points, so a plain
// read-modify-write is atomic here.
#define GG_EMU_ATOMIC(NAME, EXPR)                                                      \
  template <typename T> static inline T NAME(T* p, gg_emu::same_t<T> v) {              \
    gg_emu::note_atomic(p, sizeof(T), std::is_floating_point<T>::value, #NAME);         \
    T old = *p;                                                                        \
    *p = (EXPR);                                                                       \
    return old;                                                                        \
  }                                                                                    \
  template <typename T> static inline T NAME##_block(T* p, gg_emu::same_t<T> v) {      \
    return NAME(p, v);                                                                 \
  }                                                                                    \
  template <typename T> static inline T NAME##_system(T* p, gg_emu::same_t<T> v) {     \
    return NAME(p, v);                                                                 \
  }
GG_EMU_ATOMIC(atomicAdd, old + v)
GG_EMU_ATOMIC(atomicSub, old - v)
GG_EMU_ATOMIC(atomicExch, v)
GG_EMU_ATOMIC(atomicMin, v < old ? v : old)
GG_EMU_ATOMIC(atomicMax, v > old ? v : old)
GG_EMU_ATOMIC(atomicAnd, old & v)
GG_EMU_ATOMIC(atomicOr, old | v)
GG_EMU_ATOMIC(atomicXor, old ^ v)
template <typename T>
static inline T atomicCAS(T* p, gg_emu::same_t<T> compare, gg_emu::same_t<T> v) {
  gg_emu::note_atomic(p, sizeof(T), false, "atomicCAS");
  T old = *p;
  if (old == compare) *p = v;
  return old;
}
static inline unsigned atomicInc(unsigned* p, unsigned v) {
  gg_emu::note_atomic(p, 4, false, "atomicInc");
  unsigned old = *p;
  *p = old >= v ? 0 : old + 1;
  return old;
}
static inline unsigned atomicDec(unsigned* p, unsigned v) {
  gg_emu::note_atomic(p, 4, false, "atomicDec");
  unsigned old = *p;
  *p = (old == 0 || old > v) ? v : old - 1;
  return old;
}

static inline void __threadfence() {}
static inline void __threadfence_block() {}
static inline void __threadfence_system() {}
static inline long long clock64() { return (long long)++gg_emu::g_clock; }
static inline void __nanosleep(unsigned) {}
template <typename T> static inline T __ldg(const T* p) { return *p; }
template <typename T> static inline T __ldcg(const T* p) { return *p; }
template <typename T> static inline T __ldca(const T* p) { return *p; }
template <typename T> static inline T __ldcs(const T* p) { return *p; }
template <typename T> static inline T __ldlu(const T* p) { return *p; }
template <typename T> static inline T __ldcv(const T* p) { return *p; }
template <typename T> static inline void __stcs(T* p, T v) { *p = v; }
template <typename T> static inline void __stcg(T* p, T v) { *p = v; }
template <typename T> static inline void __stwb(T* p, T v) { *p = v; }
template <typename T> static inline void __stwt(T* p, T v) { *p = v; }

// Reinterpretation and integer intrinsics.
static inline float __int_as_float(int v) { return gg_emu::from_bits<float>((uint32_t)v); }
static inline float __uint_as_float(unsigned v) { return gg_emu::from_bits<float>(v); }
static inline int __float_as_int(float v) { return (int)(uint32_t)gg_emu::to_bits(v); }
static inline unsigned __float_as_uint(float v) { return (uint32_t)gg_emu::to_bits(v); }
static inline double __longlong_as_double(long long v) {
  return gg_emu::from_bits<double>((uint64_t)v);
}
static inline long long __double_as_longlong(double v) { return (long long)gg_emu::to_bits(v); }
static inline int __popc(unsigned v) { return __builtin_popcount(v); }
static inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
static inline int __clz(int v) { return v ? __builtin_clz((unsigned)v) : 32; }
static inline int __clzll(long long v) { return v ? __builtin_clzll((unsigned long long)v) : 64; }
static inline int __ffs(int v) { return __builtin_ffs(v); }
static inline int __ffsll(long long v) { return __builtin_ffsll(v); }
static inline unsigned __brev(unsigned v) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((v >> i) & 1u) << (31 - i);
  return r;
}
static inline int __mul24(int a, int b) { return (int)(((long long)(a << 8 >> 8)) * (b << 8 >> 8)); }
static inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
static inline unsigned __umulhi(unsigned a, unsigned b) {
  return (unsigned)(((unsigned long long)a * b) >> 32);
}
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}

// min / max: CUDA overloads them for every arithmetic type (fminf / fmax for floating point).
template <typename A, typename B,
          typename = typename std::enable_if<std::is_arithmetic<A>::value &&
                                             std::is_arithmetic<B>::value>::type>
static inline typename std::common_type<A, B>::type min(A a, B b) {
  typedef typename std::common_type<A, B>::type C;
  if constexpr (std::is_floating_point<C>::value) return fmin((C)a, (C)b);
  else return (C)a < (C)b ? (C)a : (C)b;
}
template <typename A, typename B,
          typename = typename std::enable_if<std::is_arithmetic<A>::value &&
                                             std::is_arithmetic<B>::value>::type>
static inline typename std::common_type<A, B>::type max(A a, B b) {
  typedef typename std::common_type<A, B>::type C;
  if constexpr (std::is_floating_point<C>::value) return fmax((C)a, (C)b);
  else return (C)a > (C)b ? (C)a : (C)b;
}

// Fast-math and rounding-mode intrinsics: the host's correctly rounded operations (the GPU's
// approximate versions differ in the last bits).
#define __expf expf
#define __exp10f exp10f
#define __logf logf
#define __log2f log2f
#define __log10f log10f
#define __sinf sinf
#define __cosf cosf
#define __tanf tanf
#define __powf powf
static inline float __fdividef(float x, float y) { return x / y; }
static inline float __saturatef(float x) { return x < 0.f ? 0.f : x > 1.f ? 1.f : x; }
static inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float rcbrtf(float x) { return 1.f / cbrtf(x); }
static inline double rcbrt(double x) { return 1.0 / cbrt(x); }
static inline void sincosf_(float x, float* s, float* c) { *s = sinf(x), *c = cosf(x); }
#define sincosf(x, s, c) sincosf_(x, s, c)
static inline float __frcp_rn(float x) { return 1.f / x; }
static inline double __drcp_rn(double x) { return 1.0 / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline double __dsqrt_rn(double x) { return sqrt(x); }
#define GG_EMU_RN(T, S)                                                         \
  static inline T __fadd_##S(T a, T b) { return a + b; }                        \
  static inline T __fsub_##S(T a, T b) { return a - b; }                        \
  static inline T __fmul_##S(T a, T b) { return a * b; }                        \
  static inline T __fdiv_##S(T a, T b) { return a / b; }                        \
  static inline T __fmaf_##S(T a, T b, T c) { return fmaf(a, b, c); }
GG_EMU_RN(float, rn)
GG_EMU_RN(float, rz)
GG_EMU_RN(float, ru)
GG_EMU_RN(float, rd)
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline float __int2float_rn(int v) { return (float)v; }
static inline double __int2double_rn(int v) { return (double)v; }
static inline int __float2int_rz(float v) { return (int)v; }
static inline int __float2int_rn(float v) { return (int)nearbyintf(v); }
static inline int __double2int_rz(double v) { return (int)v; }
static inline float __double2float_rn(double v) { return (float)v; }

#endif  // GG_EMU_SCAN
