// Multi-tensor optimizer updates: every parameter of a model in one launch (_f32 / _f64).
//
//   sgd_step   PyTorch's SGD:   d = g (+ wd*p); buf = first ? d : momentum*buf + (1-dampening)*d;
//              d = nesterov ? d + momentum*buf : buf (when momentum != 0); p -= lr*d
//   adam_step  PyTorch's Adam (L2: g += wd*p) and AdamW (decoupled: p *= 1 - lr*wd), then
//              m = lerp(m, g, 1-b1); v = b2*v + (1-b2)*g^2; v' = amsgrad ? max(vmax, v) : v;
//              p -= (lr / (1 - b1^step)) * m / (sqrt(v') / sqrt(1 - b2^step) + eps)
//   rmsprop_step  PyTorch's RMSprop: d = g (+ wd*p); s = alpha*s + (1-alpha)*d^2;
//              centered: a = lerp(a, d, 1-alpha), denom = sqrt(s - a^2) + eps, else sqrt(s) + eps;
//              momentum: b = momentum*b + d/denom, p -= lr*b; else p -= lr*(d/denom)
//   adagrad_step  PyTorch's Adagrad: d = g (+ wd*p); sum = (step == 1 ? init : sum) + d^2;
//              p -= lr / (1 + (step-1)*lr_decay) * (d / (sqrt(sum) + eps))
//   grad_norm_partials  one float64 partial per chunk of a list of gradients: sum |g|^p, or
//              max |g| for p = inf (NaN propagates); the launcher reduces the few partials
//   grad_scale  g *= (T)coef[0] over a list of gradients (coef stays on the device: no sync)
//   grad_clamp  g = min(max(g, -v), v) over a list of gradients (NaN stays NaN)
//
// The optimizer steps are gpugrad/optim_rules.py's sgd(), adam(), rmsprop() and adagrad() line
// by line (the rules the reference step and the Numba kernels run): a term that is off is
// skipped, never multiplied by zero, so a parameter at +inf stays inf, and AMSGrad's max lets
// NaN through as torch.maximum does. The last three serve nn.utils.clip_grad_norm_ and
// clip_grad_value_ (gpugrad/nn/utils.py), whose CPU versions are in backends/cpu_optim.py.
//
// Arguments: device arrays of pointers, one entry per parameter tensor (params, grads, state;
// a state pointer may be null where that parameter does not use it), their sizes, a chunk
// table built once per parameter list by the launcher (chunk k covers elements
// [chunk_start[k], chunk_start[k] + chunk) of tensor chunk_tensor[k]), and hp: one float64 row
// of hyperparameters per tensor, hp_cols wide, read by the GG_SGD_* / GG_ADAM_* / GG_RMSPROP_* /
// GG_ADAGRAD_* column indices that the backend prepends from optim_rules.COLUMNS (a row whose
// "active" column is 0 is skipped). Arithmetic runs in float64 and is rounded once when stored, as on the
// CPU. One block per chunk, grid-strided over chunks, so a model of many small tensors costs
// one launch. Memory bound: Adam moves 28 bytes per float32 element (p, g, m, v read; p, m, v
// written), SGD with momentum 20, RMSprop 20 to 36, Adagrad 20.
//
// Launch: 1-D, GG_BLOCK threads, grid = number of chunks (or fewer).
// Reference: the optimizers' reference step (gpugrad/optim/, on optim_rules).
// Check: pytest tests/test_optim_rules.py (every path, special values)
// Time:  python bench/gpu_bench.py --family optim
#include "common.cuh"

// max that lets a NaN on either side through (fmax would drop it), as torch.maximum.
__device__ __forceinline__ double gg_max_nan(double a, double b) {
  return (a != a || b != b) ? a + b : (a > b ? a : b);
}

// torch's lerp(a, b, w) = a + w*(b - a), in the form that is more accurate for w.
__device__ __forceinline__ double gg_lerp(double a, double b, double w) {
  return w < 0.5 ? a + w * (b - a) : b - (b - a) * (1.0 - w);
}

