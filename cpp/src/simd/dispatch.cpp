// Picks the kernel table: the best the CPU supports, unless COLLAB_SIMD or
// collab_set_simd() asks for another.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "simd/kernels.hpp"

#if defined(COLLAB_HAVE_AVX2_KERNELS)
#include <cpuid.h>
#endif

namespace collab {

#if !defined(COLLAB_HAVE_AVX2_KERNELS)
const Kernels* avx2_kernels() { return nullptr; }
#endif
#if !defined(COLLAB_HAVE_NEON_KERNELS)
const Kernels* neon_kernels() { return nullptr; }
#endif

namespace {

// AVX2 + F16C usable: CPU flags and the OS saving YMM state (OSXSAVE + XCR0).
bool cpu_has_avx2_f16c() {
#if defined(COLLAB_HAVE_AVX2_KERNELS) && (defined(__GNUC__) || defined(__clang__))
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
  if (!(osxsave && avx && f16c)) return false;
  unsigned xcr0_lo, xcr0_hi;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 6u) != 6u) return false;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return b & (1u << 5);
#else
  return false;
#endif
}

const Kernels* best() {
  if (avx2_kernels() && cpu_has_avx2_f16c()) return avx2_kernels();
  if (neon_kernels()) return neon_kernels();
  return &scalar_kernels();
}

const Kernels* pick(const char* level) {
  if (!level || !*level || std::strcmp(level, "auto") == 0) return best();
  if (std::strcmp(level, "scalar") == 0) return &scalar_kernels();
  if (std::strcmp(level, "avx2") == 0) return cpu_has_avx2_f16c() ? avx2_kernels() : nullptr;
  if (std::strcmp(level, "neon") == 0) return neon_kernels();
  return nullptr;
}

std::atomic<const Kernels*>& active() {
  static std::atomic<const Kernels*> k{[] {
    const Kernels* p = pick(std::getenv("COLLAB_SIMD"));
    return p ? p : best();
  }()};
  return k;
}

}  // namespace

const Kernels& kernels() { return *active().load(std::memory_order_acquire); }

bool set_kernels(const char* level) {
  const Kernels* k = pick(level);
  if (!k) return false;
  active().store(k, std::memory_order_release);
  return true;
}

}  // namespace collab
