// CUDA path of the SLICER codec; see slicer_cuda.hpp for the split of work between the
// device and the host. Per-element math (|x| bits, f16/bf16 conversions, the asymmetric key,
// the seeded tie choice) is the same code the CPU path runs (common/dtype.hpp, codec/atkf).
#include <cub/device/device_select.cuh>
#include <thrust/iterator/counting_iterator.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "codec/atkf.hpp"
#include "codec/decoder.hpp"
#include "codec/encoder.hpp"
#include "common/dtype.hpp"
#include "cuda/cuda_check.cuh"
#include "cuda/slicer_cuda.hpp"
#include "simd/kernels.hpp"

namespace collab {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxBins = 2048;

struct Scratch {
  int device = -1;
  cudaStream_t stream = nullptr;
  DeviceBuffer<uint32_t> abs_bits, hist, flag, count, ties, chosen, pos;
  DeviceBuffer<uint64_t> keys64;
  DeviceBuffer<float> mag;
  DeviceBuffer<uint8_t> cub_temp, values;
  ~Scratch() {
    if (stream) cudaStreamDestroy(stream);
  }
};

Scratch& scratch_for(collab_codec& ctx, int device) {
  auto* s = static_cast<Scratch*>(ctx.cuda.get());
  if (!s || s->device != device) {
    auto fresh = std::make_shared<Scratch>();
    fresh->device = device;
    COLLAB_CUDA_CHECK(cudaStreamCreateWithFlags(&fresh->stream, cudaStreamNonBlocking));
    ctx.cuda = fresh;
    s = fresh.get();
  }
  return *s;
}

unsigned blocks_for(size_t n) {
  size_t b = (n + kThreads - 1) / kThreads;
  return unsigned(std::min<size_t>(std::max<size_t>(b, 1), 65535));
}

__device__ __forceinline__ uint32_t sign_at(const void* x, int dtype, size_t i) {
  if (dtype == COLLAB_DTYPE_F32) return static_cast<const uint32_t*>(x)[i] >> 31;
  return static_cast<const uint16_t*>(x)[i] >> 15;
}

__global__ void abs_bits_kernel(const void* x, int dtype, size_t n, uint32_t* keys, uint32_t* bad) {
  uint32_t any_bad = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t a;
    if (dtype == COLLAB_DTYPE_F32) {
      a = static_cast<const uint32_t*>(x)[i] & 0x7fffffffu;
    } else if (dtype == COLLAB_DTYPE_F16) {
      a = f32_bits(f16_to_f32(static_cast<const uint16_t*>(x)[i])) & 0x7fffffffu;
    } else {
      a = (uint32_t(static_cast<const uint16_t*>(x)[i]) << 16) & 0x7fffffffu;
    }
    any_bad |= a >= 0x7f800000u;
    keys[i] = a;
  }
  if (any_bad) atomicOr(bad, 1u);
}

__global__ void asym_keys_kernel(const void* x, int dtype, const uint32_t* abs_bits, size_t n, double lam,
                                 uint64_t* keys) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint32_t a = abs_bits[i];
    uint64_t key = 0;
    if (a) {
      const double m = double(bits_f32(a));
      const double v = sign_at(x, dtype, i) ? __ddiv_rn(m, 1.0 - lam) : __ddiv_rn(m, 1.0 + lam);
      key = uint64_t(__double_as_longlong(v));
    }
    keys[i] = key;
  }
}

// Histogram of bits [shift, shift + log2(bins)) of the keys whose masked prefix matches.
template <class K>
__global__ void hist_kernel(const K* keys, size_t n, K prefix, K prefix_mask, int shift, uint32_t bins,
                            uint32_t* hist) {
  __shared__ uint32_t sh[kMaxBins];
  for (uint32_t b = threadIdx.x; b < bins; b += blockDim.x) sh[b] = 0;
  __syncthreads();
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const K k = keys[i];
    if ((k & prefix_mask) == prefix) atomicAdd(&sh[uint32_t(k >> shift) & (bins - 1)], 1u);
  }
  __syncthreads();
  for (uint32_t b = threadIdx.x; b < bins; b += blockDim.x)
    if (sh[b]) atomicAdd(&hist[b], sh[b]);
}

