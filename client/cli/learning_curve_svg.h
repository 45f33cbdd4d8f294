// A learning curve from RecommendBudget as a standalone SVG image: the measured accuracy at
// each budget with its 95% interval, the fitted scaling law, the random-pairs baseline (mean
// +- sd) when it was measured, and a marker at the recommended budget. The budget axis is
// logarithmic, since budgets usually span 0.5% to 100%.
#pragma once

#include <string>

#include "curation/v1/curation.pb.h"

namespace curation::cli {

// The whole document, starting with "<svg".
std::string LearningCurveSvg(const v1::BudgetRecommendation& rec, const std::string& title);

}  // namespace curation::cli
