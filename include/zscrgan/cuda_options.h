// Settings that only the CUDA backend has, callable without CUDA headers.
#ifndef ZSCRGAN_CUDA_OPTIONS_H
#define ZSCRGAN_CUDA_OPTIONS_H

#include "zscrgan/backend.h"

namespace zscrgan {

// GEMMs in TF32 on the tensor cores (faster, about 10 mantissa bits per product) or in full
// FP32 (the default). Throws Error when `backend` is not the CUDA backend.
void set_cuda_tf32(Backend& backend, bool on);

}  // namespace zscrgan

#endif  // ZSCRGAN_CUDA_OPTIONS_H
