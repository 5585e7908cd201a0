// Error checking and RAII helpers for the CUDA path. CUDA failures become collab::Error
// (COLLAB_ERR_DEVICE), which the C API boundary turns into a status code.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "common/errors.hpp"

#define COLLAB_CUDA_CHECK(call)                                                             \
  do {                                                                                      \
    cudaError_t collab_e_ = (call);                                                         \
    if (collab_e_ != cudaSuccess)                                                           \
      ::collab::fail(COLLAB_ERR_DEVICE, "%s failed: %s", #call, cudaGetErrorString(collab_e_)); \
  } while (0)

namespace collab {
namespace cuda {

// Grows, never shrinks; freed with its owner.
template <class T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t cap = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  T* ensure(size_t n) {
    if (n > cap || !ptr) {
      if (ptr) cudaFree(ptr);
      ptr = nullptr;
      cap = 0;
      COLLAB_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr), (n ? n : 1) * sizeof(T)));
      cap = n ? n : 1;
    }
    return ptr;
  }
};

// Makes `device` current for the calling thread and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    COLLAB_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) COLLAB_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

}  // namespace cuda
}  // namespace collab
