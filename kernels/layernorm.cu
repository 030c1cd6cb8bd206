// LayerNorm over the last axis of a (M, D) view, forward and backward, float32 and float64.
//
//   layernorm_fwd_{warp,block}  per row i: mean[i], rstd[i] = 1 / sqrt(var + eps) (biased
//                               variance, two passes over the row: sum, then centred squares),
//                               out[i, j] = (x[i, j] - mean[i]) rstd[i] w[j] + b[j]
//   layernorm_bwd_{warp,block}  dx[i, j] = rstd[i] (g - mean_j(g) - xhat mean_j(g xhat)),
//                               g = dout[i, j] w[j], xhat = (x[i, j] - mean[i]) rstd[i]
//   layernorm_param_bwd         per column j and slice of rows: partial sums of dout xhat (dw)
//                               and of dout (db); the launcher adds the slices
//
// Shapes: x, out, dout, dx (M, D) contiguous; w, b (D,); mean, rstd (M,) in the dtype of x.
// Sums accumulate in T (warp and block trees, not a running sum, so float32 rows of a few
// thousand values stay within 1e-6 relative).
//
// _warp: one warp per row, 8 rows per 256-thread block, for D <= 1024; _block: one 256-thread
// block per row for wider rows (common.cuh's WarpGroup / BlockGroup, as in softmax_xent.cu).
// Rows are grid-strided, so any grid is correct. layernorm_param_bwd: blocks of (32, 8)
// threads, blockIdx.x picks 32 adjacent columns, blockIdx.y a slice of rows; each block writes
// its column sums to row blockIdx.y of the (gridDim.y, D) partial arrays, no atomics, so the
// weight and bias gradients are the same bits on every run.
//
// Reference: fused.layer_norm (forward and backward) in gpugrad/fused/normalization.py.
// Check: pytest -m gpu tests/test_cuda.py -k layer_norm
// Time:  python bench/gpu_bench.py --family layernorm
#include "common.cuh"

template <typename T, typename G>
__device__ void layernorm_fwd_body(const T* __restrict__ x, const T* __restrict__ w,
                                   const T* __restrict__ b, i64 m, i64 d, T eps,
                                   T* __restrict__ out, T* __restrict__ mean,
                                   T* __restrict__ rstd) {
  __shared__ T scratch[32];
  for (i64 i = G::first_row(); i < m; i += G::row_stride()) {
    const T* row = x + i * d;
    T* orow = out + i * d;
    T s = T(0);
    for (i64 j = G::rank(); j < d; j += G::size()) s += row[j];
    T mu = G::sum(s, scratch) / T(d);
    T ss = T(0);
    for (i64 j = G::rank(); j < d; j += G::size()) {
      T c = row[j] - mu;
      ss += c * c;
    }
    T r = gg_rsqrt(G::sum(ss, scratch) / T(d) + eps);
    for (i64 j = G::rank(); j < d; j += G::size()) orow[j] = (row[j] - mu) * r * w[j] + b[j];
    if (G::rank() == 0) {
      mean[i] = mu;
      rstd[i] = r;
    }
  }
}

template <typename T, typename G>
__device__ void layernorm_bwd_body(const T* __restrict__ dout, const T* __restrict__ x,
                                   const T* __restrict__ mean, const T* __restrict__ rstd,
                                   const T* __restrict__ w, i64 m, i64 d, T* __restrict__ dx) {
  __shared__ T scratch[32];
  for (i64 i = G::first_row(); i < m; i += G::row_stride()) {
    const T* drow = dout + i * d;
    const T* row = x + i * d;
    T* xrow = dx + i * d;
    T mu = mean[i], r = rstd[i];
    T sg = T(0), sgx = T(0);
    for (i64 j = G::rank(); j < d; j += G::size()) {
      T g = drow[j] * w[j];
      sg += g;
      sgx += g * ((row[j] - mu) * r);
    }
    T a = G::sum(sg, scratch) / T(d);
    T c = G::sum(sgx, scratch) / T(d);
    for (i64 j = G::rank(); j < d; j += G::size()) {
      T xh = (row[j] - mu) * r;
      xrow[j] = r * (drow[j] * w[j] - a - xh * c);
    }
  }
}

#define PARAM_COLS 32
#define PARAM_ROWS 8

template <typename T>
__device__ void layernorm_param_bwd_body(const T* __restrict__ dout, const T* __restrict__ x,
                                         const T* __restrict__ mean,
                                         const T* __restrict__ rstd, i64 m, i64 d,
                                         T* __restrict__ part_w, T* __restrict__ part_b) {
  __shared__ T sw[PARAM_ROWS][PARAM_COLS + 1];  // +1: no bank conflicts on the column reads
  __shared__ T sb[PARAM_ROWS][PARAM_COLS + 1];
  int tx = threadIdx.x, ty = threadIdx.y;
  i64 col = (i64)blockIdx.x * PARAM_COLS + tx;
  T aw = T(0), ab = T(0);
  if (col < d) {
    for (i64 row = (i64)blockIdx.y * PARAM_ROWS + ty; row < m;
         row += (i64)gridDim.y * PARAM_ROWS) {
      i64 k = row * d + col;
      T g = dout[k];
      aw += g * ((x[k] - mean[row]) * rstd[row]);
      ab += g;
    }
  }
  sw[ty][tx] = aw;
  sb[ty][tx] = ab;
  __syncthreads();
  if (ty == 0 && col < d) {
    T s1 = T(0), s2 = T(0);
#pragma unroll
    for (int r = 0; r < PARAM_ROWS; ++r) {
      s1 += sw[r][tx];
      s2 += sb[r][tx];
    }
    part_w[(i64)blockIdx.y * d + col] = s1;
    part_b[(i64)blockIdx.y * d + col] = s2;
  }
}

#define LAYERNORM_ROW_WRAPPERS(T, sfx, G, kind)                                                \
  GG_KERNEL layernorm_fwd_##kind##_##sfx(const T* x, const T* w, const T* b, i64 m, i64 d,     \
                                         T eps, T* out, T* mean, T* rstd) {                    \
    layernorm_fwd_body<T, G>(x, w, b, m, d, eps, out, mean, rstd);                             \
  }                                                                                            \
  GG_KERNEL layernorm_bwd_##kind##_##sfx(const T* dout, const T* x, const T* mean,             \
                                         const T* rstd, const T* w, i64 m, i64 d, T* dx) {     \
    layernorm_bwd_body<T, G>(dout, x, mean, rstd, w, m, d, dx);                                \
  }

#define LAYERNORM_PARAM_WRAPPERS(T, sfx)                                                       \
  extern "C" __global__ void __launch_bounds__(PARAM_COLS * PARAM_ROWS)                        \
      layernorm_param_bwd_##sfx(const T* dout, const T* x, const T* mean, const T* rstd,       \
                                i64 m, i64 d, T* part_w, T* part_b) {                          \
    layernorm_param_bwd_body(dout, x, mean, rstd, m, d, part_w, part_b);                       \
  }

LAYERNORM_ROW_WRAPPERS(float, f32, WarpGroup, warp)
LAYERNORM_ROW_WRAPPERS(double, f64, WarpGroup, warp)
LAYERNORM_ROW_WRAPPERS(float, f32, BlockGroup, block)
LAYERNORM_ROW_WRAPPERS(double, f64, BlockGroup, block)
LAYERNORM_PARAM_WRAPPERS(float, f32)
LAYERNORM_PARAM_WRAPPERS(double, f64)
