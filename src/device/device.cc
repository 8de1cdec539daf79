#include "device/device.h"

#include <ostream>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda.h"
#include "core/error.h"

namespace zscrgan {

namespace {

std::unique_ptr<Backend> choose(DeviceChoice device, std::ostream& note, bool tf32) {
  if (device == DeviceChoice::Cpu) return make_cpu_backend();
  if (device == DeviceChoice::Cuda) return make_cuda_backend(tf32);
  const std::string reason = cuda_unavailable_reason();
  if (reason.empty()) {
    auto be = make_cuda_backend(tf32);
    note << "device: " << be->description() << "\n";
    return be;
  }
  auto be = make_cpu_backend();
  note << "device: no usable GPU (" << reason << "); using " << be->description() << "\n";
  return be;
}

}  // namespace

std::unique_ptr<Backend> select_backend(DeviceChoice device, std::ostream& note, bool tf32) {
  std::unique_ptr<Backend> be = choose(device, note, tf32);
  if (be->device() != Device::CUDA && tf32)
    note << "note: tf32 applies to CUDA GEMMs only; the CPU computes in FP32\n";
  return be;
}

}  // namespace zscrgan
