# MindFusion's trained nets (models/llm/*.clfn) and the measured quality table of the early-row
# policies (*.quality.json) go into the wheel as collab/llm/nets, so an installed package finds
# them from any directory (collab.llm.fcnet.find_shipped). Only
# committed nets: in a git checkout the list comes from git, so nets trained locally (ignored
# by .gitignore) stay out of the wheel; without git (an sdist) every .clfn there is shipped.
# Only with llama.cpp in the build: the nets run on its ggml.
function(collab_install_llm_nets)
  if(NOT COLLAB_WITH_LLAMA)
    return()
  endif()
  set(_dir ${PROJECT_SOURCE_DIR}/models/llm)
  set(_nets)
  find_package(Git QUIET)
  if(GIT_FOUND AND EXISTS ${PROJECT_SOURCE_DIR}/.git)
    execute_process(COMMAND ${GIT_EXECUTABLE} ls-files -- "*.clfn" "*.quality.json" WORKING_DIRECTORY ${_dir}
                    OUTPUT_VARIABLE _listed RESULT_VARIABLE _rc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(_rc EQUAL 0 AND _listed)
      string(REPLACE "\n" ";" _listed "${_listed}")
      foreach(_f IN LISTS _listed)
        list(APPEND _nets ${_dir}/${_f})
      endforeach()
    endif()
  endif()
  if(NOT _nets)
    file(GLOB _nets ${_dir}/*.clfn ${_dir}/*.quality.json)
  endif()
  list(LENGTH _nets _n)
  message(STATUS "collab: shipping ${_n} trained LLM nets from models/llm in the wheel (collab/llm/nets)")
  if(_nets)
    install(FILES ${_nets} DESTINATION collab/llm/nets)
  endif()
endfunction()

# collab-vlm-tiny's trained projector (models/vlm/projector.npz, ~2 MB) goes into the wheel as
# collab/vlm/projector.npz, so `collab vlm demo` works from any directory
# (collab.vlm.models.projector_path). The mmproj GGUF is written from it on first use.
function(collab_install_vlm_projector)
  if(NOT COLLAB_WITH_LLAMA)  # the VLM runs on llama.cpp's mtmd
    return()
  endif()
  set(_f ${PROJECT_SOURCE_DIR}/models/vlm/projector.npz)
  if(EXISTS ${_f})
    message(STATUS "collab: shipping the trained VLM projector in the wheel (collab/vlm/projector.npz)")
    install(FILES ${_f} DESTINATION collab/vlm)
  endif()
  # its trained image-row codecs and decoding shortcut (collab.vlm.codec.find_vlm_file looks next
  # to the package)
  file(GLOB _codecs ${PROJECT_SOURCE_DIR}/models/vlm/*.image-codec-*.clfn ${PROJECT_SOURCE_DIR}/models/vlm/*.shortcut-*.clfn)
  if(_codecs)
    install(FILES ${_codecs} DESTINATION collab/vlm)
  endif()
endfunction()
