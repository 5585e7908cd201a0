// Mercury regional pruning on CUDA: see mercury_cuda.hpp.
#include <cuda_runtime.h>

#include <vector>

#include "common/dtype.hpp"
#include "cuda/cuda_check.cuh"
#include "cuda/mercury_cuda.hpp"
#include "cuda/slicer_cuda.hpp"

namespace collab {
namespace cuda {

namespace {

__device__ float load_elem(const void* data, int dtype, size_t i) {
  if (dtype == COLLAB_DTYPE_F32) return static_cast<const float*>(data)[i];
  const uint16_t h = static_cast<const uint16_t*>(data)[i];
  return dtype == COLLAB_DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

// One block per (image, token): unit vector in double, sequential sum like the CPU path.
__global__ void normalise_kernel(const void* data, int dtype, int64_t tokens, int64_t channels, int64_t n, int64_t off,
                                 double* u, int* bad) {
  const int64_t b = blockIdx.y, i = blockIdx.x;
  if (threadIdx.x != 0) return;
  const size_t base = size_t((b * tokens + i + off) * channels);
  double* row = u + size_t((b * n + i) * channels);
  double nn = 0.0;
  for (int64_t c = 0; c < channels; ++c) {
    const float f = load_elem(data, dtype, base + size_t(c));
    if (!isfinite(f)) atomicExch(bad, 1);
    row[c] = double(f);
    nn += row[c] * row[c];
  }
  const double norm = fmax(sqrt(nn), 1e-300);
  for (int64_t c = 0; c < channels; ++c) row[c] = __ddiv_rn(row[c], norm);
  if (off && i == 0)
    for (int64_t c = 0; c < channels; ++c)
      if (!isfinite(load_elem(data, dtype, size_t(b * tokens * channels + c)))) atomicExch(bad, 1);
}

// sim[b][i][j] for all pairs; the dot product runs over channels in order, as on the CPU.
__global__ void cosine_kernel(const double* u, int64_t n, int64_t channels, double* sim) {
  const int64_t b = blockIdx.z;
  const int64_t i = int64_t(blockIdx.y) * blockDim.y + threadIdx.y;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n || j >= n) return;
  // compute the upper triangle's order (min index first) so sim is exactly symmetric
  const int64_t lo = i < j ? i : j, hi = i < j ? j : i;
  const double* a = u + size_t((b * n + lo) * channels);
  const double* c = u + size_t((b * n + hi) * channels);
  double acc = 0.0;
  for (int64_t k = 0; k < channels; ++k) acc = __dadd_rn(acc, __dmul_rn(a[k], c[k]));
  sim[size_t((b * n + i) * n + j)] = acc;
}

}  // namespace

void regional_prune(const collab_tensor& attn, const vit::PruneGeometry& g, int64_t* kept) {
  if (device_count() == 0) fail(COLLAB_ERR_NO_DEVICE, "no CUDA device is visible");
  COLLAB_CUDA_CHECK(cudaSetDevice(attn.device_id));
  const int64_t n = g.n_patches(), c = g.channels;
  DeviceBuffer<double> u, sim;
  DeviceBuffer<int> bad;
  u.ensure(size_t(g.batch * n * c));
  sim.ensure(size_t(g.batch * n * n));
  bad.ensure(1);
  COLLAB_CUDA_CHECK(cudaMemset(bad.ptr, 0, sizeof(int)));
  normalise_kernel<<<dim3(unsigned(n), unsigned(g.batch)), 32>>>(attn.data, int(attn.dtype), g.tokens, c, n,
                                                                   g.has_cls ? 1 : 0, u.ptr, bad.ptr);
  COLLAB_CUDA_CHECK(cudaGetLastError());
  const dim3 blk(16, 16);
  const dim3 grd(unsigned((n + 15) / 16), unsigned((n + 15) / 16), unsigned(g.batch));
  cosine_kernel<<<grd, blk>>>(u.ptr, n, c, sim.ptr);
  COLLAB_CUDA_CHECK(cudaGetLastError());
  int bad_h = 0;
  COLLAB_CUDA_CHECK(cudaMemcpy(&bad_h, bad.ptr, sizeof(int), cudaMemcpyDeviceToHost));
  if (bad_h) fail(COLLAB_ERR_NONFINITE_INPUT, "attention outputs contain NaN or Inf");
  std::vector<double> host(size_t(g.batch * n * n));
  COLLAB_CUDA_CHECK(cudaMemcpy(host.data(), sim.ptr, host.size() * sizeof(double), cudaMemcpyDeviceToHost));
  for (int64_t b = 0; b < g.batch; ++b) vit::select_kept(host.data() + size_t(b * n * n), g, kept + b * g.n_kept());
}

}  // namespace cuda
}  // namespace collab
