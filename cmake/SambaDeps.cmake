# Finds the dependencies on both targets and hides their differences behind imported targets:
#   CPU machine: Debian's libtorch 1.13 (no TorchConfig.cmake), compiled spdlog.
#   GPU machine: libtorch 2.x from the torch wheel (find_package(Torch)), whose bundled fmt
#                headers force header-only spdlog on std::format.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

# ---- torch ----
find_package(Torch QUIET)
add_library(samba_torch INTERFACE)
add_library(samba::torch ALIAS samba_torch)
if(Torch_FOUND)
  message(STATUS "samba: torch from TorchConfig.cmake (${Torch_DIR})")
  target_link_libraries(samba_torch INTERFACE ${TORCH_LIBRARIES})
  target_include_directories(samba_torch INTERFACE ${TORCH_INCLUDE_DIRS})
  set(SAMBA_TORCH_INCLUDE_DIRS ${TORCH_INCLUDE_DIRS})
else()
  find_path(SAMBA_TORCH_API_INCLUDE torch/torch.h
    PATHS /usr/include/torch/csrc/api/include /usr/local/include/torch/csrc/api/include)
  find_path(SAMBA_ATEN_INCLUDE ATen/ATen.h PATHS /usr/include /usr/local/include)
  find_library(SAMBA_LIB_TORCH torch)
  find_library(SAMBA_LIB_TORCH_CPU torch_cpu)
  find_library(SAMBA_LIB_C10 c10)
  if(NOT SAMBA_TORCH_API_INCLUDE OR NOT SAMBA_LIB_TORCH OR NOT SAMBA_LIB_TORCH_CPU OR NOT SAMBA_LIB_C10)
    message(FATAL_ERROR "samba: libtorch not found. On Debian: 'apt-get install libtorch-dev'; "
      "with a torch wheel: pass -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')")
  endif()
  message(STATUS "samba: torch from system packages (${SAMBA_LIB_TORCH})")
  target_include_directories(samba_torch INTERFACE ${SAMBA_ATEN_INCLUDE} ${SAMBA_TORCH_API_INCLUDE})
  target_link_libraries(samba_torch INTERFACE ${SAMBA_LIB_TORCH} ${SAMBA_LIB_TORCH_CPU} ${SAMBA_LIB_C10} Threads::Threads)
  set(SAMBA_TORCH_INCLUDE_DIRS ${SAMBA_ATEN_INCLUDE} ${SAMBA_TORCH_API_INCLUDE})
endif()

# ---- CUDA: detected, never required ----
set(SAMBA_WITH_CUDA OFF)
if(NOT SAMBA_CUDA STREQUAL "OFF")
  set(_torch_has_cuda OFF)
  if(Torch_FOUND AND (TARGET torch_cuda OR TORCH_CUDA_LIBRARIES OR CUDA_FOUND OR CUDAToolkit_FOUND))
    set(_torch_has_cuda ON)
  endif()
  if(_torch_has_cuda)
    include(CheckLanguage)
    check_language(CUDA)
    if(CMAKE_CUDA_COMPILER)
      if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
        set(CMAKE_CUDA_ARCHITECTURES 90)
      endif()
      enable_language(CUDA)
      set(CMAKE_CUDA_STANDARD 17)
      set(SAMBA_WITH_CUDA ON)
    endif()
  endif()
  if(SAMBA_CUDA STREQUAL "ON" AND NOT SAMBA_WITH_CUDA)
    message(FATAL_ERROR "samba: SAMBA_CUDA=ON but no CUDA-enabled torch and nvcc were found")
  endif()
endif()
message(STATUS "samba: CUDA kernels ${SAMBA_WITH_CUDA}")

