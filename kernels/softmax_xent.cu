// Row-wise softmax family over the last axis, float32 and float64 (suffix _f32 / _f64).
//
//   xent_fwd_{warp,block}          fused softmax cross-entropy: per_row[i] = logsumexp(x_i) -
//                                  x_i[t_i] and dlogits = (softmax(x_i) - onehot(t_i)) * scale,
//                                  both 0 on rows whose target == ignore_index
//   softmax_fwd_{warp,block}       out = exp(x - max) / sum(exp(x - max))
//   log_softmax_fwd_{warp,block}   out = x - max - log(sum(exp(x - max)))
//   softmax_bwd_{warp,block}       dx = out * (dout - sum(dout * out))
//   log_softmax_bwd_{warp,block}   dx = dout - exp(out) * sum(dout)
//
// Shapes: x, out, dout, dx, dlogits (N, C) contiguous; targets (N,) int64; per_row (N,).
// scale is 1, or 1 / count for reduction="mean" where count (a device int64, so the host never
// waits for it) is the number of rows whose target is not ignore_index; 0 when count is 0.
//
// _warp: one warp per row, 8 rows per 256-thread block; for C <= 1024 (each lane holds at most
// 32 values in flight, and a row never needs a block-wide barrier). _block: one 256-thread block
// per row, for wide rows. Both read a row twice: pass 1 keeps an online (max, sum of exp) per
// thread and merges them (rescaling the sum when the max moves), pass 2 writes the result.
// Rows are grid-strided, so any grid size is correct.
//
// Reference: fused.cross_entropy, ops.softmax, ops.log_softmax (forward and backward).
// Check: pytest -m gpu tests/test_cuda.py -k "softmax or xent"
// Time:  python bench/gpu_bench.py --family softmax_xent
#include "common.cuh"

// A row is handled by a "group" of threads: WarpGroup or BlockGroup (common.cuh).

template <typename T, typename G>
__device__ __forceinline__ MaxSum<T> row_maxsum(const T* __restrict__ row, i64 c,
                                                 MaxSum<T>* scratch) {
  MaxSum<T> a = gg_maxsum_init<T>();
  for (i64 j = G::rank(); j < c; j += G::size()) gg_maxsum_add(a, row[j]);
  return gg_maxsum_finish(G::maxsum(a, scratch));
}

template <typename T, typename G>
__device__ void xent_fwd_body(const T* __restrict__ logits, const i64* __restrict__ targets,
                              i64 n, i64 c, i64 ignore_index, const i64* __restrict__ count,
                              int mean, T* __restrict__ per_row, T* __restrict__ dlogits) {
  __shared__ MaxSum<T> scratch[32];
  T scale = T(1);
  if (mean) scale = count[0] ? T(1) / T(count[0]) : T(0);
  for (i64 i = G::first_row(); i < n; i += G::row_stride()) {
    const T* row = logits + i * c;
    T* drow = dlogits + i * c;
    MaxSum<T> ms = row_maxsum<T, G>(row, c, scratch);
    i64 t = targets[i];
    bool valid = t != ignore_index;
    // An ignored row's gradient is 0, or NaN where its sum is NaN or 0 (a row with NaN, +inf
    // or only -inf), as in PyTorch and the reference.
    T inv = (valid ? scale : T(0)) / ms.s;
    for (i64 j = G::rank(); j < c; j += G::size()) {
      T g = gg_exp(row[j] - ms.m) * inv;
      drow[j] = (valid && j == t) ? g - scale : g;
    }
    if (G::rank() == 0) {
      T loss = T(0);
      if (valid) loss = gg_log(ms.s) - (row[t] - ms.m);  // an if, so row[-100] is never read
      per_row[i] = loss;
    }
  }
}

template <typename T, typename G, bool LOG>
__device__ void softmax_fwd_body(const T* __restrict__ x, i64 n, i64 c, T* __restrict__ out) {
  __shared__ MaxSum<T> scratch[32];
  for (i64 i = G::first_row(); i < n; i += G::row_stride()) {
    const T* row = x + i * c;
    T* orow = out + i * c;
    MaxSum<T> ms = row_maxsum<T, G>(row, c, scratch);
    if (LOG) {
      T lse = gg_log(ms.s);
      for (i64 j = G::rank(); j < c; j += G::size()) orow[j] = (row[j] - ms.m) - lse;
    } else {
      T inv = T(1) / ms.s;
      for (i64 j = G::rank(); j < c; j += G::size()) orow[j] = gg_exp(row[j] - ms.m) * inv;
    }
  }
}

template <typename T, typename G, bool LOG>
__device__ void softmax_bwd_body(const T* __restrict__ dout, const T* __restrict__ out, i64 n,
                                 i64 c, T* __restrict__ dx) {
  __shared__ T scratch[32];
  for (i64 i = G::first_row(); i < n; i += G::row_stride()) {
    const T* drow = dout + i * c;
    const T* orow = out + i * c;
    T* xrow = dx + i * c;
    T s = T(0);
    for (i64 j = G::rank(); j < c; j += G::size()) s += LOG ? drow[j] : drow[j] * orow[j];
    s = G::sum(s, scratch);
    for (i64 j = G::rank(); j < c; j += G::size()) {
      xrow[j] = LOG ? drow[j] - gg_exp(orow[j]) * s : orow[j] * (drow[j] - s);
    }
  }
}

#define SOFTMAX_WRAPPERS(T, sfx, G, kind)                                                      \
  GG_KERNEL xent_fwd_##kind##_##sfx(const T* logits, const i64* targets, i64 n, i64 c,         \
                                    i64 ignore_index, const i64* count, int mean, T* per_row,  \
                                    T* dlogits) {                                              \
    xent_fwd_body<T, G>(logits, targets, n, c, ignore_index, count, mean, per_row, dlogits);   \
  }                                                                                            \
  GG_KERNEL softmax_fwd_##kind##_##sfx(const T* x, i64 n, i64 c, T* out) {                     \
    softmax_fwd_body<T, G, false>(x, n, c, out);                                               \
  }                                                                                            \
  GG_KERNEL log_softmax_fwd_##kind##_##sfx(const T* x, i64 n, i64 c, T* out) {                 \
    softmax_fwd_body<T, G, true>(x, n, c, out);                                                \
  }                                                                                            \
  GG_KERNEL softmax_bwd_##kind##_##sfx(const T* dout, const T* out, i64 n, i64 c, T* dx) {     \
    softmax_bwd_body<T, G, false>(dout, out, n, c, dx);                                        \
  }                                                                                            \
  GG_KERNEL log_softmax_bwd_##kind##_##sfx(const T* dout, const T* out, i64 n, i64 c, T* dx) { \
    softmax_bwd_body<T, G, true>(dout, out, n, c, dx);                                         \
  }

SOFTMAX_WRAPPERS(float, f32, WarpGroup, warp)
SOFTMAX_WRAPPERS(double, f64, WarpGroup, warp)
SOFTMAX_WRAPPERS(float, f32, BlockGroup, block)
SOFTMAX_WRAPPERS(double, f64, BlockGroup, block)
