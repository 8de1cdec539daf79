// Choosing the device a command computes on: the one place that knows every backend.
#ifndef ZSCRGAN_DEVICE_H
#define ZSCRGAN_DEVICE_H

#include <iosfwd>
#include <memory>
#include <string>

#include "backend/backend.h"

namespace zscrgan {

// "auto": the GPU when one is usable (said on `note`), else the CPU with a one-line notice.
// "cuda": the GPU or an Error saying why not. "cpu": the CPU. tf32 turns on TF32 GEMMs on
// the GPU (`note` says it does not apply on the CPU).
std::unique_ptr<Backend> select_backend(const std::string& device, std::ostream& note,
                                        bool tf32 = false);

}  // namespace zscrgan

#endif  // ZSCRGAN_DEVICE_H