template <class K>
__global__ void collect_equal_kernel(const K* keys, size_t n, K tau, uint32_t* out, uint32_t* count) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    if (keys[i] == tau) out[atomicAdd(count, 1u)] = uint32_t(i);
}

__global__ void gather_mag_kernel(const uint32_t* abs_bits, const uint32_t* pos, size_t n, float* mag) {
  for (size_t j = blockIdx.x * size_t(blockDim.x) + threadIdx.x; j < n; j += size_t(gridDim.x) * blockDim.x)
    mag[j] = bits_f32(abs_bits[pos[j]]);
}

// ATKF survivor of one sign, as in atkf.cpp: key > tau, or key == tau and kept by the tie
// rule (all ties, or the host's seeded choice); tau == 0 keeps non-zeros only.
template <class K>
struct Survivor {
  const K* keys;
  const void* x;
  int dtype;
  K tau;
  bool all_ties;
  const uint32_t* chosen;  // sorted
  uint32_t n_chosen;
  uint32_t sign;
  __device__ bool operator()(uint32_t i) const {
    const K k = keys[i];
    bool keep = k > tau;
    if (k == tau && tau != 0) {
      if (all_ties) {
        keep = true;
      } else {
        uint32_t lo = 0, hi = n_chosen;
        while (lo < hi) {
          const uint32_t mid = (lo + hi) / 2;
          if (chosen[mid] < i) lo = mid + 1;
          else hi = mid;
        }
        keep = lo < n_chosen && chosen[lo] == i;
      }
    }
    return keep && sign_at(x, dtype, i) == sign;
  }
};

