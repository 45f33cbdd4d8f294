#include "evaluation/scaling_law.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <set>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace curation::evaluation {
namespace {

struct Params {
  double r;
  double a;
  double log_b;
};

double Value(const Params& p, double x) {
  return p.r - (p.r - p.a) * std::exp(-std::exp(p.log_b) * x);
}

double Sse(const Params& p, std::span<const double> x, std::span<const double> y) {
  double sse = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = y[i] - Value(p, x[i]);
    sse += e * e;
  }
  return sse;
}

// Solves the 3x3 system m v = rhs by Gaussian elimination with partial pivoting.
bool Solve3(std::array<std::array<double, 3>, 3> m, std::array<double, 3>& v) {
  for (int c = 0; c < 3; ++c) {
    int pivot = c;
    for (int r = c + 1; r < 3; ++r) {
      if (std::abs(m[r][c]) > std::abs(m[pivot][c])) pivot = r;
    }
    if (!(std::abs(m[pivot][c]) > 0)) return false;
    std::swap(m[c], m[pivot]);
    std::swap(v[c], v[pivot]);
    for (int r = c + 1; r < 3; ++r) {
      const double f = m[r][c] / m[c][c];
      for (int k = c; k < 3; ++k) m[r][k] -= f * m[c][k];
      v[r] -= f * v[c];
    }
  }
  for (int c = 2; c >= 0; --c) {
    for (int k = c + 1; k < 3; ++k) v[c] -= m[c][k] * v[k];
    v[c] /= m[c][c];
  }
  return true;
}

}  // namespace

double ScalingLawFit::operator()(double x) const { return r - (r - a) * std::exp(-b * x); }

absl::StatusOr<ScalingLawFit> FitScalingLaw(std::span<const double> x, std::span<const double> y,
                                            const ScalingLawBounds& bounds) {
  const auto bounded = [&](Params p) {
    p.r = std::clamp(p.r, bounds.lo, bounds.hi);
    p.a = std::clamp(p.a, bounds.lo, bounds.hi);
    return p;
  };
  if (x.size() != y.size()) return absl::InvalidArgumentError("x and y differ in size");
  std::set<double> distinct;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i]) || !std::isfinite(y[i])) {
      return absl::InvalidArgumentError("scaling-law points must be finite");
    }
    distinct.insert(x[i]);
  }
  if (distinct.size() < 3) {
    return absl::InvalidArgumentError("the scaling law has 3 parameters; need 3 distinct budgets");
  }
  const size_t n = x.size();

  // Start: for each b on the grid, (r, a) by linear least squares on the basis
  // (1 - e_i, e_i), e_i = exp(-b x_i).
  Params best{0, 0, 0};
  double best_sse = std::numeric_limits<double>::infinity();
  for (double log_b = std::log(1e-3); log_b <= std::log(1e2) + 1e-9; log_b += std::log(10.0) / 8) {
    double s11 = 0, s12 = 0, s22 = 0, t1 = 0, t2 = 0;
    for (size_t i = 0; i < n; ++i) {
      const double e = std::exp(-std::exp(log_b) * x[i]);
      s11 += (1 - e) * (1 - e);
      s12 += (1 - e) * e;
      s22 += e * e;
      t1 += (1 - e) * y[i];
      t2 += e * y[i];
    }
    const double det = s11 * s22 - s12 * s12;
    if (!(std::abs(det) > 1e-300)) continue;
    const Params p = bounded({(t1 * s22 - t2 * s12) / det, (s11 * t2 - s12 * t1) / det, log_b});
    const double sse = Sse(p, x, y);
    if (sse < best_sse) {
      best_sse = sse;
      best = p;
    }
  }
  if (!std::isfinite(best_sse)) {
    return absl::InvalidArgumentError("scaling-law start failed: budgets too close together");
  }

  ScalingLawFit fit;
  double lambda = 1e-3;
  for (fit.iterations = 0; fit.iterations < 500; ++fit.iterations) {
    // J'J and J'e for residuals e = y - R, J = dR/d(r, a, log b).
    std::array<std::array<double, 3>, 3> jtj{};
    std::array<double, 3> jte{};
    const double b = std::exp(best.log_b);
    for (size_t i = 0; i < n; ++i) {
      const double e = std::exp(-b * x[i]);
      const std::array<double, 3> j{1 - e, e, (best.r - best.a) * x[i] * e * b};
      const double resid = y[i] - Value(best, x[i]);
      for (int u = 0; u < 3; ++u) {
        jte[u] += j[u] * resid;
        for (int v = 0; v < 3; ++v) jtj[u][v] += j[u] * j[v];
      }
    }
    bool improved = false;
    while (lambda < 1e12) {
      auto m = jtj;
      for (int u = 0; u < 3; ++u) m[u][u] += lambda * (jtj[u][u] > 0 ? jtj[u][u] : 1);
      std::array<double, 3> delta = jte;
      if (Solve3(m, delta)) {
        const Params trial = bounded({best.r + delta[0], best.a + delta[1], best.log_b + delta[2]});
        const double sse = Sse(trial, x, y);
        if (std::isfinite(sse) && sse < best_sse) {
          const bool tiny = best_sse - sse <= 1e-15 * (1 + best_sse);
          best = trial;
          best_sse = sse;
          lambda = std::max(lambda / 10, 1e-12);
          improved = true;
          if (tiny) fit.converged = true;
          break;
        }
      }
      lambda *= 10;
    }
    // No step of any damping lowers the SSE: a (local) minimum to rounding.
    if (!improved) fit.converged = true;
    if (fit.converged) break;
  }

  fit.r = best.r;
  fit.a = best.a;
  fit.b = std::exp(best.log_b);
  double mean = 0;
  for (double v : y) mean += v;
  mean /= n;
  double sst = 0;
  for (double v : y) sst += (v - mean) * (v - mean);
  fit.r_squared = sst > 0 ? 1 - best_sse / sst : (best_sse == 0 ? 1.0 : 0.0);
  fit.rmse = std::sqrt(best_sse / n);
  return fit;
}

std::optional<double> BudgetForShare(const ScalingLawFit& fit, double share) {
  if (!(share > 0 && share < 1) || !(fit.r > 0) || !(fit.b > 0)) return std::nullopt;
  const double target = share * fit.r;
  if (fit.a >= target) return 0.0;
  if (!(fit.r > fit.a)) return std::nullopt;
  return std::log((fit.r - fit.a) / (fit.r - target)) / fit.b;
}

}  // namespace curation::evaluation
