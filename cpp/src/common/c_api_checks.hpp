// Argument checks shared by every C entry point (c_api_*.cpp), so each NULL pointer, buffer
// and enum field is refused the same way: COLLAB_ERR_INVALID_ARGUMENT, "<name> is NULL".
// They throw collab::Error; call them inside guarded().
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>

#include "common/errors.hpp"

namespace collab {

struct NamedPtr {
  const void* ptr;
  const char* name;
};

// Every pointer listed must be non-NULL.
inline void require_non_null(std::initializer_list<NamedPtr> args) {
  for (const NamedPtr& a : args) COLLAB_ARG_CHECK(a.ptr != nullptr, "%s is NULL", a.name);
}

// An output buffer: NULL is allowed only with capacity 0 (a size query).
inline void require_buffer(const void* buf, size_t capacity, const char* name) {
  COLLAB_ARG_CHECK(buf != nullptr || capacity == 0, "%s is NULL but its capacity is %zu", name, capacity);
}

// A caller-owned tensor: non-NULL, known dtype and device (enum fields are int32_t).
inline void require_tensor(const collab_tensor* t, const char* name) {
  COLLAB_ARG_CHECK(t != nullptr, "%s is NULL", name);
  COLLAB_ARG_CHECK(t->dtype >= COLLAB_DTYPE_F32 && t->dtype <= COLLAB_DTYPE_BF16, "%s has an unknown dtype %d",
                   name, int(t->dtype));
  COLLAB_ARG_CHECK(t->device == COLLAB_DEVICE_CPU || t->device == COLLAB_DEVICE_CUDA, "%s has an unknown device %d",
                   name, int(t->device));
  COLLAB_ARG_CHECK(t->ndim >= 0 && t->ndim <= COLLAB_MAX_NDIM, "%s has ndim %d, must be in [0, %d]", name,
                   int(t->ndim), COLLAB_MAX_NDIM);
}

}  // namespace collab
