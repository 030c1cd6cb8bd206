// Multi-tensor optimizer updates: every parameter of a model in one launch (_f32 / _f64).
//
//   sgd_step   PyTorch's SGD:   d = g (+ wd*p); buf = first ? d : momentum*buf + (1-dampening)*d;
//              d = nesterov ? d + momentum*buf : buf (when momentum != 0); p -= lr*d
//   adam_step  PyTorch's Adam (L2: g += wd*p) and AdamW (decoupled: p *= 1 - lr*wd), then
//              m += (1-b1)*(g - m); v = b2*v + (1-b2)*g^2; v' = amsgrad ? max(vmax, v) : v;
//              p -= (lr / (1 - b1^step)) * m / (sqrt(v') / sqrt(1 - b2^step) + eps)
//
// These are gpugrad/optim_rules.py's sgd() and adam() line by line (the rules the reference
// step and the Numba kernels run): a term that is off is skipped, never multiplied by zero, so
// a parameter at +inf stays inf, and AMSGrad's max lets NaN through as torch.maximum does.
//
// Arguments: device arrays of pointers, one entry per parameter tensor (params, grads, state;
// a state pointer may be null where that parameter does not use it), their sizes, a chunk
// table built once per parameter list by the launcher (chunk k covers elements
// [chunk_start[k], chunk_start[k] + chunk) of tensor chunk_tensor[k]), and hp: one float64 row
// of hyperparameters per tensor, hp_cols wide, read by the GG_SGD_* / GG_ADAM_* column indices
// that the backend prepends from optim_rules.SGD_COLUMNS / ADAM_COLUMNS (a row whose "active"
// column is 0 is skipped). Arithmetic runs in float64 and is rounded once when stored, as on the
// CPU. One block per chunk, grid-strided over chunks, so a model of many small tensors costs
// one launch. Memory bound: Adam moves 28 bytes per float32 element (p, g, m, v read; p, m, v
// written), SGD with momentum 20.
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
      mi += (1.0 - beta1) * (d - mi);  // torch's lerp
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
  }

OPTIM_WRAPPERS(float, f32)
OPTIM_WRAPPERS(double, f64)