template <class K>
void select_on_device(Scratch& s, const collab_tensor& x, uint64_t numel, uint64_t k, const K* keys, uint64_t seed,
                      SignedSurvivors out[2]) {
  cudaStream_t st = s.stream;
  uint32_t* hist = s.hist.ensure(kMaxBins);
  std::vector<uint32_t> h(kMaxBins);
  // Radix select, 11 bits per level; the host picks the bucket between levels.
  K prefix = 0, mask = 0;
  uint64_t krem = k, greater = 0, equal = 0;
  for (int hi = int(sizeof(K) * 8) - 1; hi > 0;) {
    const int lo = hi > 11 ? hi - 11 : 0;
    const uint32_t bins = 1u << (hi - lo);
    COLLAB_CUDA_CHECK(cudaMemsetAsync(hist, 0, bins * sizeof(uint32_t), st));
    hist_kernel<K><<<blocks_for(size_t(numel)), kThreads, 0, st>>>(keys, size_t(numel), prefix, mask, lo, bins, hist);
    COLLAB_CUDA_CHECK(cudaGetLastError());
    COLLAB_CUDA_CHECK(cudaMemcpyAsync(h.data(), hist, bins * sizeof(uint32_t), cudaMemcpyDeviceToHost, st));
    COLLAB_CUDA_CHECK(cudaStreamSynchronize(st));
    uint32_t b = bins - 1;
    uint64_t cum = 0;
    while (cum + h[b] < krem) cum += h[b--];
    greater += cum;
    krem -= cum;
    equal = h[b];
    prefix |= K(b) << lo;
    mask |= K(bins - 1) << lo;
    hi = lo;
  }
  const K tau = prefix;
  const bool partial_ties = tau != 0 && krem < equal;

  std::vector<uint32_t> chosen;
  uint32_t* d_chosen = s.chosen.ensure(1);
  if (partial_ties) {
    uint32_t* d_ties = s.ties.ensure(size_t(equal));
    uint32_t* d_count = s.count.ensure(1);
    COLLAB_CUDA_CHECK(cudaMemsetAsync(d_count, 0, sizeof(uint32_t), st));
    collect_equal_kernel<K><<<blocks_for(size_t(numel)), kThreads, 0, st>>>(keys, size_t(numel), tau, d_ties, d_count);
    COLLAB_CUDA_CHECK(cudaGetLastError());
    chosen.resize(size_t(equal));
    COLLAB_CUDA_CHECK(cudaMemcpyAsync(chosen.data(), d_ties, equal * sizeof(uint32_t), cudaMemcpyDeviceToHost, st));
    COLLAB_CUDA_CHECK(cudaStreamSynchronize(st));
    choose_ties(chosen, krem, seed);  // the same seeded choice as the CPU path, sorted
    d_chosen = s.chosen.ensure(chosen.size());
    COLLAB_CUDA_CHECK(cudaMemcpyAsync(d_chosen, chosen.data(), chosen.size() * sizeof(uint32_t),
                                      cudaMemcpyHostToDevice, st));
  }

  // Order-preserving compaction of each sign's survivors, then their magnitudes.
  uint32_t* d_pos = s.pos.ensure(size_t(numel));
  float* d_mag = s.mag.ensure(size_t(numel));
  uint32_t* d_count = s.count.ensure(1);
  for (uint32_t sg = 0; sg < 2; ++sg) {
    Survivor<K> pred{keys, x.data, int(x.dtype), tau, !partial_ties, d_chosen, uint32_t(chosen.size()), sg};
    thrust::counting_iterator<uint32_t> first(0);
    size_t temp_bytes = 0;
    COLLAB_CUDA_CHECK(cub::DeviceSelect::If(nullptr, temp_bytes, first, d_pos, d_count, int64_t(numel), pred, st));
    void* temp = s.cub_temp.ensure(temp_bytes);
    COLLAB_CUDA_CHECK(cub::DeviceSelect::If(temp, temp_bytes, first, d_pos, d_count, int64_t(numel), pred, st));
    uint32_t n = 0;
    COLLAB_CUDA_CHECK(cudaMemcpyAsync(&n, d_count, sizeof(uint32_t), cudaMemcpyDeviceToHost, st));
    COLLAB_CUDA_CHECK(cudaStreamSynchronize(st));
    if (n) {
      gather_mag_kernel<<<blocks_for(n), kThreads, 0, st>>>(s.abs_bits.ptr, d_pos, n, d_mag);
      COLLAB_CUDA_CHECK(cudaGetLastError());
    }
    out[sg].pos.resize(n);
    out[sg].mag.resize(n);
    if (n) {
      COLLAB_CUDA_CHECK(cudaMemcpyAsync(out[sg].pos.data(), d_pos, n * sizeof(uint32_t), cudaMemcpyDeviceToHost, st));
      COLLAB_CUDA_CHECK(cudaMemcpyAsync(out[sg].mag.data(), d_mag, n * sizeof(float), cudaMemcpyDeviceToHost, st));
    }
    COLLAB_CUDA_CHECK(cudaStreamSynchronize(st));
  }
}

