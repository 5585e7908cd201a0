# Compiler flags shared by every target.
#
# -ffp-contract=off: the codec must produce the same bytes as the numpy reference and the
# CUDA kernels. A fused multiply-add rounds once where the reference rounds twice, so
# contraction (GCC's default in GNU mode, and on every aarch64 target) is disabled.
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  add_compile_options($<$<COMPILE_LANGUAGE:C,CXX>:-ffp-contract=off>
                      $<$<COMPILE_LANGUAGE:C,CXX>:-fno-math-errno>
                      $<$<COMPILE_LANGUAGE:CXX>:-Wall> $<$<COMPILE_LANGUAGE:CXX>:-Wextra>)
endif()

if(COLLAB_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "COLLAB_FUZZ needs clang (libFuzzer), e.g. -DCMAKE_CXX_COMPILER=clang++-14")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

if(COLLAB_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# Which SIMD kernel files this target can compile. The x86 AVX2 file is built with its own
# flags and only called after a CPUID check, so the library still runs on any x86-64 CPU.
set(COLLAB_ARCH_X86 OFF)
set(COLLAB_ARCH_ARM64 OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(COLLAB_ARCH_X86 ON)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  set(COLLAB_ARCH_ARM64 ON)
endif()
