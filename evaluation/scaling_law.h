// The seed paper's data scaling law (Khera et al., Eq. 1), fitted to a measured learning curve:
//
//   R(x) = r - (r - a) * exp(-b * x),     x = percent of the data (0 .. 100)
//
// r is the plateau, a the value extrapolated to no data, b how fast the plateau is reached.
#pragma once

#include <limits>
#include <optional>
#include <span>

#include "absl/status/statusor.h"

namespace curation::evaluation {

struct ScalingLawFit {
  double r = 0;
  double a = 0;
  double b = 0;
  // 1 - SSE / SST over the fitted points (1 when SST == SSE == 0), and sqrt(SSE / points).
  double r_squared = 0;
  double rmse = 0;
  int iterations = 0;
  bool converged = false;

  double operator()(double x) const;
};

// Where r and a may lie: accuracies are in [0, 1], and a curve that never levels off within
// the budgets measured (flat, or falling) otherwise fits a "plateau" anywhere, -1290 for one.
struct ScalingLawBounds {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
};

// Least-squares fit of (r, a, b) to points (x[i], y[i]) by Levenberg-Marquardt, with b kept
// positive (fitted as log b) and r and a within `bounds` (every step projected onto them). Since R
// is linear in (r, a) for a fixed b, the start is the best of a log-spaced grid of b in [1e-3, 1e2]
// with (r, a) solved exactly, which keeps LM away from the flat b -> 0 and b -> infinity ends.
// INVALID_ARGUMENT unless x and y have the same size, at least 3 distinct x values, and every value
// is finite.
absl::StatusOr<ScalingLawFit> FitScalingLaw(std::span<const double> x, std::span<const double> y,
                                            const ScalingLawBounds& bounds = {});

// The smallest x with R(x) >= share * r: ln((r - a) / (r - share * r)) / b, or 0 when a already
// reaches it. May exceed 100 (an extrapolation the caller should flag). nullopt when the
// fitted curve never reaches it (r <= 0, or r <= a with a below the target) or share is
// outside (0, 1).
std::optional<double> BudgetForShare(const ScalingLawFit& fit, double share);

}  // namespace curation::evaluation
