// The CPU backend: the reference implementation of every Backend call, GEMMs on oneDNN.
#ifndef ZSCRGAN_CPU_BACKEND_H
#define ZSCRGAN_CPU_BACKEND_H

#include <memory>

#include "backend/backend.h"

namespace zscrgan {

std::unique_ptr<Backend> make_cpu_backend();

}  // namespace zscrgan

#endif  // ZSCRGAN_CPU_BACKEND_H
