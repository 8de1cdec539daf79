// A writer of the one Python pickle the original project's analysis scripts read: the
// published retrieval record, a list of one-key dicts {query class id: [retrieved images'
// class ids, best first]}, one per query in query order. Protocol 2, so that Python 2 and 3
// both load it. Only the opcodes that record needs are written (no memo, no unpickler here).
#ifndef ZSCRGAN_PICKLE_H
#define ZSCRGAN_PICKLE_H

#include <cstdint>
#include <string>
#include <vector>

namespace zscrgan {

struct QueryRetrieval {
  int64_t query_class = 0;
  std::vector<int64_t> retrieved_classes;
};

// The pickle bytes of [{query_class: [retrieved_classes...]}, ...].
std::string pickle_retrieval_record(const std::vector<QueryRetrieval>& record);

}  // namespace zscrgan

#endif  // ZSCRGAN_PICKLE_H