template <typename T>
__device__ void sgd_body(T* const* params, const T* const* grads, T* const* bufs,
                         const i64* sizes, const int* chunk_tensor, const i64* chunk_start,
                         int n_chunks, i64 chunk, const double* hp, int hp_cols) {
  for (int k = blockIdx.x; k < n_chunks; k += gridDim.x) {
    int t = chunk_tensor[k];
    const double* row = hp + (i64)t * hp_cols;
    if (row[GG_SGD_ACTIVE] == 0.0) continue;  // inactive: no gradient this step
    double lr = row[GG_SGD_LR], momentum = row[GG_SGD_MOMENTUM];
    double dampening = row[GG_SGD_DAMPENING], wd = row[GG_SGD_WEIGHT_DECAY];
    bool nesterov = row[GG_SGD_NESTEROV] != 0.0, maximize = row[GG_SGD_MAXIMIZE] != 0.0;
    bool first = row[GG_SGD_FIRST] != 0.0;
    i64 start = chunk_start[k], end = min(start + chunk, sizes[t]);
    T* __restrict__ p = params[t];
    const T* __restrict__ g = grads[t];
    T* __restrict__ buf = bufs[t];
    for (i64 i = start + threadIdx.x; i < end; i += blockDim.x) {
      double d = (double)g[i];
      if (maximize) d = -d;
      if (wd != 0.0) d += wd * (double)p[i];
      if (momentum != 0.0) {
        // The first step seeds the buffer with the gradient itself, undamped.
        double b = first ? d : momentum * (double)buf[i] + (1.0 - dampening) * d;
        buf[i] = (T)b;
        d = nesterov ? d + momentum * b : b;
      }
      p[i] = (T)((double)p[i] - lr * d);
    }
  }
}

template <typename T>
__device__ void adam_body(T* const* params, const T* const* grads, T* const* exp_avgs,
                          T* const* exp_avg_sqs, T* const* max_exp_avg_sqs, const i64* sizes,
                          const int* chunk_tensor, const i64* chunk_start, int n_chunks, i64 chunk,
                          const double* hp, int hp_cols) {
  for (int k = blockIdx.x; k < n_chunks; k += gridDim.x) {
    int t = chunk_tensor[k];
    const double* row = hp + (i64)t * hp_cols;
    if (row[GG_ADAM_ACTIVE] == 0.0) continue;
    double lr = row[GG_ADAM_LR], beta1 = row[GG_ADAM_BETA1], beta2 = row[GG_ADAM_BETA2];
    double eps = row[GG_ADAM_EPS], wd = row[GG_ADAM_WEIGHT_DECAY];
    bool amsgrad = row[GG_ADAM_AMSGRAD] != 0.0, decoupled = row[GG_ADAM_DECOUPLED] != 0.0;
    bool maximize = row[GG_ADAM_MAXIMIZE] != 0.0;
    double step = row[GG_ADAM_STEP];
    double step_size = lr / (1.0 - pow(beta1, step));
    double bc2_sqrt = sqrt(1.0 - pow(beta2, step));
    i64 start = chunk_start[k], end = min(start + chunk, sizes[t]);
    T* __restrict__ p = params[t];
    const T* __restrict__ g = grads[t];
    T* __restrict__ m = exp_avgs[t];
    T* __restrict__ v = exp_avg_sqs[t];
    T* __restrict__ vmax = max_exp_avg_sqs[t];
    for (i64 i = start + threadIdx.x; i < end; i += blockDim.x) {
      double d = (double)g[i], x = (double)p[i];
      if (maximize) d = -d;
      if (decoupled) {
        if (wd != 0.0) x *= 1.0 - lr * wd;
      } else if (wd != 0.0) {
        d += wd * x;
      }
      double mi = (double)m[i], vi = (double)v[i];
      mi = gg_lerp(mi, d, 1.0 - beta1);
      vi = beta2 * vi + (1.0 - beta2) * d * d;
      m[i] = (T)mi;
      v[i] = (T)vi;
      if (amsgrad) {
        vi = gg_max_nan((double)vmax[i], vi);
        vmax[i] = (T)vi;
      }
      p[i] = (T)(x - step_size * mi / (sqrt(vi) / bc2_sqrt + eps));
    }
  }
}

