// Retrieval metrics over per-query top-k lists (docs/algorithm.md: Evaluation, Fine print).
// A retrieved image is relevant to a query when its class equals the query's class.
#ifndef ZSCRGAN_METRICS_H
#define ZSCRGAN_METRICS_H

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "eval/retrieval.h"

namespace zscrgan {

struct RetrievalMetrics {
  int k = 0;
  // mean over query classes y of P_y = (relevant retrieved over all queries of class y) /
  // (K * number of queries of class y)
  double prec_at_k = 0.0;
  double map_at_k = 0.0;  // mean over queries of AP@K (0 for a query when D = 0)
  double top1 = 0.0;      // share of queries whose first retrieved image is relevant
  std::vector<int64_t> classes;              // the distinct query classes, ascending
  std::vector<double> per_class_precision;  // P_y, aligned with `classes`
};

// K is lists.k. query_labels has lists.n_queries entries; gallery_labels has one entry per
// gallery row, and every list entry must be a valid gallery row (no empty slots). A size
// mismatch or an out-of-range index is an error naming it. `divisor` is AP@K's D
// (ApDivisor, config/config.h).
RetrievalMetrics compute_retrieval_metrics(const std::vector<int64_t>& query_labels,
                                           const std::vector<int64_t>& gallery_labels,
                                           const TopKLists& lists, ApDivisor divisor);

// The published retrieval record as JSON: an array with one object per query, in query order,
//   [{"query_class": 3, "retrieved_classes": [3, 3, 3, 25, 25, 48, ...]}, ...]
// where retrieved_classes lists the classes of the K retrieved images in rank order.
// Validated as compute_retrieval_metrics validates.
std::string retrieval_record_json(const std::vector<int64_t>& query_labels,
                                  const std::vector<int64_t>& gallery_labels,
                                  const TopKLists& lists);

}  // namespace zscrgan

#endif  // ZSCRGAN_METRICS_H
