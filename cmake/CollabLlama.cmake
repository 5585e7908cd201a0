# LLM split runner on llama.cpp (issue 4).
#
# COLLAB_LLAMA=AUTO links llama.cpp when it is found, ON requires it, OFF builds the core
# without it (the collab_llm_* C functions then report COLLAB_ERR_UNSUPPORTED): apps that
# only need the codec and the ViT parts do not need llama.cpp.
#
# llama.cpp comes from llama-cpp-python (0.3.36): its wheel installs headers and the CMake
# packages llama/ggml next to the Python package. We find that install through the Python
# interpreter (without importing llama_cpp) and link the same shared libraries Python's
# llama_cpp loads, with an RPATH to their directory. COLLAB_LLAMA_PREFIX overrides the
# search (any prefix holding lib/cmake/llama).
set(COLLAB_LLAMA "AUTO" CACHE STRING "Build the llama.cpp split runner: AUTO, ON, OFF")
set_property(CACHE COLLAB_LLAMA PROPERTY STRINGS AUTO ON OFF)
set(COLLAB_LLAMA_PREFIX "" CACHE PATH "Prefix with lib/cmake/llama (default: from llama-cpp-python)")
set(COLLAB_WITH_LLAMA OFF)
set(COLLAB_LLAMA_RUNTIME_DIR "")

if(NOT COLLAB_LLAMA STREQUAL "OFF")
  set(_collab_llama_prefixes)
  if(COLLAB_LLAMA_PREFIX)
    list(APPEND _collab_llama_prefixes ${COLLAB_LLAMA_PREFIX})
  else()
    if(NOT Python_EXECUTABLE)
      find_package(Python COMPONENTS Interpreter QUIET)
    endif()
    if(Python_EXECUTABLE)
      execute_process(
        COMMAND ${Python_EXECUTABLE} -c
          "import importlib.util, os; s = importlib.util.find_spec('llama_cpp'); print(os.path.dirname(s.origin) if s and s.origin else '')"
        OUTPUT_VARIABLE _collab_llama_pkg OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
      if(_collab_llama_pkg)
        get_filename_component(_collab_llama_site ${_collab_llama_pkg} DIRECTORY)
        list(APPEND _collab_llama_prefixes ${_collab_llama_pkg} ${_collab_llama_site})
        if(EXISTS ${_collab_llama_pkg}/lib)
          set(COLLAB_LLAMA_RUNTIME_DIR ${_collab_llama_pkg}/lib)
        endif()
      endif()
    endif()
  endif()
  if(_collab_llama_prefixes)
    find_package(llama CONFIG QUIET PATHS ${_collab_llama_prefixes} PATH_SUFFIXES lib/cmake/llama lib64/cmake/llama
                 NO_DEFAULT_PATH)
  endif()
  if(llama_FOUND AND TARGET llama)
    set(COLLAB_WITH_LLAMA ON)
    if(NOT COLLAB_LLAMA_RUNTIME_DIR)
      set(COLLAB_LLAMA_RUNTIME_DIR ${LLAMA_LIB_DIR})
    endif()
    message(STATUS "collab: llama.cpp split runner enabled (llama ${LLAMA_VERSION}, libs ${COLLAB_LLAMA_RUNTIME_DIR})")
  elseif(COLLAB_LLAMA STREQUAL "ON")
    message(FATAL_ERROR "COLLAB_LLAMA=ON but llama.cpp was not found: install llama-cpp-python==0.3.36 "
                        "(or set COLLAB_LLAMA_PREFIX to a prefix with lib/cmake/llama)")
  else()
    message(STATUS "collab: llama.cpp not found, LLM split runner disabled (COLLAB_LLAMA=AUTO)")
  endif()
endif()

# Add the LLM sources (or the stubs) to the core library.
function(collab_add_llm target)
  set(_dir ${PROJECT_SOURCE_DIR}/cpp/src/llm)
  # public API only, the wire format and the image header checks: both builds (tested and
  # fuzzed without llama.cpp)
  target_sources(${target} PRIVATE ${_dir}/c_api_llm_stream.cpp ${_dir}/wire.cpp
                                    ${PROJECT_SOURCE_DIR}/cpp/src/vlm/image.cpp
                                    ${PROJECT_SOURCE_DIR}/cpp/src/vlm/c_api_vlm_params.cpp)
  if(COLLAB_WITH_LLAMA)
    target_sources(${target} PRIVATE ${_dir}/llm_runner.cpp ${_dir}/c_api_llm.cpp
                                      ${_dir}/fcnet_format.cpp ${_dir}/fcnet_ggml.cpp)
    target_link_libraries(${target} PRIVATE llama)
    if(TARGET ggml::ggml-cpu)  # the FC nets call ggml_graph_compute_with_ctx (ggml-cpu.h)
      target_link_libraries(${target} PRIVATE ggml::ggml-cpu)
    endif()
    # The VLM image encoder: libmtmd from the same install as libllama (no CMake package).
    find_library(COLLAB_MTMD_LIB NAMES mtmd PATHS ${COLLAB_LLAMA_RUNTIME_DIR} ${LLAMA_LIB_DIR} NO_DEFAULT_PATH)
    find_path(COLLAB_MTMD_INCLUDE mtmd.h PATHS ${LLAMA_INCLUDE_DIR} NO_DEFAULT_PATH)
    if(COLLAB_MTMD_LIB AND COLLAB_MTMD_INCLUDE)
      message(STATUS "collab: VLM image encoder enabled (${COLLAB_MTMD_LIB})")
      target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/cpp/src/vlm/vision.cpp
                                       ${PROJECT_SOURCE_DIR}/cpp/src/vlm/device.cpp
                                       ${PROJECT_SOURCE_DIR}/cpp/src/vlm/c_api_vlm.cpp)
      target_include_directories(${target} PRIVATE ${COLLAB_MTMD_INCLUDE})
      target_link_libraries(${target} PRIVATE ${COLLAB_MTMD_LIB})
    else()
      message(STATUS "collab: libmtmd not found next to libllama, VLM image encoder disabled")
      target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/cpp/src/vlm/c_api_vlm_stub.cpp)
    endif()
    target_compile_definitions(${target} PRIVATE COLLAB_WITH_LLAMA)
    # Load the very libllama/libggml that llama-cpp-python ships (one copy per process).
    get_target_property(_rpath ${target} INSTALL_RPATH)
    if(NOT _rpath)
      set(_rpath)
    endif()
    list(APPEND _rpath ${COLLAB_LLAMA_RUNTIME_DIR})
    set_target_properties(${target} PROPERTIES INSTALL_RPATH "${_rpath}" BUILD_RPATH "${COLLAB_LLAMA_RUNTIME_DIR}")
  else()
    target_sources(${target} PRIVATE ${_dir}/c_api_llm_stub.cpp ${_dir}/fcnet_stub.cpp
                                     ${PROJECT_SOURCE_DIR}/cpp/src/vlm/c_api_vlm_stub.cpp)
  endif()
endfunction()
