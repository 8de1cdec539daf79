// Element-wise comparison of a result with a reference: |got - ref| <= abs_tol + rel_tol |ref|.
// On failure the message gives the number of mismatches, the first few (index, expected, got,
// error, tolerance) and the largest error, so a failing parity test says where and by how much.
#ifndef ZSCRGAN_TESTS_COMPARE_H
#define ZSCRGAN_TESTS_COMPARE_H

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <sstream>
#include <string>
#include <vector>

namespace zscrgan::testing {

inline ::testing::AssertionResult all_close(const float* ref, const float* got, size_t n,
                                            double abs_tol, double rel_tol,
                                            const std::string& what = "", int max_report = 5) {
  size_t mismatches = 0;
  double worst = -1;
  size_t worst_at = 0;
  std::ostringstream first;
  first.precision(9);
  for (size_t i = 0; i < n; ++i) {
    const double r = ref[i], g = got[i];
    // NaN matches NaN and an infinity matches itself; anything else non-finite is a mismatch.
    const bool same_special = (std::isnan(r) && std::isnan(g)) || (std::isinf(r) && r == g);
    const double err = std::fabs(g - r);
    const double tol = abs_tol + rel_tol * std::fabs(r);
    const bool ok = same_special || err <= tol;
    const double ranked = std::isnan(err) ? INFINITY : err;  // a NaN result is the worst
    if (!same_special && ranked > worst) {
      worst = ranked;
      worst_at = i;
    }
    if (!ok) {
      if (mismatches < static_cast<size_t>(max_report))
        first << "  [" << i << "] expected " << r << ", got " << g << ", error " << err
              << " > tolerance " << tol << "\n";
      ++mismatches;
    }
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  std::ostringstream os;
  os.precision(9);
  os << (what.empty() ? std::string("values") : what) << ": " << mismatches << " of " << n
     << " elements outside " << abs_tol << " + " << rel_tol << " |ref|; largest error " << worst
     << " at [" << worst_at << "] (expected " << ref[worst_at] << ", got " << got[worst_at]
     << ")\n"
     << first.str();
  return ::testing::AssertionFailure() << os.str();
}

inline ::testing::AssertionResult all_close(const std::vector<float>& ref,
                                            const std::vector<float>& got, double abs_tol,
                                            double rel_tol, const std::string& what = "") {
  if (ref.size() != got.size())
    return ::testing::AssertionFailure()
           << what << ": " << got.size() << " values, expected " << ref.size();
  return all_close(ref.data(), got.data(), ref.size(), abs_tol, rel_tol, what);
}

}  // namespace zscrgan::testing

#endif  // ZSCRGAN_TESTS_COMPARE_H
