// Multi-tensor optimizer updates: every parameter of a model in one launch (_f32 / _f64).
//
//   sgd_step   PyTorch's SGD:   d = g (+ wd*p); buf = first ? d : momentum*buf + (1-dampening)*d;
//              d = nesterov ? d + momentum*buf : buf (when momentum != 0); p -= lr*d
//   adam_step  PyTorch's Adam (L2: g += wd*p) and AdamW (decoupled: p *= 1 - lr*wd), then
//              m += (1-b1)*(g - m); v = b2*v + (1-b2)*g^2; v' = amsgrad ? max(vmax, v) : v;
//              p -= (lr / (1 - b1^step)) * m / (sqrt(v') / sqrt(1 - b2^step) + eps)
//
// Arguments: device arrays of pointers, one entry per parameter tensor (params, grads, state;
// a state pointer may be null where that parameter does not use it), their sizes, a chunk
// table built once per parameter list by the launcher (chunk k covers elements
// [chunk_start[k], chunk_start[k] + chunk) of tensor chunk_tensor[k]), and hp: one float64 row
// of hyperparameters per tensor, hp_cols wide, columns as SGD_COLUMNS / ADAM_COLUMNS in
// gpugrad/backends/cuda.py (the same table the CPU kernels in backends/cpu_optim.py take; a row
// whose "active" column is 0 is skipped). Arithmetic runs in float64 and is rounded once when
// stored, as on the CPU. One block per chunk, grid-strided over chunks, so a model of many small
// tensors costs one launch. Memory bound: Adam moves 28 bytes per float32 element (p, g, m, v
// read; p, m, v written), SGD with momentum 20.
//
// Launch: 1-D, GG_BLOCK threads, grid = number of chunks (or fewer).
// Reference: sgd_reference / adam_reference in gpugrad/backends/cuda.py (the same rules as the
// optimizers' reference steps).
// Check: pytest -m gpu tests/test_cuda.py -k optim
// Time:  python bench/gpu_bench.py --family optim
#include "common.cuh"

template <typename T>
__device__ void sgd_body(T* const* params, const T* const* grads, T* const* bufs,
                         const i64* sizes, const int* chunk_tensor, const i64* chunk_start,
                         int n_chunks, i64 chunk, const double* hp, int hp_cols) {
  for (int k = blockIdx.x; k < n_chunks; k += gridDim.x) {
    int t = chunk_tensor[k];
    const double* row = hp + (i64)t * hp_cols;
    if (row[0] == 0.0) continue;  // inactive: no gradient this step
    double lr = row[1], momentum = row[2], dampening = row[3], wd = row[4];
    bool nesterov = row[5] != 0.0, maximize = row[6] != 0.0, first = row[7] != 0.0;
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
    if (row[0] == 0.0) continue;
    double lr = row[1], beta1 = row[2], beta2 = row[3], eps = row[4], wd = row[5];
    bool amsgrad = row[6] != 0.0, decoupled = row[7] != 0.0, maximize = row[8] != 0.0;
    double step = row[9];
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
      if (decoupled) x *= 1.0 - lr * wd;
      else if (wd != 0.0) d += wd * x;
      double mi = (double)m[i], vi = (double)v[i];
      mi += (1.0 - beta1) * (d - mi);  // torch's lerp
      vi = beta2 * vi + (1.0 - beta2) * d * d;
      m[i] = (T)mi;
      v[i] = (T)vi;
      if (amsgrad) {
        vi = fmax((double)vmax[i], vi);
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