# ---- c10d backends for data parallelism (only src/runtime/comm.cpp uses them) ----
# samba::c10d carries what the backend needs to compile and link; SAMBA_C10D_DEFINITIONS the
# defines that make c10d's headers declare it (set on comm.cpp alone, so the precompiled
# header of the other sources stays valid). Neither is required: without one, a multi-process
# run on that device type fails with a clear message and single-process runs are unaffected.
#   CPU build (Debian libtorch 1.13): Gloo. ProcessGroupGloo.hpp needs gloo's headers
#     (libgloo-dev); the implementation is in libtorch_cpu, the transport in libgloo.
#   GPU build (torch wheel): NCCL, headers and library from the wheel's nvidia.nccl package
#     (the system libnccl has another version; never mix them). The wheel ships no gloo headers.
add_library(samba_c10d INTERFACE)
add_library(samba::c10d ALIAS samba_c10d)
set(SAMBA_C10D_DEFINITIONS "")
# Only a system (Debian) torch links the system libgloo; a wheel carries its own gloo build,
# which the system headers need not match.
set(_torch_is_system ON)
if(Torch_FOUND AND (NOT Torch_DIR MATCHES "^/usr/(lib|share)/" OR Torch_DIR MATCHES "(site|dist)-packages"))
  set(_torch_is_system OFF)
endif()
if(_torch_is_system)
  find_path(SAMBA_GLOO_INCLUDE gloo/config.h)
  find_library(SAMBA_LIB_GLOO gloo)
  if(SAMBA_GLOO_INCLUDE AND SAMBA_LIB_GLOO)
    message(STATUS "samba: c10d Gloo backend (${SAMBA_LIB_GLOO})")
    list(APPEND SAMBA_C10D_DEFINITIONS USE_C10D_GLOO SAMBA_HAVE_GLOO=1)
    target_include_directories(samba_c10d INTERFACE ${SAMBA_GLOO_INCLUDE})
    target_link_libraries(samba_c10d INTERFACE ${SAMBA_LIB_GLOO})
  else()
    message(WARNING "samba: gloo not found ('apt-get install libgloo-dev'): multi-process CPU runs disabled")
  endif()
