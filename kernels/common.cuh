// Shared helpers for kernels/*.cu: index math, vector types, warp and block reductions.
//
// NVRTC compiles these files as they are (no host code, no standard headers), so everything a
// kernel needs beyond the CUDA built-ins lives here. Included with `-I kernels/`.
#pragma once

#define GG_BLOCK 256  // threads per block for 1-D launches; launchers in backends/cuda.py agree

typedef long long i64;

// Global thread index and grid stride as 64-bit values, so arrays past 2^31 elements work.
__device__ __forceinline__ i64 gg_tid() { return (i64)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ i64 gg_stride() { return (i64)gridDim.x * blockDim.x; }

// 16-byte vectors: one LDG.128 moves 4 floats or 2 doubles, the widest load a thread can issue.
template <typename T> struct Vec16;
template <> struct Vec16<float> {
  typedef float4 type;
  static constexpr int n = 4;
};
template <> struct Vec16<double> {
  typedef double2 type;
  static constexpr int n = 2;
};

// True when every pointer is 16-byte aligned (CuPy allocations are 256-byte aligned; views with
// an offset may not be). Same value in every thread, so the branch on it never diverges.
__device__ __forceinline__ bool gg_aligned16(const void* a, const void* b = 0, const void* c = 0) {
  return (((unsigned long long)a | (unsigned long long)b | (unsigned long long)c) & 15ull) == 0;
}

// Element access to a 16-byte vector as an array of T.
template <typename T> __device__ __forceinline__ T* gg_elems(typename Vec16<T>::type& v) {
  return reinterpret_cast<T*>(&v);
}

// Math by overload, so templated kernels call the float or double intrinsic.
__device__ __forceinline__ float gg_exp(float x) { return expf(x); }
__device__ __forceinline__ double gg_exp(double x) { return exp(x); }
__device__ __forceinline__ float gg_log(float x) { return logf(x); }
__device__ __forceinline__ double gg_log(double x) { return log(x); }
__device__ __forceinline__ float gg_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double gg_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float gg_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double gg_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float gg_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double gg_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float gg_rsqrt(float x) { return rsqrtf(x); }
__device__ __forceinline__ double gg_rsqrt(double x) { return rsqrt(x); }
__device__ __forceinline__ float gg_erf(float x) { return erff(x); }
__device__ __forceinline__ double gg_erf(double x) { return erf(x); }
template <typename T> __device__ __forceinline__ T gg_neg_inf() { return -__int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double gg_neg_inf<double>() {
  return -__longlong_as_double(0x7ff0000000000000ll);
}

// Sign-split sigmoid: exp(-|x|) never overflows, so sigmoid(+-1e4) is exactly 1 or 0. One
// division, not one per branch: an IEEE division has a slow-path call, and two of them in an
// unrolled vector loop (silu_bwd) made ptxas spill.
template <typename T> __device__ __forceinline__ T gg_sigmoid(T x) {
  T e = gg_exp(x >= T(0) ? -x : x);
  T r = T(1) / (T(1) + e);
  return x >= T(0) ? r : e * r;
}

// GELU (exact: x Phi(x); and its tanh approximation) and SiLU (x sigmoid(x)), with their
// derivatives in terms of the input: the formulas of gpugrad/activations.py, whose constants
// arrive as GG_SQRT_HALF, GG_INV_SQRT_2PI, GG_TANH_SCALE, GG_TANH_CUBIC.
template <typename T> __device__ __forceinline__ T gg_gelu(T x) {
  return x * (T(0.5) + T(0.5) * gg_erf(x * T(GG_SQRT_HALF)));
}
template <typename T> __device__ __forceinline__ T gg_gelu_grad(T x) {
  return T(0.5) + T(0.5) * gg_erf(x * T(GG_SQRT_HALF)) +
         x * T(GG_INV_SQRT_2PI) * gg_exp(T(-0.5) * x * x);
}
// The tanh GELU as x s with s = sigmoid(2u) = (1 + tanh u) / 2, u = k (x + c x^3): the same
// function, but its derivative s + 2 x s (1 - s) u' keeps in float32 the small values that
// 1 - tanh(u)^2 rounds to 0 (both s and 1 - s come from one exp, without cancellation).
template <typename T> __device__ __forceinline__ T gg_gelu_tanh(T x) {
  return x * gg_sigmoid(T(2 * GG_TANH_SCALE) * (x + T(GG_TANH_CUBIC) * x * x * x));
}
template <typename T> __device__ __forceinline__ T gg_gelu_tanh_grad(T x) {
  T x2 = x * x;
  T u2 = T(2 * GG_TANH_SCALE) * (x + T(GG_TANH_CUBIC) * x2 * x);
  T e = gg_exp(u2 >= T(0) ? -u2 : u2);
  T r = T(1) / (T(1) + e);
  T s = u2 >= T(0) ? r : e * r;      // sigmoid(2u)
  T sbar = u2 >= T(0) ? e * r : r;   // 1 - sigmoid(2u)
  return s + T(2 * GG_TANH_SCALE) * x * s * sbar * (T(1) + T(3 * GG_TANH_CUBIC) * x2);
}
template <typename T> __device__ __forceinline__ T gg_silu(T x) { return x * gg_sigmoid(x); }
template <typename T> __device__ __forceinline__ T gg_silu_grad(T x) {
  T s = gg_sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}

// ---------------------------------------------------------------------------- reductions

template <typename T> __device__ __forceinline__ T gg_warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T> __device__ __forceinline__ T gg_warp_max(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block; every thread gets the result. `scratch` holds 32 values. blockDim.x must
// be a multiple of 32. Ends with a barrier, so scratch can be reused right after.
template <typename T> __device__ T gg_block_sum(T v, T* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = gg_warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : T(0);
  v = gg_warp_sum(v);
  __syncthreads();
  return v;
}

// Online softmax statistics: running max m and sum s of exp(x - m). Combining two partial
// states rescales the smaller-max sum, so one pass over a row is enough.
template <typename T> struct MaxSum {
  T m, s;
};

// The empty state's max is the lowest finite value, not -inf: a -inf element then adds
// exp(-inf - lowest) = 0 like any other, where starting from -inf would give
// exp(-inf - -inf) = NaN and the merge would spread it over the whole row.
template <typename T> __device__ __forceinline__ T gg_lowest();
template <> __device__ __forceinline__ float gg_lowest<float>() { return __int_as_float(0xff7fffff); }
template <> __device__ __forceinline__ double gg_lowest<double>() {
  return __longlong_as_double(0xffefffffffffffffll);
}

template <typename T> __device__ __forceinline__ MaxSum<T> gg_maxsum_init() {
  MaxSum<T> r = {gg_lowest<T>(), T(0)};
  return r;
}

template <typename T> __device__ __forceinline__ void gg_maxsum_add(MaxSum<T>& a, T x) {
  if (x > a.m) {
    a.s = a.s * gg_exp(a.m - x) + T(1);  // exp(lowest - x) = 0 on the first element
    a.m = x;
  } else {
    a.s += gg_exp(x - a.m);  // a NaN x makes the sum NaN, and so the whole row
  }
}

template <typename T> __device__ __forceinline__ MaxSum<T> gg_maxsum_merge(MaxSum<T> a, MaxSum<T> b) {
  // The side holding the max keeps its sum as is: no exp, and no exp(-inf - -inf) = nan when
  // both sides are still empty.
  T m = fmax(a.m, b.m);
  T sa = a.m == m ? a.s : a.s * gg_exp(a.m - m);
  T sb = b.m == m ? b.s : b.s * gg_exp(b.m - m);
  MaxSum<T> r = {m, sa + sb};
  return r;
}

// A +inf logit leaves no softmax (exp(inf - inf)): adding 0 * max turns the sum into NaN then,
// and so every output of the row, as in PyTorch and the reference. A row of only -inf needs
// nothing: its sum stays 0 (any other element adds exp(0) = 1 for the max), and every output
// divides or takes the log of it into NaN.
template <typename T> __device__ __forceinline__ MaxSum<T> gg_maxsum_finish(MaxSum<T> a) {
  a.s += T(0) * a.m;
  return a;
}

template <typename T> __device__ __forceinline__ MaxSum<T> gg_warp_maxsum(MaxSum<T> a) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum<T> b = {__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o)};
    a = gg_maxsum_merge(a, b);
  }
  return a;
}

