#include "eval/metrics.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.h"

namespace zscrgan {
namespace {

void validate(const char* what, const std::vector<int64_t>& query_labels,
              const std::vector<int64_t>& gallery_labels, const TopKLists& lists) {
  if (lists.k < 1) fail(what, ": lists have k = ", lists.k, ", expected k >= 1");
  if (lists.n_queries < 1) fail(what, ": lists hold no queries");
  const size_t cells = static_cast<size_t>(lists.n_queries) * static_cast<size_t>(lists.k);
  if (lists.index.size() != cells)
    fail(what, ": lists hold ", lists.index.size(), " indices, expected n_queries x k = ",
         lists.n_queries, " x ", lists.k);
  if (query_labels.size() != static_cast<size_t>(lists.n_queries))
    fail(what, ": ", query_labels.size(), " query labels for ", lists.n_queries,
         " query lists");
  const int64_t n_gallery = static_cast<int64_t>(gallery_labels.size());
  for (size_t i = 0; i < cells; ++i) {
    const int64_t g = lists.index[i];
    if (g < 0 || g >= n_gallery)
      fail(what, ": query ", i / lists.k, " rank ", i % lists.k + 1, " holds gallery index ", g,
           (g < 0 ? " (an empty slot: k exceeds the gallery?)" : ""), ", but there are ",
           n_gallery, " gallery labels");
  }
}

}  // namespace

RetrievalMetrics compute_retrieval_metrics(const std::vector<int64_t>& query_labels,
                                           const std::vector<int64_t>& gallery_labels,
                                           const TopKLists& lists, ApDivisor divisor) {
  validate("retrieval metrics", query_labels, gallery_labels, lists);
  const int k = lists.k;

  std::unordered_map<int64_t, int64_t> gallery_count;  // class -> images in the gallery
  for (int64_t c : gallery_labels) ++gallery_count[c];

  struct ClassTally {
    int64_t queries = 0;
    int64_t relevant = 0;
  };
  std::map<int64_t, ClassTally> per_class;  // ordered: classes come out ascending
  double ap_sum = 0.0;
  int64_t top1_hits = 0;

  for (int64_t q = 0; q < lists.n_queries; ++q) {
    const int64_t y = query_labels[q];
    const int64_t* row = lists.index.data() + q * k;
    int64_t hits = 0;
    double precision_sum = 0.0;  // sum over relevant ranks r of P@r
    for (int r = 0; r < k; ++r) {
      if (gallery_labels[row[r]] != y) continue;
      ++hits;
      precision_sum += static_cast<double>(hits) / (r + 1);
    }
    int64_t d = hits;
    if (divisor == ApDivisor::MinRelevantK) {
      const auto it = gallery_count.find(y);
      d = std::min<int64_t>(it == gallery_count.end() ? 0 : it->second, k);
    }
    ap_sum += d > 0 ? precision_sum / static_cast<double>(d) : 0.0;
    if (gallery_labels[row[0]] == y) ++top1_hits;
    ClassTally& t = per_class[y];
    ++t.queries;
    t.relevant += hits;
  }

  RetrievalMetrics m;
  m.k = k;
  double prec_sum = 0.0;
  for (const auto& [cls, t] : per_class) {
    const double p = static_cast<double>(t.relevant) / (static_cast<double>(k) * t.queries);
    m.classes.push_back(cls);
    m.per_class_precision.push_back(p);
    prec_sum += p;
  }
  m.prec_at_k = prec_sum / static_cast<double>(per_class.size());
  m.map_at_k = ap_sum / static_cast<double>(lists.n_queries);
  m.top1 = static_cast<double>(top1_hits) / static_cast<double>(lists.n_queries);
  return m;
}

std::string retrieval_record_json(const std::vector<int64_t>& query_labels,
                                  const std::vector<int64_t>& gallery_labels,
                                  const TopKLists& lists) {
  validate("retrieval record", query_labels, gallery_labels, lists);
  const int k = lists.k;
  nlohmann::json record = nlohmann::json::array();
  for (int64_t q = 0; q < lists.n_queries; ++q) {
    std::vector<int64_t> retrieved(k);
    for (int r = 0; r < k; ++r) retrieved[r] = gallery_labels[lists.index[q * k + r]];
    record.push_back({{"query_class", query_labels[q]}, {"retrieved_classes", retrieved}});
  }
  return record.dump();
}

}  // namespace zscrgan
