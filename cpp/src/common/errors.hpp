// Internal error type. C++ code throws collab::Error; the C API boundary (c_api_*.cpp)
// catches everything and turns it into a collab_status plus a thread-local message, so no
// exception ever crosses into C.
#pragma once

#include <cstdarg>
#include <exception>
#include <new>
#include <string>

#include "collab/collab.h"

namespace collab {

class Error : public std::exception {
 public:
  Error(collab_status status, std::string message) : status_(status), message_(std::move(message)) {}
  collab_status status() const noexcept { return status_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  collab_status status_;
  std::string message_;
};

// printf-style helpers; they never return.
[[noreturn]] void fail(collab_status status, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
#define COLLAB_FRAME_CHECK(cond, ...)                          \
  do {                                                         \
    if (!(cond)) ::collab::fail(COLLAB_ERR_FRAME, __VA_ARGS__); \
  } while (0)
#define COLLAB_ARG_CHECK(cond, ...)                                       \
  do {                                                                    \
    if (!(cond)) ::collab::fail(COLLAB_ERR_INVALID_ARGUMENT, __VA_ARGS__); \
  } while (0)

// Record the detail of the last failure on this thread (read by collab_last_error()).
void set_last_error(const char* message);

// Run fn() and translate any exception into a status code. Used by every C entry point.
template <class Fn>
collab_status guarded(Fn&& fn) noexcept {
  try {
    fn();
    set_last_error("");
    return COLLAB_OK;
  } catch (const Error& e) {
    set_last_error(e.what());
    return e.status();
  } catch (const std::bad_alloc&) {
    set_last_error("out of memory");
    return COLLAB_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_last_error(e.what());
    return COLLAB_ERR_INTERNAL;
  } catch (...) {
    set_last_error("unknown internal error");
    return COLLAB_ERR_INTERNAL;
  }
}

}  // namespace collab