__global__ void scatter_kernel(const uint32_t* pos, const uint8_t* values, size_t n, size_t esize, uint8_t* out) {
  for (size_t j = blockIdx.x * size_t(blockDim.x) + threadIdx.x; j < n; j += size_t(gridDim.x) * blockDim.x) {
    if (esize == 4)
      reinterpret_cast<uint32_t*>(out)[pos[j]] = reinterpret_cast<const uint32_t*>(values)[j];
    else
      reinterpret_cast<uint16_t*>(out)[pos[j]] = reinterpret_cast<const uint16_t*>(values)[j];
  }
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

size_t encode_frame(collab_codec& ctx, const collab_tensor& x, const collab_codec_params& p, uint8_t* out,
                    size_t capacity) {
  validate_params(p);
  const uint64_t numel = checked_numel(x.shape, x.ndim);
  COLLAB_ARG_CHECK(x.data != nullptr || numel == 0, "input data is NULL");
  if (device_count() == 0) fail(COLLAB_ERR_NO_DEVICE, "no CUDA device is visible");
  DeviceGuard guard(x.device_id);
  Scratch& s = scratch_for(ctx, x.device_id);
  cudaStream_t st = s.stream;

  uint32_t* abs_bits = s.abs_bits.ensure(size_t(numel));
  uint32_t* flag = s.flag.ensure(1);
  COLLAB_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(uint32_t), st));
  if (numel) {
    abs_bits_kernel<<<blocks_for(size_t(numel)), kThreads, 0, st>>>(x.data, int(x.dtype), size_t(numel), abs_bits, flag);
    COLLAB_CUDA_CHECK(cudaGetLastError());
  }
  uint32_t bad = 0;
  COLLAB_CUDA_CHECK(cudaMemcpyAsync(&bad, flag, sizeof(uint32_t), cudaMemcpyDeviceToHost, st));
  COLLAB_CUDA_CHECK(cudaStreamSynchronize(st));
  if (bad) fail(COLLAB_ERR_NONFINITE_INPUT, "input contains NaN or Inf");

  const uint64_t k = k_keep_for(numel, p.sparsity);
  if (k == 0) {
    for (int sg = 0; sg < 2; ++sg) {
      ctx.surv[sg].pos.resize(0);
      ctx.surv[sg].mag.resize(0);
    }
  } else if (p.lam == 0.0) {
    select_on_device<uint32_t>(s, x, numel, k, abs_bits, p.seed, ctx.surv);
  } else {
    uint64_t* keys = s.keys64.ensure(size_t(numel));
    asym_keys_kernel<<<blocks_for(size_t(numel)), kThreads, 0, st>>>(x.data, int(x.dtype), abs_bits, size_t(numel),
                                                                     p.lam, keys);
    COLLAB_CUDA_CHECK(cudaGetLastError());
    select_on_device<uint64_t>(s, x, numel, k, keys, p.seed, ctx.surv);
  }
  return encode_survivors(ctx, collab_dtype(x.dtype), x.shape, x.ndim, p, out, capacity);
}

void decode_frame(collab_codec& ctx, const uint8_t* frame, const FrameHeader& h, const collab_tensor& out) {
  if (device_count() == 0) fail(COLLAB_ERR_NO_DEVICE, "no CUDA device is visible");
  DeviceGuard guard(out.device_id);
  Scratch& s = scratch_for(ctx, out.device_id);
  cudaStream_t st = s.stream;
  decode_sparse(ctx, frame, h);  // positions + signed float32 values, validated
  const size_t n = ctx.positions.size(), esize = dtype_size(h.dtype);

  // Two blocks claiming one position is a malformed frame (the CPU path checks the same).
  std::vector<uint64_t> seen(size_t((h.numel + 63) / 64), 0);
  for (uint32_t q : ctx.positions) {
    uint64_t& w = seen[q >> 6];
    const uint64_t bit = uint64_t(1) << (q & 63);
    COLLAB_FRAME_CHECK(!(w & bit), "two blocks claim the same position");
    w |= bit;
  }
  const void* host_values = ctx.values.data();
  if (h.dtype != COLLAB_DTYPE_F32) {
    ctx.values16.resize(n);
    if (h.dtype == COLLAB_DTYPE_F16)
      kernels().to_f16(ctx.values.data(), n, ctx.values16.data());
    else
      kernels().to_bf16(ctx.values.data(), n, ctx.values16.data());
    host_values = ctx.values16.data();
  }
  if (h.numel) COLLAB_CUDA_CHECK(cudaMemsetAsync(out.data, 0, size_t(h.numel) * esize, st));
  if (n) {
    uint32_t* d_pos = s.pos.ensure(n);
    uint8_t* d_val = s.values.ensure(n * esize);
    COLLAB_CUDA_CHECK(cudaMemcpyAsync(d_pos, ctx.positions.data(), n * sizeof(uint32_t), cudaMemcpyHostToDevice, st));
    COLLAB_CUDA_CHECK(cudaMemcpyAsync(d_val, host_values, n * esize, cudaMemcpyHostToDevice, st));
    scatter_kernel<<<blocks_for(n), kThreads, 0, st>>>(d_pos, d_val, n, esize, static_cast<uint8_t*>(out.data));
    COLLAB_CUDA_CHECK(cudaGetLastError());
  }
  COLLAB_CUDA_CHECK(cudaStreamSynchronize(st));
}

}  // namespace cuda
}  // namespace collab
