// Choosing the device a command computes on: the one place that knows every backend.
#ifndef ZSCRGAN_DEVICE_H
#define ZSCRGAN_DEVICE_H

#include <iosfwd>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "config/config.h"

namespace zscrgan {

// Auto: the GPU when one is usable (said on `note`), else the CPU with a one-line notice.
// Cuda: the GPU or an Error saying why not. Cpu: the CPU. tf32 turns on TF32 GEMMs on the GPU
// (`note` says it does not apply on the CPU). A device given by name is parsed by
// from_string<DeviceChoice> (config/config.h), the one list of device names.
std::unique_ptr<Backend> select_backend(DeviceChoice device, std::ostream& note,
                                        bool tf32 = false);

}  // namespace zscrgan

#endif  // ZSCRGAN_DEVICE_H
