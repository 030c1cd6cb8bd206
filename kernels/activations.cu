// Elementwise activations, forward and backward, float32 and float64 (suffix _f32 / _f64).
//
//   relu_fwd        out = max(x, 0)                      (x: any shape, n elements, contiguous)
//   relu_bwd        dx = dout * (out > 0)                 relu'(0) = 0, as in PyTorch
//   leaky_relu_fwd  out = x > 0 ? x : x * slope
//   leaky_relu_bwd  dx = x > 0 ? dout : dout * slope      (takes the input x, like ops.py)
//   sigmoid_fwd     out = 1 / (1 + exp(-x)), sign-split so exp never overflows
//   sigmoid_bwd     dx = dout * out * (1 - out)
//   tanh_fwd        out = tanh(x)
//   tanh_bwd        dx = dout * (1 - out^2)
//   gelu_fwd        out = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2          (PyTorch's exact GELU)
//   gelu_bwd        dx = dout (Phi(x) + x phi(x))                       (takes x: not monotonic)
//   gelu_tanh_fwd   out = x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2
//   gelu_tanh_bwd   dx = dout * d/dx of the above (both as x sigmoid(2u): common.cuh)
//   silu_fwd        out = x sigmoid(x)
//   silu_bwd        dx = dout s (1 + x (1 - s)), s = sigmoid(x)
//   erf_fwd         out = erf(x)                      (the erf op; its backward is elementwise CuPy)
//
// Arguments: inputs, then the output, then scalars, then n (int64). Launch: 1-D, GG_BLOCK
// threads, any grid (grid-stride loops). Memory bound: 8 (fwd) or 12 (bwd) bytes per float32
// element, so the target is the card's copy bandwidth; each thread moves 16 bytes per load
// (float4 / double2) when all pointers are 16-byte aligned, then a scalar loop does the tail.
//
// Reference: the forwards and backwards of relu, leaky_relu, sigmoid, tanh, gelu (both modes)
// and silu in gpugrad/ops/elementwise.py (GELU and SiLU: gpugrad/activations.py).
// Check: pytest -m gpu tests/test_cuda.py -k activation
// Time:  python bench/gpu_bench.py --family activations
#include "common.cuh"

template <typename T> struct ReluFwd {
  __device__ T operator()(T x) const { return x < T(0) ? T(0) : x; }  // NaN passes, as maximum
};
template <typename T> struct ReluBwd {
  __device__ T operator()(T dout, T out) const { return dout * T(out > T(0)); }
};
template <typename T> struct LeakyFwd {
  T slope;
  __device__ T operator()(T x) const { return x > T(0) ? x : x * slope; }
};
template <typename T> struct LeakyBwd {
  T slope;
  __device__ T operator()(T dout, T x) const { return x > T(0) ? dout : dout * slope; }
};
template <typename T> struct SigmoidFwd {
  __device__ T operator()(T x) const { return gg_sigmoid(x); }
};
template <typename T> struct SigmoidBwd {
  __device__ T operator()(T dout, T out) const { return dout * out * (T(1) - out); }
};
template <typename T> struct TanhFwd {
  __device__ T operator()(T x) const { return gg_tanh(x); }
};
template <typename T> struct TanhBwd {
  __device__ T operator()(T dout, T out) const { return dout * (T(1) - out * out); }
};

template <typename T> struct ErfFwd {
  __device__ T operator()(T x) const { return gg_erf(x); }
};
template <typename T> struct GeluFwd {
  __device__ T operator()(T x) const { return gg_gelu(x); }
};
template <typename T> struct GeluBwd {
  __device__ T operator()(T dout, T x) const { return dout * gg_gelu_grad(x); }
};
template <typename T> struct GeluTanhFwd {
  __device__ T operator()(T x) const { return gg_gelu_tanh(x); }
};
template <typename T> struct GeluTanhBwd {
  __device__ T operator()(T dout, T x) const { return dout * gg_gelu_tanh_grad(x); }
};
template <typename T> struct SiluFwd {
  __device__ T operator()(T x) const { return gg_silu(x); }
};
template <typename T> struct SiluBwd {
  __device__ T operator()(T dout, T x) const { return dout * gg_silu_grad(x); }
};

