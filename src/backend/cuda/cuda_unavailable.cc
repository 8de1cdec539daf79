// Linked instead of the CUDA backend when this build has no nvcc: the entry points exist and
// say why they cannot run.
#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "core/error.h"

namespace zscrgan {

bool cuda_backend_compiled() { return false; }

std::string cuda_unavailable_reason() {
  return "this build has no CUDA backend (nvcc was not found when it was configured)";
}

std::unique_ptr<Backend> make_cuda_backend(bool) {
  fail_device("--device cuda: ", cuda_unavailable_reason());
}

}  // namespace zscrgan
