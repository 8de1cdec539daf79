// Placeholder entry point; replaced by the full CLI.
#include <cstdio>
int main() {
  std::printf("zscrgan_cuda %s\n", ZSCRGAN_VERSION);
  return 0;
}