endif()
set(SAMBA_NCCL "AUTO" CACHE STRING "c10d NCCL backend: AUTO (the torch wheel's NCCL when found) or OFF")
if(Torch_FOUND AND (TARGET torch_cuda OR TORCH_CUDA_LIBRARIES) AND NOT SAMBA_NCCL STREQUAL "OFF")
  set(SAMBA_NCCL_ROOT "" CACHE PATH "NCCL root (include/, lib/); default: the torch wheel's nvidia.nccl")
  # Searched anew on every configure, so changing SAMBA_NCCL_ROOT takes effect.
  unset(SAMBA_NCCL_INCLUDE CACHE)
  unset(SAMBA_LIB_NCCL CACHE)
  if(NOT SAMBA_NCCL_ROOT)
    find_package(Python3 COMPONENTS Interpreter QUIET)
    if(Python3_Interpreter_FOUND)
      execute_process(COMMAND ${Python3_EXECUTABLE} -c
          "import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])"
        OUTPUT_VARIABLE _nccl_root OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
      set(SAMBA_NCCL_ROOT "${_nccl_root}")
    endif()
  endif()
  if(SAMBA_NCCL_ROOT)
    find_path(SAMBA_NCCL_INCLUDE nccl.h PATHS ${SAMBA_NCCL_ROOT}/include NO_DEFAULT_PATH)
    find_library(SAMBA_LIB_NCCL NAMES nccl libnccl.so.2 PATHS ${SAMBA_NCCL_ROOT}/lib NO_DEFAULT_PATH)
  endif()
  if(SAMBA_NCCL_INCLUDE AND SAMBA_LIB_NCCL)
    message(STATUS "samba: c10d NCCL backend (${SAMBA_LIB_NCCL})")
    list(APPEND SAMBA_C10D_DEFINITIONS USE_C10D_NCCL SAMBA_HAVE_NCCL=1)
    target_include_directories(samba_c10d INTERFACE ${SAMBA_NCCL_INCLUDE})
    target_link_libraries(samba_c10d INTERFACE ${SAMBA_LIB_NCCL})
  else()
    message(WARNING "samba: the torch wheel's NCCL was not found (pip package nvidia-nccl; or set "
      "-DSAMBA_NCCL_ROOT=<dir with include/nccl.h and lib/libnccl.so.2>): multi-GPU runs disabled")
  endif()
elseif(SAMBA_NCCL STREQUAL "OFF")
  message(STATUS "samba: c10d NCCL backend off (SAMBA_NCCL=OFF): multi-GPU runs disabled")
endif()

# ---- spdlog (see gpu-machine.md: the wheel's bundled fmt shadows the system one) ----
find_package(spdlog REQUIRED)
add_library(samba_spdlog INTERFACE)
add_library(samba::spdlog ALIAS samba_spdlog)
set(_torch_bundles_fmt OFF)
# Only a wheel's own include dir counts: Debian's torch lives in /usr/include next to the
# system fmt that the system spdlog was built with, which is fine.
foreach(_dir IN LISTS SAMBA_TORCH_INCLUDE_DIRS)
  if(Torch_FOUND AND NOT _dir MATCHES "^/usr(/local)?/include/?$" AND EXISTS "${_dir}/fmt/format.h")
    set(_torch_bundles_fmt ON)
  endif()
endforeach()
if(_torch_bundles_fmt)
  message(STATUS "samba: torch bundles fmt; using header-only spdlog on std::format (C++20)")
  target_link_libraries(samba_spdlog INTERFACE spdlog::spdlog_header_only)
  target_compile_definitions(samba_spdlog INTERFACE SPDLOG_USE_STD_FORMAT)
  target_compile_features(samba_spdlog INTERFACE cxx_std_20)
else()
  target_link_libraries(samba_spdlog INTERFACE spdlog::spdlog)
endif()

# ---- yaml-cpp, CLI11, JSON ----
find_package(yaml-cpp REQUIRED)
find_package(CLI11 QUIET CONFIG)
add_library(samba_cli11 INTERFACE)
add_library(samba::cli11 ALIAS samba_cli11)
if(TARGET CLI11::CLI11)
  target_link_libraries(samba_cli11 INTERFACE CLI11::CLI11)
else()
  find_path(SAMBA_CLI11_INCLUDE CLI/CLI.hpp REQUIRED)
  target_include_directories(samba_cli11 INTERFACE ${SAMBA_CLI11_INCLUDE})
endif()

add_library(samba_json INTERFACE)
add_library(samba::json ALIAS samba_json)
find_package(nlohmann_json 3 QUIET)
if(nlohmann_json_FOUND)
  target_link_libraries(samba_json INTERFACE nlohmann_json::nlohmann_json)
else()
  find_path(SAMBA_JSON_INCLUDE nlohmann/json.hpp
    PATHS ${SAMBA_TORCH_INCLUDE_DIRS} ${CMAKE_CURRENT_SOURCE_DIR}/.deps/include)
  if(NOT SAMBA_JSON_INCLUDE)
    message(FATAL_ERROR "samba: nlohmann/json.hpp not found: 'apt-get install nlohmann-json3-dev'")
  endif()
  target_include_directories(samba_json INTERFACE ${SAMBA_JSON_INCLUDE})
endif()

# ---- sentencepiece (only linked into the samba_spm module) ----
pkg_check_modules(SPM REQUIRED IMPORTED_TARGET sentencepiece)
add_library(samba_sentencepiece INTERFACE)
add_library(samba::sentencepiece ALIAS samba_sentencepiece)
find_library(SAMBA_LIB_SPM_TRAIN sentencepiece_train REQUIRED)
target_link_libraries(samba_sentencepiece INTERFACE PkgConfig::SPM ${SAMBA_LIB_SPM_TRAIN})

# Executables reuse the libraries' precompiled headers, which GCC only accepts when the PIC
# flags match: compile them -fPIC like the libraries (they still link as PIE).
function(samba_pch_compatible target)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE OFF)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fPIC>)
endfunction()
