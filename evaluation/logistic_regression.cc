#include "evaluation/logistic_regression.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace curation::evaluation {
namespace {

// Rows converted to float64 per BLAS call: 2048 x 257 doubles = 4 MB.
constexpr int64_t kBlock = 2048;

// Relative rounding noise of the objective (a sum of n terms): decreases predicted below it
// cannot be checked by evaluating f.
constexpr double kObjectiveNoise = 1e-11;

// log(1 + exp(z)) without overflow.
double Softplus(double z) { return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z)); }

double Sigmoid(double z) {
  if (z >= 0) return 1 / (1 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1 + e);
}

// The design matrix [x_i, 1] read block by block from the caller's float rows.
class Design {
 public:
  Design(std::span<const float* const> rows, int64_t dim)
      : rows_(rows), dim_(dim), cols_(dim + 1), block_(kBlock * (dim + 1)) {}

  int64_t rows() const { return static_cast<int64_t>(rows_.size()); }
  int64_t cols() const { return cols_; }

  // Calls f(first, count, block) for consecutive blocks, block = count x cols row-major.
  template <typename F>
  void ForEachBlock(F&& f) {
    for (int64_t first = 0; first < rows(); first += kBlock) {
      const int64_t count = std::min(kBlock, rows() - first);
      for (int64_t r = 0; r < count; ++r) {
        const float* x = rows_[first + r];
        double* out = block_.data() + r * cols_;
        for (int64_t j = 0; j < dim_; ++j) out[j] = x[j];
        out[dim_] = 1.0;
      }
      f(first, count, block_.data());
    }
  }

  // out = X theta.
  void Multiply(const std::vector<double>& theta, std::vector<double>& out) {
    ForEachBlock([&](int64_t first, int64_t count, const double* block) {
      cblas_dgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(count), static_cast<int>(cols_),
                  1.0, block, static_cast<int>(cols_), theta.data(), 1, 0.0, out.data() + first, 1);
    });
  }

 private:
  std::span<const float* const> rows_;
  int64_t dim_;
  int64_t cols_;
  std::vector<double> block_;
};

// In-place Cholesky of the lower triangle of the n x n row-major matrix a, then solves
// a x = b into b. False if a is not numerically positive definite.
bool CholeskySolve(std::vector<double>& a, std::vector<double>& b, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int64_t t = 0; t < j; ++t) d -= a[j * n + t] * a[j * n + t];
    if (!(d > 0)) return false;
    const double l = std::sqrt(d);
    a[j * n + j] = l;
    for (int64_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (int64_t t = 0; t < j; ++t) s -= a[i * n + t] * a[j * n + t];
      a[i * n + j] = s / l;
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    double s = b[i];
    for (int64_t t = 0; t < i; ++t) s -= a[i * n + t] * b[t];
    b[i] = s / a[i * n + i];
  }
  for (int64_t i = n - 1; i >= 0; --i) {
    double s = b[i];
    for (int64_t t = i + 1; t < n; ++t) s -= a[t * n + i] * b[t];
    b[i] = s / a[i * n + i];
  }
  return true;
}

}  // namespace

double LogisticModel::Score(const float* x) const {
  double s = intercept;
  for (size_t j = 0; j < weights.size(); ++j) s += weights[j] * x[j];
  return s;
}