template <typename T>
__device__ void rmsprop_body(T* const* params, const T* const* grads, T* const* square_avgs,
                             T* const* grad_avgs, T* const* bufs, const i64* sizes,
                             const int* chunk_tensor, const i64* chunk_start, int n_chunks,
                             i64 chunk, const double* hp, int hp_cols) {
  for (int k = blockIdx.x; k < n_chunks; k += gridDim.x) {
    int t = chunk_tensor[k];
    const double* row = hp + (i64)t * hp_cols;
    if (row[GG_RMSPROP_ACTIVE] == 0.0) continue;
    double lr = row[GG_RMSPROP_LR], alpha = row[GG_RMSPROP_ALPHA], eps = row[GG_RMSPROP_EPS];
    double wd = row[GG_RMSPROP_WEIGHT_DECAY], momentum = row[GG_RMSPROP_MOMENTUM];
    bool centered = row[GG_RMSPROP_CENTERED] != 0.0, maximize = row[GG_RMSPROP_MAXIMIZE] != 0.0;
    i64 start = chunk_start[k], end = min(start + chunk, sizes[t]);
    T* __restrict__ p = params[t];
    const T* __restrict__ g = grads[t];
    T* __restrict__ sq = square_avgs[t];
    T* __restrict__ ga = grad_avgs[t];
    T* __restrict__ buf = bufs[t];
    for (i64 i = start + threadIdx.x; i < end; i += blockDim.x) {
      double d = (double)g[i];
      if (maximize) d = -d;
      if (wd != 0.0) d += wd * (double)p[i];
      double s = alpha * (double)sq[i] + (1.0 - alpha) * d * d;
      sq[i] = (T)s;
      double denom;
      if (centered) {
        double a = gg_lerp((double)ga[i], d, 1.0 - alpha);
        ga[i] = (T)a;
        denom = sqrt(s - a * a) + eps;
      } else {
        denom = sqrt(s) + eps;
      }
      if (momentum != 0.0) {
        double b = momentum * (double)buf[i] + d / denom;
        buf[i] = (T)b;
        p[i] = (T)((double)p[i] - lr * b);
      } else {
        p[i] = (T)((double)p[i] - lr * (d / denom));
      }
    }
  }
}

template <typename T>
__device__ void adagrad_body(T* const* params, const T* const* grads, T* const* sums,
                             const i64* sizes, const int* chunk_tensor, const i64* chunk_start,
                             int n_chunks, i64 chunk, const double* hp, int hp_cols) {
  for (int k = blockIdx.x; k < n_chunks; k += gridDim.x) {
    int t = chunk_tensor[k];
    const double* row = hp + (i64)t * hp_cols;
    if (row[GG_ADAGRAD_ACTIVE] == 0.0) continue;
    double wd = row[GG_ADAGRAD_WEIGHT_DECAY], init = row[GG_ADAGRAD_INITIAL_ACCUMULATOR_VALUE];
    double eps = row[GG_ADAGRAD_EPS], step = row[GG_ADAGRAD_STEP];
    bool maximize = row[GG_ADAGRAD_MAXIMIZE] != 0.0, first = step == 1.0;
    double clr = row[GG_ADAGRAD_LR] / (1.0 + (step - 1.0) * row[GG_ADAGRAD_LR_DECAY]);
    i64 start = chunk_start[k], end = min(start + chunk, sizes[t]);
    T* __restrict__ p = params[t];
    const T* __restrict__ g = grads[t];
    T* __restrict__ sum = sums[t];
    for (i64 i = start + threadIdx.x; i < end; i += blockDim.x) {
      double x = (double)p[i], d = (double)g[i];
      if (maximize) d = -d;
      if (wd != 0.0) d += wd * x;
      double s = (first ? init : (double)sum[i]) + d * d;
      sum[i] = (T)s;
      p[i] = (T)(x - clr * (d / (sqrt(s) + eps)));
    }
  }
}

// ---------------------------------------------------------------------------- gradient clipping

