// Fused bias + activation: the epilogue of a linear layer, float32 and float64 (_f32 / _f64).
//
//   bias_act_fwd   out[i, j] = act(z[i, j] + b[j])          z, out: (N, M); b: (M,)
//   bias_act_bwd   dpre[i, j] = dout[i, j] * act'(pre)       one pass
//                  db[j] = sum_i dpre[i, j]                  the bias gradient, same kernel
//
// act: GG_ACT_IDENTITY, GG_ACT_RELU, GG_ACT_LEAKY_RELU (slope >= 0, so out > 0 exactly where
// pre > 0), GG_ACT_SIGMOID, GG_ACT_TANH, GG_ACT_GELU, GG_ACT_GELU_TANH, GG_ACT_SILU: codes
// defined once in gpugrad/activations.py and prepended to this source by the backend. For the
// first five act' is computed from `out`, so the pre-activation is never stored (z and b are
// null). GELU and SiLU are not monotonic: act' needs pre, which the kernel recomputes as
// z[i, j] + b[j] from the op's inputs (kept for those activations only).
//
// Forward launch: 1-D, GG_BLOCK threads, grid-stride over N*M; 16-byte loads when M is a
// multiple of the vector width and the pointers are aligned. Backward launch: blocks of
// (32, 8) threads; blockIdx.x picks 32 adjacent columns (coalesced rows), blockIdx.y a slice
// of rows; the 8 row-threads reduce in shared memory and one atomicAdd per column and block
// lands in db, which the launcher zeroes first. The float order of those atomics varies between
// runs, so db may differ in the last bits from run to run (dpre never does).
//
// Reference: fused.bias_act (activations.forward / activations.derivative) in gpugrad/.
// Check: pytest -m gpu tests/test_cuda.py -k bias_act
// Time:  python bench/gpu_bench.py --family bias_act
#include "common.cuh"

template <typename T> __device__ __forceinline__ T act_fwd(int act, T x, T slope) {
  switch (act) {
    case GG_ACT_RELU: return x < T(0) ? T(0) : x;
    case GG_ACT_LEAKY_RELU: return x > T(0) ? x : x * slope;
    case GG_ACT_SIGMOID: return gg_sigmoid(x);
    case GG_ACT_TANH: return gg_tanh(x);
    case GG_ACT_GELU: return gg_gelu(x);
    case GG_ACT_GELU_TANH: return gg_gelu_tanh(x);
    case GG_ACT_SILU: return gg_silu(x);
    default: return x;
  }
}

// d act / d pre for the activations whose derivative needs the pre-activation.
template <typename T> __device__ __forceinline__ T act_grad_pre(int act, T pre) {
  switch (act) {
    case GG_ACT_GELU: return gg_gelu_grad(pre);
    case GG_ACT_GELU_TANH: return gg_gelu_tanh_grad(pre);
    default: return gg_silu_grad(pre);
  }
}

__device__ __forceinline__ bool act_needs_pre(int act) {
  return act == GG_ACT_GELU || act == GG_ACT_GELU_TANH || act == GG_ACT_SILU;
}

// d act / d pre, written in terms of the output.
template <typename T> __device__ __forceinline__ T act_grad(int act, T out, T slope) {
  switch (act) {
    case GG_ACT_RELU: return T(out > T(0));
    case GG_ACT_LEAKY_RELU: return out > T(0) ? T(1) : slope;
    case GG_ACT_SIGMOID: return out * (T(1) - out);
    case GG_ACT_TANH: return T(1) - out * out;
    default: return T(1);
  }
}

template <typename T>
__device__ void bias_act_fwd_body(const T* __restrict__ z, const T* __restrict__ b,
                                  T* __restrict__ out, i64 n_rows, i64 m, int act, T slope) {
  typedef typename Vec16<T>::type V;
  const int W = Vec16<T>::n;
  i64 total = n_rows * m;
  if (m % W == 0 && gg_aligned16(z, b, out)) {
    // A vector never straddles two rows, so its W bias values are b[j .. j + W).
    i64 nv = total / W;
    const V* zv = reinterpret_cast<const V*>(z);
    V* ov = reinterpret_cast<V*>(out);
    for (i64 i = gg_tid(); i < nv; i += gg_stride()) {
      i64 j = (i * W) % m;
      V v = zv[i];
      V bv = *reinterpret_cast<const V*>(b + j);
      T* e = gg_elems<T>(v);
      T* eb = gg_elems<T>(bv);
#pragma unroll
      for (int k = 0; k < W; ++k) e[k] = act_fwd(act, e[k] + eb[k], slope);
      ov[i] = v;
    }
    return;
  }
  for (i64 i = gg_tid(); i < total; i += gg_stride()) out[i] = act_fwd(act, z[i] + b[i % m], slope);
}

#define BWD_COLS 32
#define BWD_ROWS 8

template <typename T>
__device__ void bias_act_bwd_body(const T* __restrict__ dout, const T* __restrict__ out,
                                  const T* __restrict__ z, const T* __restrict__ b,
                                  T* __restrict__ dpre, T* __restrict__ db, i64 n_rows, i64 m,
                                  int act, T slope) {
  bool from_pre = act_needs_pre(act);
  __shared__ T partial[BWD_ROWS][BWD_COLS + 1];  // +1: the column reads below avoid bank conflicts
  int tx = threadIdx.x, ty = threadIdx.y;
  i64 col = (i64)blockIdx.x * BWD_COLS + tx;
  T acc = T(0);
  if (col < m) {
    T bias = from_pre ? b[col] : T(0);
    for (i64 row = (i64)blockIdx.y * BWD_ROWS + ty; row < n_rows; row += (i64)gridDim.y * BWD_ROWS) {
      i64 k = row * m + col;
      T g = from_pre ? act_grad_pre(act, z[k] + bias) : act_grad(act, out[k], slope);
      T d = dout[k] * g;
      dpre[k] = d;
      acc += d;
    }
  }
  partial[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && col < m) {
    T s = T(0);
#pragma unroll
    for (int r = 0; r < BWD_ROWS; ++r) s += partial[r][tx];
    atomicAdd(db + col, s);
  }
}

#define BIAS_ACT_WRAPPERS(T, sfx)                                                               \
  GG_KERNEL bias_act_fwd_##sfx(const T* z, const T* b, T* out, i64 n_rows, i64 m, int act,     \
                               T slope) {                                                      \
    bias_act_fwd_body(z, b, out, n_rows, m, act, slope);                                       \
  }                                                                                            \
  extern "C" __global__ void __launch_bounds__(BWD_COLS * BWD_ROWS)                            \
      bias_act_bwd_##sfx(const T* dout, const T* out, const T* z, const T* b, T* dpre, T* db,  \
                         i64 n_rows, i64 m, int act, T slope) {                                \
    bias_act_bwd_body(dout, out, z, b, dpre, db, n_rows, m, act, slope);                       \
  }

BIAS_ACT_WRAPPERS(float, f32)
BIAS_ACT_WRAPPERS(double, f64)
