// Checks for every CUDA runtime call, cuBLAS call and kernel launch: a failure throws
// zscrgan::DeviceError naming the call, the file and line, and CUDA's own error string.
#ifndef ZSCRGAN_KERNELS_CUDA_CHECK_H
#define ZSCRGAN_KERNELS_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/error.h"

namespace zscrgan::cuda_detail {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* call, const char* file,
                                          int line) {
  fail_device(file, ":", line, ": ", call, " failed: ", cudaGetErrorName(err), " (",
       cudaGetErrorString(err), ")");
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* call,
                                            const char* file, int line) {
  fail_device(file, ":", line, ": ", call, " failed: ", cublasGetStatusName(status), " (",
       cublasGetStatusString(status), ")");
}

}  // namespace zscrgan::cuda_detail

#define ZS_CUDA_CHECK(call)                                                          \
  do {                                                                               \
    const cudaError_t zs_cuda_err_ = (call);                                         \
    if (zs_cuda_err_ != cudaSuccess)                                                 \
      ::zscrgan::cuda_detail::throw_cuda_error(zs_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define ZS_CUBLAS_CHECK(call)                                                            \
  do {                                                                                   \
    const cublasStatus_t zs_cublas_status_ = (call);                                     \
    if (zs_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                      \
      ::zscrgan::cuda_detail::throw_cublas_error(zs_cublas_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: a bad configuration (or an earlier asynchronous fault) surfaces
// here, at the launch that revealed it, rather than at some later unrelated call.
#define ZS_LAUNCH_CHECK()                                                                  \
  do {                                                                                     \
    const cudaError_t zs_launch_err_ = cudaGetLastError();                                 \
    if (zs_launch_err_ != cudaSuccess)                                                     \
      ::zscrgan::cuda_detail::throw_cuda_error(zs_launch_err_, "kernel launch", __FILE__, __LINE__); \
  } while (0)

#endif  // ZSCRGAN_KERNELS_CUDA_CHECK_H