// Block-wide online max/sum; every thread gets the result. `scratch` holds 32 states.
template <typename T> __device__ MaxSum<T> gg_block_maxsum(MaxSum<T> a, MaxSum<T>* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  a = gg_warp_maxsum(a);
  if (lane == 0) scratch[warp] = a;
  __syncthreads();
  a = lane < nwarps ? scratch[lane] : gg_maxsum_init<T>();
  a = gg_warp_maxsum(a);
  __syncthreads();
  return a;
}

// Row kernels hand a row to a "group" of threads: a warp (narrow rows, several rows per block,
// no block-wide barrier), or the whole block (wide rows). Rows are grid-strided.
struct WarpGroup {
  __device__ static int rank() { return threadIdx.x & 31; }
  __device__ static int size() { return 32; }
  __device__ static i64 first_row() { return gg_tid() >> 5; }
  __device__ static i64 row_stride() { return gg_stride() >> 5; }
  template <typename T> __device__ static T sum(T v, T*) { return gg_warp_sum(v); }
  template <typename T> __device__ static MaxSum<T> maxsum(MaxSum<T> a, MaxSum<T>*) {
    return gg_warp_maxsum(a);
  }
};

struct BlockGroup {
  __device__ static int rank() { return threadIdx.x; }
  __device__ static int size() { return blockDim.x; }
  __device__ static i64 first_row() { return blockIdx.x; }
  __device__ static i64 row_stride() { return gridDim.x; }
  template <typename T> __device__ static T sum(T v, T* scratch) {
    return gg_block_sum(v, scratch);
  }
  template <typename T> __device__ static MaxSum<T> maxsum(MaxSum<T> a, MaxSum<T>* scratch) {
    return gg_block_maxsum(a, scratch);
  }
};

// Every 1-D kernel is launched with GG_BLOCK threads; the bound lets ptxas budget registers
// for exactly that. Each file instantiates its templates once per dtype with a macro
// `FAMILY_WRAPPERS(T, sfx)` so the names read relu_fwd_f32, relu_fwd_f64, ...
#define GG_KERNEL extern "C" __global__ void __launch_bounds__(GG_BLOCK)