// Block-wide max that lets NaN through; every thread gets the result (scratch: 32 values).
__device__ double gg_block_max_nan(double v, double* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = gg_max_nan(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : 0.0;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = gg_max_nan(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  return v;
}

// partials[k] = sum over chunk k of |g|^p (p = 2: g*g, p = 1: |g|), or max |g| when p is inf.
// Every chunk writes its slot, so the launcher's reduction over partials sees no stale value.
template <typename T>
__device__ void grad_norm_partials_body(const T* const* grads, const i64* sizes,
                                        const int* chunk_tensor, const i64* chunk_start,
                                        int n_chunks, i64 chunk, double p, double* partials) {
  __shared__ double scratch[32];
  bool is_inf = p > 1.7976931348623157e308;
  for (int k = blockIdx.x; k < n_chunks; k += gridDim.x) {
    int t = chunk_tensor[k];
    i64 start = chunk_start[k], end = min(start + chunk, sizes[t]);
    const T* __restrict__ g = grads[t];
    double acc = 0.0;
    for (i64 i = start + threadIdx.x; i < end; i += blockDim.x) {
      double a = fabs((double)g[i]);
      if (is_inf) acc = gg_max_nan(acc, a);
      else if (p == 2.0) acc += a * a;
      else if (p == 1.0) acc += a;
      else acc += pow(a, p);
    }
    acc = is_inf ? gg_block_max_nan(acc, scratch) : gg_block_sum(acc, scratch);
    if (threadIdx.x == 0) partials[k] = acc;
  }
}

template <typename T>
__device__ void grad_scale_body(T* const* grads, const i64* sizes, const int* chunk_tensor,
                                const i64* chunk_start, int n_chunks, i64 chunk,
                                const double* coef) {
  T c = (T)coef[0];  // torch multiplies by the coefficient in the gradient's dtype
  for (int k = blockIdx.x; k < n_chunks; k += gridDim.x) {
    int t = chunk_tensor[k];
    i64 start = chunk_start[k], end = min(start + chunk, sizes[t]);
    T* __restrict__ g = grads[t];
    for (i64 i = start + threadIdx.x; i < end; i += blockDim.x) g[i] = g[i] * c;
  }
}

template <typename T>
__device__ void grad_clamp_body(T* const* grads, const i64* sizes, const int* chunk_tensor,
                                const i64* chunk_start, int n_chunks, i64 chunk, T v) {
  for (int k = blockIdx.x; k < n_chunks; k += gridDim.x) {
    int t = chunk_tensor[k];
    i64 start = chunk_start[k], end = min(start + chunk, sizes[t]);
    T* __restrict__ g = grads[t];
    for (i64 i = start + threadIdx.x; i < end; i += blockDim.x) {
      T x = g[i];
      g[i] = x < -v ? -v : (x > v ? v : x);  // comparisons with NaN are false: NaN stays
    }
  }
}

#define OPTIM_WRAPPERS(T, sfx)                                                                 \
  GG_KERNEL sgd_step_##sfx(T* const* params, const T* const* grads, T* const* bufs,            \
                           const i64* sizes, const int* chunk_tensor, const i64* chunk_start,  \
                           int n_chunks, i64 chunk, const double* hp, int hp_cols) {           \
    sgd_body(params, grads, bufs, sizes, chunk_tensor, chunk_start, n_chunks, chunk, hp,       \
             hp_cols);                                                                         \
  }                                                                                            \
  GG_KERNEL adam_step_##sfx(T* const* params, const T* const* grads, T* const* exp_avgs,       \
                            T* const* exp_avg_sqs, T* const* max_exp_avg_sqs, const i64* sizes, \
                            const int* chunk_tensor, const i64* chunk_start, int n_chunks,     \
                            i64 chunk, const double* hp, int hp_cols) {                        \
    adam_body(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, sizes, chunk_tensor,      \
              chunk_start, n_chunks, chunk, hp, hp_cols);                                      \
  }                                                                                            \
  GG_KERNEL rmsprop_step_##sfx(T* const* params, const T* const* grads, T* const* square_avgs, \
                               T* const* grad_avgs, T* const* bufs, const i64* sizes,          \
                               const int* chunk_tensor, const i64* chunk_start, int n_chunks,  \
                               i64 chunk, const double* hp, int hp_cols) {                     \
    rmsprop_body(params, grads, square_avgs, grad_avgs, bufs, sizes, chunk_tensor, chunk_start, \
                 n_chunks, chunk, hp, hp_cols);                                                \
  }                                                                                            \
  GG_KERNEL adagrad_step_##sfx(T* const* params, const T* const* grads, T* const* sums,        \
                               const i64* sizes, const int* chunk_tensor, const i64* chunk_start, \
                               int n_chunks, i64 chunk, const double* hp, int hp_cols) {       \
    adagrad_body(params, grads, sums, sizes, chunk_tensor, chunk_start, n_chunks, chunk, hp,   \
                 hp_cols);                                                                     \
  }                                                                                            \
  GG_KERNEL grad_norm_partials_##sfx(const T* const* grads, const i64* sizes,                  \
                                     const int* chunk_tensor, const i64* chunk_start,          \
                                     int n_chunks, i64 chunk, double p, double* partials) {    \
    grad_norm_partials_body(grads, sizes, chunk_tensor, chunk_start, n_chunks, chunk, p,       \
                            partials);                                                         \
  }                                                                                            \
  GG_KERNEL grad_scale_##sfx(T* const* grads, const i64* sizes, const int* chunk_tensor,       \
                             const i64* chunk_start, int n_chunks, i64 chunk,                  \
                             const double* coef) {                                             \
    grad_scale_body(grads, sizes, chunk_tensor, chunk_start, n_chunks, chunk, coef);           \
  }                                                                                            \
  GG_KERNEL grad_clamp_##sfx(T* const* grads, const i64* sizes, const int* chunk_tensor,       \
                             const i64* chunk_start, int n_chunks, i64 chunk, T v) {           \
    grad_clamp_body(grads, sizes, chunk_tensor, chunk_start, n_chunks, chunk, v);              \
  }

OPTIM_WRAPPERS(float, f32)
OPTIM_WRAPPERS(double, f64)
