#ifndef ZSCRGAN_VERSION_H
#define ZSCRGAN_VERSION_H
namespace zscrgan {
const char* version();
}
#endif  // ZSCRGAN_VERSION_H
