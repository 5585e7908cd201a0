#include "common/errors.hpp"

#include <cstdio>
#include <new>

namespace collab {

namespace {
thread_local std::string g_last_error;
}

void fail(collab_status status, const char* fmt, ...) {
  char buf[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  throw Error(status, buf);
}

void set_last_error(const char* message) {
  try {
    g_last_error = message;
  } catch (...) {
    // Keep the previous message rather than fail while reporting a failure.
  }
}

const char* last_error() noexcept { return g_last_error.c_str(); }

}  // namespace collab
