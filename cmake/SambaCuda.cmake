# The raw CUDA kernels (src/kernels/*/*.cu, torch-free by design).
#   GPU build (SAMBA_WITH_CUDA, from SambaDeps): they are compiled into libsamba; add flags.
#   Any other build where nvcc is found: they are compiled for sm_90 into an object library
#   that is part of the default build and links nowhere, so CI (no GPU, CPU libtorch) still
#   refuses a kernel that does not compile. -DSAMBA_CUDA=OFF skips it.
file(GLOB_RECURSE SAMBA_CUDA_KERNEL_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/kernels/*.cu)

if(SAMBA_WITH_CUDA)
  target_compile_options(samba PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-O3 -lineinfo>)
elseif(NOT SAMBA_CUDA STREQUAL "OFF" AND SAMBA_CUDA_KERNEL_SOURCES)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    enable_language(CUDA)
    add_library(samba_cuda_compile_check OBJECT ${SAMBA_CUDA_KERNEL_SOURCES})
    set_target_properties(samba_cuda_compile_check PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)
    target_compile_options(samba_cuda_compile_check PRIVATE -O3)
    message(STATUS "samba: torch has no CUDA; the CUDA kernels are compiled for sm_${CMAKE_CUDA_ARCHITECTURES} "
                   "as a check only (target samba_cuda_compile_check)")
  else()
    message(STATUS "samba: nvcc not found; the CUDA kernels are not compiled (no compile check)")
  endif()
endif()
