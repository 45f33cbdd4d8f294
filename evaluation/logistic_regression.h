// L2-regularised logistic regression: the proxy's linear Bradley-Terry reward model.
//
// Minimises, over weights w and an unpenalised intercept b,
//
//   C * sum_i [ log(1 + exp(z_i)) - y_i z_i ] + |w|^2 / 2,      z_i = w . x_i + b,
//
// which is scikit-learn's LogisticRegression(C) objective (penalty "l2", fit_intercept=True).
// Solved by damped Newton in float64: the (dim + 1)^2 Hessian is accumulated with BLAS dsyrk
// over row blocks, factored by Cholesky, and the step is backtracked (Armijo) until the
// objective falls. The objective is strictly convex, so this reaches the unique optimum to
// machine precision in ~10 iterations, where scikit-learn's lbfgs stops at tol = 1e-4; the
// two agree to about 1e-4 in the coefficients and almost always in every held-out comparison.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace curation::evaluation {

struct LogisticRegressionOptions {
  // Inverse regularisation strength, scikit-learn's C.
  double c = 1.0;
  // Newton iterations at most.
  int max_iter = 100;
  // Converged once the Newton decrement g' H^-1 g / 2 (the predicted objective decrease) is
  // below tol * (1 + objective).
  double tol = 1e-15;
};

struct LogisticModel {
  std::vector<double> weights;
  double intercept = 0;
  int iterations = 0;
  bool converged = false;
  // The objective above at the returned parameters.
  double objective = 0;

  // w . x + b, in double. `x` has weights.size() floats.
  double Score(const float* x) const;
};

// Fits the model to rows[i] (each `dim` floats, owned by the caller; the rows are read block
// by block and never copied whole) with labels[i] in {0, 1}. INVALID_ARGUMENT for mismatched
// sizes, dim <= 0, C <= 0, labels other than 0/1, or non-finite inputs; FAILED_PRECONDITION
// if only one label occurs (the intercept would diverge; scikit-learn refuses too). Uses
// OpenBLAS's threads. Deterministic for the same inputs on one machine.
absl::StatusOr<LogisticModel> FitLogisticRegression(std::span<const float* const> rows,
                                                    std::span<const uint8_t> labels, int64_t dim,
                                                    const LogisticRegressionOptions& options = {});

// The Wilson score interval for a binomial proportion `successes / trials` at normal quantile
// z (1.96 -> 95%): (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n). Unlike the Wald
// interval it stays inside [0, 1] and keeps its coverage near 0 and 1. Returns {0, 1} for
// trials <= 0.
struct Interval {
  double low = 0;
  double high = 1;
};
Interval WilsonInterval(int64_t successes, int64_t trials, double z = 1.959963984540054);

}  // namespace curation::evaluation
