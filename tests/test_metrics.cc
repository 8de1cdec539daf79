// Retrieval metrics on hand-computed retrieval lists.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "eval/metrics.h"
#include "eval/retrieval.h"

namespace zscrgan {
namespace {

TopKLists lists_from(int64_t n_queries, int k, const std::vector<int64_t>& index) {
  TopKLists l = make_topk_lists(n_queries, k);
  l.index = index;
  return l;
}

// Gallery rows 0..7 have classes [1, 1, 1, 2, 2, 3, 3, 3]: class 1 has 3 images, class 2 has 2,
// class 3 has 3. K = 4. Per query: list -> retrieved classes -> relevance.
//   q0 class 1: [0, 3, 1, 5] -> [1, 2, 1, 3] -> [1, 0, 1, 0]
//       hits 2, sum P@r over relevant r = P@1 + P@3 = 1 + 2/3 = 5/3
//       AP(in top K) = (5/3) / 2 = 5/6; AP(min) D = min(3, 4) = 3: (5/3) / 3 = 5/9; top-1 hit
//   q1 class 1: [3, 4, 0, 2] -> [2, 2, 1, 1] -> [0, 0, 1, 1]
//       hits 2, sum = P@3 + P@4 = 1/3 + 2/4 = 5/6
//       AP(in top K) = 5/12; AP(min) = (5/6) / 3 = 5/18; top-1 miss
//   q2 class 2: [5, 6, 7, 0] -> [3, 3, 3, 1] -> [0, 0, 0, 0]: hits 0, AP 0 (both); miss
//   q3 class 3: [5, 7, 6, 3] -> [3, 3, 3, 2] -> [1, 1, 1, 0]
//       hits 3, sum = 1 + 1 + 1 = 3; AP(in top K) = 1; AP(min) D = 3: 1; top-1 hit
//   q4 class 2: [5, 3, 6, 7] -> [3, 2, 3, 3] -> [0, 1, 0, 0]
//       hits 1, sum = P@2 = 1/2; AP(in top K) = 1/2; AP(min) D = min(2, 4) = 2: 1/4; miss
// Prec@K per class: class 1 (q0, q1): (2 + 2) / (4 * 2) = 1/2
//                   class 2 (q2, q4): (0 + 1) / (4 * 2) = 1/8
//                   class 3 (q3):      3 / (4 * 1)      = 3/4
//   Prec@K = (1/2 + 1/8 + 3/4) / 3 = 11/24 (a per-query mean would give 2/5 instead)
// mAP@K (in top K) = (5/6 + 5/12 + 0 + 1 + 1/2) / 5 = (33/12) / 5 = 11/20
// mAP@K (min)      = (5/9 + 5/18 + 0 + 1 + 1/4) / 5 = (75/36) / 5 = 5/12
// Top-1 = 2/5
struct HandExample {
  std::vector<int64_t> gallery_labels{1, 1, 1, 2, 2, 3, 3, 3};
  std::vector<int64_t> query_labels{1, 1, 2, 3, 2};
  TopKLists lists = lists_from(5, 4,
                               {0, 3, 1, 5,  //
                                3, 4, 0, 2,  //
                                5, 6, 7, 0,  //
                                5, 7, 6, 3,  //
                                5, 3, 6, 7});
};

TEST(RetrievalMetrics, HandComputedRelevantInTopK) {
  HandExample ex;
  const RetrievalMetrics m = compute_retrieval_metrics(ex.query_labels, ex.gallery_labels,
                                                       ex.lists, ApDivisor::RelevantInTopK);
  EXPECT_EQ(m.k, 4);
  EXPECT_NEAR(m.prec_at_k, 11.0 / 24.0, 1e-15);
  EXPECT_NEAR(m.map_at_k, 11.0 / 20.0, 1e-15);
  EXPECT_NEAR(m.top1, 2.0 / 5.0, 1e-15);
  ASSERT_EQ(m.classes, (std::vector<int64_t>{1, 2, 3}));
  ASSERT_EQ(m.per_class_precision.size(), 3u);
  EXPECT_NEAR(m.per_class_precision[0], 0.5, 1e-15);
  EXPECT_NEAR(m.per_class_precision[1], 0.125, 1e-15);
  EXPECT_NEAR(m.per_class_precision[2], 0.75, 1e-15);
}

TEST(RetrievalMetrics, HandComputedMinRelevantK) {
  HandExample ex;
  const RetrievalMetrics m = compute_retrieval_metrics(ex.query_labels, ex.gallery_labels,
                                                       ex.lists, ApDivisor::MinRelevantK);
  // Only mAP depends on the divisor.
  EXPECT_NEAR(m.prec_at_k, 11.0 / 24.0, 1e-15);
  EXPECT_NEAR(m.map_at_k, 5.0 / 12.0, 1e-15);
  EXPECT_NEAR(m.top1, 2.0 / 5.0, 1e-15);
}

// A query class with no image in the gallery: D = min(0, K) = 0, so AP = 0 by definition.
// Gallery [7, 7, 8], K = 2; q0 class 9: [0, 1] -> no hits; q1 class 8: [2, 0] -> [1, 0]
//   AP(q1) = P@1 / D = 1 / 1 (in top K: 1 hit; min: min(1, 2) = 1)
//   mAP = (0 + 1) / 2 = 1/2 either way; Prec@2 = (0 / 2 + 1 / 2) / 2 = 1/4; Top-1 = 1/2
TEST(RetrievalMetrics, ClassAbsentFromGalleryScoresZero) {
  const std::vector<int64_t> gallery{7, 7, 8};
  const std::vector<int64_t> queries{9, 8};
  const TopKLists lists = lists_from(2, 2, {0, 1, 2, 0});
  for (ApDivisor d : {ApDivisor::RelevantInTopK, ApDivisor::MinRelevantK}) {
    const RetrievalMetrics m = compute_retrieval_metrics(queries, gallery, lists, d);
    EXPECT_NEAR(m.map_at_k, 0.5, 1e-15) << to_string(d);
    EXPECT_NEAR(m.prec_at_k, 0.25, 1e-15);
    EXPECT_NEAR(m.top1, 0.5, 1e-15);
    EXPECT_EQ(m.classes, (std::vector<int64_t>{8, 9}));
  }
}

// Perfect retrieval: every metric is 1.
TEST(RetrievalMetrics, PerfectRetrievalIsOne) {
  const std::vector<int64_t> gallery{0, 0, 0, 1, 1, 1};
  const std::vector<int64_t> queries{0, 1, 1};
  const TopKLists lists = lists_from(3, 3, {2, 0, 1, 3, 4, 5, 5, 4, 3});
  for (ApDivisor d : {ApDivisor::RelevantInTopK, ApDivisor::MinRelevantK}) {
    const RetrievalMetrics m = compute_retrieval_metrics(queries, gallery, lists, d);
    EXPECT_DOUBLE_EQ(m.prec_at_k, 1.0);
    EXPECT_DOUBLE_EQ(m.map_at_k, 1.0);
    EXPECT_DOUBLE_EQ(m.top1, 1.0);
  }
}

TEST(RetrievalMetrics, ParseDivisor) {
  EXPECT_EQ(from_string<ApDivisor>("relevant_in_top_k", "ap_divisor"), ApDivisor::RelevantInTopK);
  EXPECT_EQ(from_string<ApDivisor>("min_relevant_k", "ap_divisor"), ApDivisor::MinRelevantK);
  EXPECT_STREQ(to_string(ApDivisor::MinRelevantK), "min_relevant_k");
  try {
    from_string<ApDivisor>("min_k", "ap_divisor");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "ap_divisor must be one of relevant_in_top_k, min_relevant_k; got \"min_k\"");
  }
}

void expect_error_containing(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(RetrievalMetrics, MismatchedSizesAreErrors) {
  HandExample ex;
  const auto metrics = [&](const std::vector<int64_t>& q, const std::vector<int64_t>& g,
                           const TopKLists& l) {
    return [=] { compute_retrieval_metrics(q, g, l, ApDivisor::RelevantInTopK); };
  };
  // One query label too few.
  std::vector<int64_t> short_queries(ex.query_labels.begin(), ex.query_labels.end() - 1);
  expect_error_containing(metrics(short_queries, ex.gallery_labels, ex.lists),
                          "4 query labels for 5 query lists");
  // A list entry past the gallery labels.
  std::vector<int64_t> short_gallery(ex.gallery_labels.begin(), ex.gallery_labels.end() - 1);
  expect_error_containing(metrics(ex.query_labels, short_gallery, ex.lists),
                          "query 2 rank 3 holds gallery index 7, but there are 7 gallery labels");
  // An empty slot (k exceeded the gallery).
  TopKLists with_hole = ex.lists;
  with_hole.index[1 * 4 + 3] = -1;
  expect_error_containing(metrics(ex.query_labels, ex.gallery_labels, with_hole), "empty slot");
  // Index array of the wrong size.
  TopKLists truncated = ex.lists;
  truncated.index.pop_back();
  expect_error_containing(metrics(ex.query_labels, ex.gallery_labels, truncated),
                          "19 indices, expected n_queries x k = 5 x 4");
  // The record validates the same way.
  expect_error_containing([&] { retrieval_record_json(short_queries, ex.gallery_labels, ex.lists); },
                          "retrieval record: 4 query labels");
}

TEST(RetrievalRecord, JsonShape) {
  HandExample ex;
  const nlohmann::json record = nlohmann::json::parse(
      retrieval_record_json(ex.query_labels, ex.gallery_labels, ex.lists));
  ASSERT_TRUE(record.is_array());
  ASSERT_EQ(record.size(), 5u);
  EXPECT_EQ(record[0]["query_class"].get<int64_t>(), 1);
  EXPECT_EQ(record[0]["retrieved_classes"].get<std::vector<int64_t>>(),
            (std::vector<int64_t>{1, 2, 1, 3}));
  EXPECT_EQ(record[4]["query_class"].get<int64_t>(), 2);
  EXPECT_EQ(record[4]["retrieved_classes"].get<std::vector<int64_t>>(),
            (std::vector<int64_t>{3, 2, 3, 3}));
  EXPECT_EQ(record[0].size(), 2u);  // no other keys
}

}  // namespace
}  // namespace zscrgan
