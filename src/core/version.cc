#include "core/version.h"

namespace zscrgan {
const char* version() { return ZSCRGAN_VERSION; }
}  // namespace zscrgan
