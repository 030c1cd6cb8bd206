// Elementwise losses with their gradient in one pass, float32 and float64 (suffix _f32 / _f64).
//
//   bce_logits_fwd  loss_i = max(s, 0) - s*t + log1p(exp(-|s|));  ds_i = (sigmoid(s) - t) * scale
//   mse_fwd         loss_i = (y - t)^2;                             dy_i = (y - t) * factor
//
// Shapes: s/y, t, ds/dy, per_item: n elements, contiguous (any shape, flattened). per_item may be
// null (reductions "mean" and "sum" never need it). Each block writes the float64 sum of its
// losses to partials[blockIdx.x] (a block reduction: warp shuffles, then one value per warp in
// shared memory); the launcher sums the few partials, so the result is deterministic and the
// mean is accumulated in float64 whatever the input dtype.
//
// Launch: 1-D, GG_BLOCK threads, grid-stride; partials has gridDim.x entries.
// Reference: fused.binary_cross_entropy_with_logits and fused.mse_loss in gpugrad/fused.py.
// Check: pytest -m gpu tests/test_cuda.py -k "bce or mse"
// Time:  python bench/gpu_bench.py --family losses
#include "common.cuh"

template <typename T>
__device__ void bce_logits_fwd_body(const T* __restrict__ s, const T* __restrict__ t, i64 n,
                                    T scale, T* __restrict__ per_item, T* __restrict__ ds,
                                    double* __restrict__ partials) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (i64 i = gg_tid(); i < n; i += gg_stride()) {
    T x = s[i], y = t[i];
    T e = gg_exp(x >= T(0) ? -x : x);
    T loss = (x > T(0) ? x : T(0)) - x * y + gg_log1p(e);
    T sig = x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    ds[i] = (sig - y) * scale;
    if (per_item) per_item[i] = loss;
    acc += (double)loss;
  }
  acc = gg_block_sum(acc, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

template <typename T>
__device__ void mse_fwd_body(const T* __restrict__ y, const T* __restrict__ t, i64 n, T factor,
                             T* __restrict__ per_item, T* __restrict__ dy,
                             double* __restrict__ partials) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (i64 i = gg_tid(); i < n; i += gg_stride()) {
    T d = y[i] - t[i];
    dy[i] = d * factor;
    if (per_item) per_item[i] = d * d;
    acc += (double)(d * d);
  }
  acc = gg_block_sum(acc, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

#define LOSS_WRAPPERS(T, sfx)                                                                 \
  GG_KERNEL bce_logits_fwd_##sfx(const T* s, const T* t, i64 n, T scale, T* per_item, T* ds,  \
                                 double* partials) {                                          \
    bce_logits_fwd_body(s, t, n, scale, per_item, ds, partials);                              \
  }                                                                                           \
  GG_KERNEL mse_fwd_##sfx(const T* y, const T* t, i64 n, T factor, T* per_item, T* dy,        \
                          double* partials) {                                                 \
    mse_fwd_body(y, t, n, factor, per_item, dy, partials);                                    \
  }

LOSS_WRAPPERS(float, f32)
LOSS_WRAPPERS(double, f64)