absl::StatusOr<LogisticModel> FitLogisticRegression(std::span<const float* const> rows,
                                                    std::span<const uint8_t> labels, int64_t dim,
                                                    const LogisticRegressionOptions& options) {
  const int64_t n = static_cast<int64_t>(rows.size());
  if (dim <= 0 || n == 0 || static_cast<int64_t>(labels.size()) != n) {
    return absl::InvalidArgumentError("logistic regression needs rows, one label per row, dim > 0");
  }
  if (!(options.c > 0) || !std::isfinite(options.c) || options.max_iter < 1) {
    return absl::InvalidArgumentError("logistic regression needs C > 0 and max_iter >= 1");
  }
  int64_t positives = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] > 1) return absl::InvalidArgumentError("labels must be 0 or 1");
    positives += labels[i];
    for (int64_t j = 0; j < dim; ++j) {
      if (!std::isfinite(rows[i][j])) {
        return absl::InvalidArgumentError("logistic regression input has non-finite entries");
      }
    }
  }
  if (positives == 0 || positives == n) {
    return absl::FailedPreconditionError("logistic regression needs both labels in its rows");
  }

  const double c = options.c;
  Design design(rows, dim);
  const int64_t p = design.cols();
  // theta = [w, b]; z = X theta, kept up to date so line-search trials cost O(n).
  std::vector<double> theta(p, 0.0), z(n, 0.0), step(p), xstep(n), grad(p), hess(p * p);
  std::vector<double> resid(n), scaled(kBlock * p), theta_new(p), z_new(n);
  const auto objective = [&](const std::vector<double>& th, const std::vector<double>& zz) {
    double loss = 0;
    for (int64_t i = 0; i < n; ++i) loss += Softplus(zz[i]) - labels[i] * zz[i];
    double penalty = 0;
    for (int64_t j = 0; j < p - 1; ++j) penalty += th[j] * th[j];
    return c * loss + 0.5 * penalty;
  };

  LogisticModel model;
  double f = objective(theta, z);
  for (model.iterations = 1; model.iterations <= options.max_iter; ++model.iterations) {
    // Gradient C X'(sigma(z) - y) + [w, 0] and Hessian C X' D X + diag(1, .., 1, 0).
    for (int64_t i = 0; i < n; ++i) resid[i] = Sigmoid(z[i]) - labels[i];
    for (int64_t j = 0; j < p; ++j) grad[j] = j < p - 1 ? theta[j] : 0.0;
    std::fill(hess.begin(), hess.end(), 0.0);
    design.ForEachBlock([&](int64_t first, int64_t count, const double* block) {
      cblas_dgemv(CblasRowMajor, CblasTrans, static_cast<int>(count), static_cast<int>(p), c, block,
                  static_cast<int>(p), resid.data() + first, 1, 1.0, grad.data(), 1);
      for (int64_t r = 0; r < count; ++r) {
        const double s = Sigmoid(z[first + r]);
        const double w = std::sqrt(c * s * (1 - s));
        for (int64_t j = 0; j < p; ++j) scaled[r * p + j] = w * block[r * p + j];
      }
      cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, static_cast<int>(p),
                  static_cast<int>(count), 1.0, scaled.data(), static_cast<int>(p), 1.0,
                  hess.data(), static_cast<int>(p));
    });
    for (int64_t j = 0; j < p - 1; ++j) hess[j * p + j] += 1.0;

    for (int64_t j = 0; j < p; ++j) step[j] = -grad[j];
    std::vector<double> factor = hess;
    if (!CholeskySolve(factor, step, p)) {
      // Only when every sigma(z) saturates in float64 and the intercept's curvature vanishes;
      // a tiny ridge on the intercept keeps the step defined.
      factor = hess;
      factor[(p - 1) * p + (p - 1)] += 1e-10 * (1 + std::abs(hess[0]));
      for (int64_t j = 0; j < p; ++j) step[j] = -grad[j];
      if (!CholeskySolve(factor, step, p)) {
        return absl::InternalError("logistic regression Hessian is not positive definite");
      }
    }
    double decrement = 0;  // -g . step = g' H^-1 g, twice the predicted decrease of f
    for (int64_t j = 0; j < p; ++j) decrement -= grad[j] * step[j];
    // Near the optimum Newton converges quadratically, so the step that meets the tolerance is
    // still taken: it costs one pass and leaves a gradient at rounding level.
    const bool last = decrement / 2 <= options.tol * (1 + std::abs(f));
    design.Multiply(step, xstep);
    const auto try_step = [&](double t) {
      for (int64_t j = 0; j < p; ++j) theta_new[j] = theta[j] + t * step[j];
      for (int64_t i = 0; i < n; ++i) z_new[i] = z[i] + t * xstep[i];
      return objective(theta_new, z_new);
    };
    double f_new = f;
    if (decrement / 2 > kObjectiveNoise * (1 + std::abs(f))) {
      // Backtracking (Armijo); full Newton steps are accepted near the optimum.
      double t = 1;
      for (int trial = 0; trial < 60; ++trial, t /= 2) {
        f_new = try_step(t);
        if (f_new <= f - 1e-4 * t * decrement) break;
      }
      if (!(f_new <= f)) {
        model.converged = true;  // no step length lowers f: at its minimum to rounding
        break;
      }
    } else {
      // The predicted decrease is below f's rounding noise, so f cannot judge the step; inside
      // Newton's quadratic region the full step is right.
      f_new = try_step(1);
    }
    theta.swap(theta_new);
    z.swap(z_new);
    f = f_new;
    if (last) {
      model.converged = true;
      break;
    }
  }
  model.iterations = std::min(model.iterations, options.max_iter);
  model.weights.assign(theta.begin(), theta.end() - 1);
  model.intercept = theta.back();
  model.objective = f;
  return model;
}

Interval WilsonInterval(int64_t successes, int64_t trials, double z) {
  if (trials <= 0) return {};
  const double n = static_cast<double>(trials);
  const double phat = static_cast<double>(successes) / n;
  const double z2 = z * z;
  const double denom = 1 + z2 / n;
  const double center = (phat + z2 / (2 * n)) / denom;
  const double half = z / denom * std::sqrt(phat * (1 - phat) / n + z2 / (4 * n * n));
  return {std::max(0.0, center - half), std::min(1.0, center + half)};
}

}  // namespace curation::evaluation