// out[i] = f(x[i])
template <typename T, typename F>
__device__ void map1(const T* __restrict__ x, T* __restrict__ out, i64 n, F f) {
  typedef typename Vec16<T>::type V;
  const int W = Vec16<T>::n;
  i64 done = 0;
  if (gg_aligned16(x, out)) {
    i64 nv = n / W;
    const V* xv = reinterpret_cast<const V*>(x);
    V* ov = reinterpret_cast<V*>(out);
    for (i64 i = gg_tid(); i < nv; i += gg_stride()) {
      V v = xv[i];
      T* e = gg_elems<T>(v);
#pragma unroll
      for (int k = 0; k < W; ++k) e[k] = f(e[k]);
      ov[i] = v;
    }
    done = nv * W;
  }
  for (i64 i = done + gg_tid(); i < n; i += gg_stride()) out[i] = f(x[i]);
}

// out[i] = f(a[i], b[i])
template <typename T, typename F>
__device__ void map2(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, i64 n,
                     F f) {
  typedef typename Vec16<T>::type V;
  const int W = Vec16<T>::n;
  i64 done = 0;
  if (gg_aligned16(a, b, out)) {
    i64 nv = n / W;
    const V* av = reinterpret_cast<const V*>(a);
    const V* bv = reinterpret_cast<const V*>(b);
    V* ov = reinterpret_cast<V*>(out);
    for (i64 i = gg_tid(); i < nv; i += gg_stride()) {
      V va = av[i], vb = bv[i];
      T* ea = gg_elems<T>(va);
      T* eb = gg_elems<T>(vb);
#pragma unroll
      for (int k = 0; k < W; ++k) ea[k] = f(ea[k], eb[k]);
      ov[i] = va;
    }
    done = nv * W;
  }
  for (i64 i = done + gg_tid(); i < n; i += gg_stride()) out[i] = f(a[i], b[i]);
}

#define ACTIVATION_WRAPPERS(T, sfx)                                                         \
  GG_KERNEL relu_fwd_##sfx(const T* x, T* out, i64 n) { map1(x, out, n, ReluFwd<T>()); }    \
  GG_KERNEL relu_bwd_##sfx(const T* dout, const T* out, T* dx, i64 n) {                     \
    map2(dout, out, dx, n, ReluBwd<T>());                                                   \
  }                                                                                         \
  GG_KERNEL leaky_relu_fwd_##sfx(const T* x, T* out, T slope, i64 n) {                      \
    LeakyFwd<T> f = {slope};                                                                \
    map1(x, out, n, f);                                                                     \
  }                                                                                         \
  GG_KERNEL leaky_relu_bwd_##sfx(const T* dout, const T* x, T* dx, T slope, i64 n) {        \
    LeakyBwd<T> f = {slope};                                                                \
    map2(dout, x, dx, n, f);                                                                \
  }                                                                                         \
  GG_KERNEL sigmoid_fwd_##sfx(const T* x, T* out, i64 n) { map1(x, out, n, SigmoidFwd<T>()); } \
  GG_KERNEL sigmoid_bwd_##sfx(const T* dout, const T* out, T* dx, i64 n) {                  \
    map2(dout, out, dx, n, SigmoidBwd<T>());                                                \
  }                                                                                         \
  GG_KERNEL tanh_fwd_##sfx(const T* x, T* out, i64 n) { map1(x, out, n, TanhFwd<T>()); }    \
  GG_KERNEL tanh_bwd_##sfx(const T* dout, const T* out, T* dx, i64 n) {                     \
    map2(dout, out, dx, n, TanhBwd<T>());                                                   \
  }                                                                                         \
  GG_KERNEL gelu_fwd_##sfx(const T* x, T* out, i64 n) { map1(x, out, n, GeluFwd<T>()); }    \
  GG_KERNEL gelu_bwd_##sfx(const T* dout, const T* x, T* dx, i64 n) {                       \
    map2(dout, x, dx, n, GeluBwd<T>());                                                     \
  }                                                                                         \
  GG_KERNEL gelu_tanh_fwd_##sfx(const T* x, T* out, i64 n) {                                \
    map1(x, out, n, GeluTanhFwd<T>());                                                      \
  }                                                                                         \
  GG_KERNEL gelu_tanh_bwd_##sfx(const T* dout, const T* x, T* dx, i64 n) {                  \
    map2(dout, x, dx, n, GeluTanhBwd<T>());                                                 \
  }                                                                                         \
  GG_KERNEL erf_fwd_##sfx(const T* x, T* out, i64 n) { map1(x, out, n, ErfFwd<T>()); }      \
  GG_KERNEL silu_fwd_##sfx(const T* x, T* out, i64 n) { map1(x, out, n, SiluFwd<T>()); }    \
  GG_KERNEL silu_bwd_##sfx(const T* dout, const T* x, T* dx, i64 n) {                       \
    map2(dout, x, dx, n, SiluBwd<T>());                                                     \
  }

ACTIVATION_WRAPPERS(float, f32)
ACTIVATION_WRAPPERS(double, f64)
