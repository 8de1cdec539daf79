// The CUDA backend's public entry points, callable without CUDA headers (a build without
// nvcc links stubs that say why they cannot run).
#ifndef ZSCRGAN_CUDA_H
#define ZSCRGAN_CUDA_H

#include <memory>
#include <string>

#include "backend/backend.h"

namespace zscrgan {

// True when this build has the CUDA backend compiled in.
bool cuda_backend_compiled();
// Why no CUDA device can be used ("" when one can); never throws.
std::string cuda_unavailable_reason();
// Throws Error when CUDA is not compiled in or no device is usable. tf32: training GEMMs in
// TF32 on the tensor cores (faster, about 10 mantissa bits per product) rather than in full
// FP32 (the default), for the backend's lifetime; retrieval stays FP32 either way.
std::unique_ptr<Backend> make_cuda_backend(bool tf32 = false);

}  // namespace zscrgan

#endif  // ZSCRGAN_CUDA_H
