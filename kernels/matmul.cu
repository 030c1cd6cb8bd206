// Tiled matrix multiply C = A @ B, row-major, float32 (SGEMM) and float64 (_f32 / _f64).
//
//   matmul_tiled_{vec,scalar}   A (M, K), B (K, N) -> C (M, N), all contiguous
//
// Used only when gg.config.matmul == "custom"; the default is cupy.matmul (cuBLAS), which is
// also row zero of the benchmark. Compute bound: 2*M*N*K FLOPs; the target is cuBLAS's rate.
//
// A 256-thread block computes a 64x64 tile of C, walking K in slices of 16:
//   - shared memory holds a 64x16 slice of A (stored transposed, As[k][m], so the inner loop
//     reads 4 consecutive m values) and a 16x64 slice of B;
//   - each thread loads 4 elements of each slice per step: one float4 (two double2) in the
//     _vec version, which needs K % 4 == 0, N % 4 == 0 and 16-byte aligned bases; the
//     _scalar version loads element by element with bounds checks and takes any shape;
//   - register blocking: each thread keeps a 4x4 block of C in registers, so every value read
//     from shared memory feeds 4 multiply-adds instead of 1.
// Edge tiles are zero-padded on load and bounds-checked on store.
//
// Launch: block 256, grid (ceil(N / 64), ceil(M / 64)) or smaller: blocks loop over tiles, so
// any grid is correct; grid.y must stay <= 65535, so for M > 4,194,240 pass
// min(ceil(M / 64), 65535).
// Reference: ops.matmul (numpy/cupy matmul) in gpugrad/ops.py.
// Check: pytest -m gpu tests/test_cuda.py -k matmul
// Time:  python bench/gpu_bench.py --family matmul
#include "common.cuh"

#define BM 64
#define BN 64
#define BK 16
#define TM 4
#define TN 4
#define APAD 4  // keeps As rows 16-byte aligned and spreads the transposed stores over banks

template <typename T> __device__ __forceinline__ void load4(const T* p, T* v);
template <> __device__ __forceinline__ void load4<float>(const float* p, float* v) {
  float4 f = *reinterpret_cast<const float4*>(p);
  v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
}
template <> __device__ __forceinline__ void load4<double>(const double* p, double* v) {
  double2 a = reinterpret_cast<const double2*>(p)[0], b = reinterpret_cast<const double2*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
}

// 4 values of `src` row r starting at column c (zero beyond the matrix).
template <typename T, bool VEC>
__device__ __forceinline__ void load_row4(const T* __restrict__ src, int rows, int cols, i64 r,
                                          i64 c, T* v) {
  if (VEC && r < rows && c + 3 < cols) {
    load4(src + (i64)r * cols + c, v);
  } else {
#pragma unroll
    for (int q = 0; q < 4; ++q) v[q] = (r < rows && c + q < cols) ? src[(i64)r * cols + c + q] : T(0);
  }
}

template <typename T, bool VEC>
__device__ void matmul_body(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
                            int M, int N, int K) {
  __shared__ __align__(16) T As[BK][BM + APAD];
  __shared__ __align__(16) T Bs[BK][BN];
  const int tid = threadIdx.x;
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);  // 16 x 16 threads
  // Which 4 elements this thread loads: A slice 64 rows x 16 cols, B slice 16 rows x 64 cols.
  const int a_r = tid / (BK / 4), a_c = (tid % (BK / 4)) * 4;
  const int b_r = tid / (BN / 4), b_c = (tid % (BN / 4)) * 4;

  // Grid-stride over output tiles: grid.y is capped at 65535 (M >= 4,194,241 rows needs more
  // tiles than that), so a block loops. Every thread of a block runs the same iterations, so
  // the barriers inside stay uniform; the k loop ends with one, so As/Bs are free to refill.
  for (i64 row0 = (i64)blockIdx.y * BM; row0 < M; row0 += (i64)gridDim.y * BM) {
    for (i64 col0 = (i64)blockIdx.x * BN; col0 < N; col0 += (i64)gridDim.x * BN) {
      T acc[TM][TN];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

      for (int k0 = 0; k0 < K; k0 += BK) {
        T v[4];
        load_row4<T, VEC>(A, M, K, row0 + a_r, k0 + a_c, v);
#pragma unroll
        for (int q = 0; q < 4; ++q) As[a_c + q][a_r] = v[q];
        load_row4<T, VEC>(B, K, N, k0 + b_r, col0 + b_c, v);
#pragma unroll
        for (int q = 0; q < 4; ++q) Bs[b_r][b_c + q] = v[q];
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
          T a[TM], b[TN];
#pragma unroll
          for (int i = 0; i < TM; ++i) a[i] = As[kk][ty * TM + i];
#pragma unroll
          for (int j = 0; j < TN; ++j) b[j] = Bs[kk][tx * TN + j];
#pragma unroll
          for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
      }

#pragma unroll
      for (int i = 0; i < TM; ++i) {
        i64 r = row0 + ty * TM + i;
        if (r >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          i64 c = col0 + tx * TN + j;
          if (c < N) C[r * N + c] = acc[i][j];
        }
      }
    }
  }
}

#define MATMUL_WRAPPERS(T, sfx)                                                               \
  GG_KERNEL matmul_tiled_vec_##sfx(const T* A, const T* B, T* C, int M, int N, int K) {       \
    matmul_body<T, true>(A, B, C, M, N, K);                                                   \
  }                                                                                           \
  GG_KERNEL matmul_tiled_scalar_##sfx(const T* A, const T* B, T* C, int M, int N, int K) {    \
    matmul_body<T, false>(A, B, C, M, N, K);                                                  \
  }

MATMUL_WRAPPERS(float, f32)
MATMUL_WRAPPERS(double, f64)
