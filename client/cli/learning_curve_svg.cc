#include "client/cli/learning_curve_svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "client/cli/svg.h"

namespace curation::cli {
namespace {

constexpr double kWidth = 720, kHeight = 440;
constexpr double kLeft = 70, kRight = 20, kTop = 40, kBottom = 60;

std::string Num(double v) { return SvgNumber(v); }

std::string Label(double v, const char* format) {
  char buf[32];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

}  // namespace

std::string LearningCurveSvg(const v1::BudgetRecommendation& rec, const std::string& title) {
  // Ranges: every drawn value, so nothing falls off the plot.
  double x_lo = 100, x_hi = 0.1, y_lo = 1, y_hi = 0;
  auto include_y = [&](double y) {
    y_lo = std::min(y_lo, y);
    y_hi = std::max(y_hi, y);
  };
  for (const auto& p : rec.curve()) {
    x_lo = std::min(x_lo, p.percent());
    x_hi = std::max(x_hi, p.percent());
    include_y(p.accuracy().low());
    include_y(p.accuracy().high());
    if (p.has_random_pairs()) {
      include_y(p.random_pairs().mean() - p.random_pairs().sd());
      include_y(p.random_pairs().mean() + p.random_pairs().sd());
    }
  }
  if (rec.reached() && rec.percent() > 0) {
    x_lo = std::min(x_lo, rec.percent());
    x_hi = std::max(x_hi, rec.percent());
  }
  if (rec.curve_size() == 0) x_lo = 0.1, x_hi = 100, y_lo = 0.4, y_hi = 1;
  include_y(rec.fit().r());
  x_lo = std::max(x_lo, 1e-3);
  const double lx_lo = std::log10(x_lo) - 0.1, lx_hi = std::log10(std::max(x_hi, x_lo)) + 0.1;
  const double pad = std::max(0.01, 0.05 * (y_hi - y_lo));
  y_lo = std::max(0.0, y_lo - pad);
  y_hi = std::min(1.0, y_hi + pad);
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  auto px = [&](double percent) {
    return kLeft + (std::log10(std::max(percent, 1e-3)) - lx_lo) / (lx_hi - lx_lo) * plot_w;
  };
  auto py = [&](double y) { return kTop + (y_hi - y) / (y_hi - y_lo) * plot_h; };

  std::string svg = SvgHeader(kWidth, kHeight, title);
  // Axes, with ticks at the decades and the measured budgets.
  svg += "<g stroke=\"#444\" fill=\"none\"><rect x=\"" + Num(kLeft) + "\" y=\"" + Num(kTop) +
         "\" width=\"" + Num(plot_w) + "\" height=\"" + Num(plot_h) + "\"/></g>\n";
  for (const auto& p : rec.curve()) {
    const double x = px(p.percent());
    svg += "<line x1=\"" + Num(x) + "\" y1=\"" + Num(kTop + plot_h) + "\" x2=\"" + Num(x) +
           "\" y2=\"" + Num(kTop + plot_h + 5) + "\" stroke=\"#444\"/>\n";
    svg += "<text x=\"" + Num(x) + "\" y=\"" + Num(kTop + plot_h + 18) +
           "\" text-anchor=\"middle\">" + Label(p.percent(), "%g") + "</text>\n";
  }
  svg += "<text x=\"" + Num(kLeft + plot_w / 2) + "\" y=\"" + Num(kHeight - 15) +
         "\" text-anchor=\"middle\">budget, % of the pool's completions (log scale)</text>\n";
  for (int i = 0; i <= 5; ++i) {
    const double y = y_lo + (y_hi - y_lo) * i / 5;
    svg += "<line x1=\"" + Num(kLeft - 5) + "\" y1=\"" + Num(py(y)) + "\" x2=\"" + Num(kLeft) +
           "\" y2=\"" + Num(py(y)) + "\" stroke=\"#444\"/>\n";
    svg += "<text x=\"" + Num(kLeft - 8) + "\" y=\"" + Num(py(y) + 4) + "\" text-anchor=\"end\">" +
           Label(y, "%.3f") + "</text>\n";
  }
  svg += "<text transform=\"translate(18," + Num(kTop + plot_h / 2) +
         ") rotate(-90)\" text-anchor=\"middle\">held-out pair accuracy</text>\n";

  // The fitted scaling law, sampled evenly on the log axis.
  const auto& fit = rec.fit();
  std::string path;
  for (int i = 0; i <= 200; ++i) {
    const double x = std::pow(10.0, lx_lo + (lx_hi - lx_lo) * i / 200);
    const double y = fit.r() - (fit.r() - fit.a()) * std::exp(-fit.b() * x);
    path += (i == 0 ? "M" : " L") + Num(px(x)) + " " + Num(py(std::clamp(y, y_lo, y_hi)));
  }
  svg += "<path d=\"" + path + "\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>\n";
  svg += "<line x1=\"" + Num(kLeft) + "\" y1=\"" + Num(py(fit.r())) + "\" x2=\"" +
         Num(kLeft + plot_w) + "\" y2=\"" + Num(py(fit.r())) +
         "\" stroke=\"#1f77b4\" stroke-dasharray=\"2 4\"/>\n";

  // Random pairs: mean +- sd, grey.
  std::string random_path;
  for (const auto& p : rec.curve()) {
    if (!p.has_random_pairs()) continue;
    const double x = px(p.percent()) + 4;
    const auto& r = p.random_pairs();
    svg += "<line x1=\"" + Num(x) + "\" y1=\"" + Num(py(r.mean() - r.sd())) + "\" x2=\"" + Num(x) +
           "\" y2=\"" + Num(py(r.mean() + r.sd())) + "\" stroke=\"#888\"/>\n";
    svg +=
        "<circle cx=\"" + Num(x) + "\" cy=\"" + Num(py(r.mean())) + "\" r=\"3\" fill=\"#888\"/>\n";
    random_path += (random_path.empty() ? "M" : " L") + Num(x) + " " + Num(py(r.mean()));
  }
  if (!random_path.empty()) {
    svg += "<path d=\"" + random_path +
           "\" fill=\"none\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>\n";
  }

  // The measured points with their 95% intervals.
  for (const auto& p : rec.curve()) {
    const double x = px(p.percent());
    const auto& a = p.accuracy();
    svg += "<line x1=\"" + Num(x) + "\" y1=\"" + Num(py(a.low())) + "\" x2=\"" + Num(x) +
           "\" y2=\"" + Num(py(a.high())) + "\" stroke=\"#d62728\"/>\n";
    svg += "<circle cx=\"" + Num(x) + "\" cy=\"" + Num(py(a.accuracy())) +
           "\" r=\"4\" fill=\"#d62728\"><title>" + Label(p.percent(), "%g%%: ") +
           Label(a.accuracy(), "%.4f") + "</title></circle>\n";
  }

  // The recommendation.
  if (rec.reached()) {
    const double x = px(rec.percent());
    svg += "<line x1=\"" + Num(x) + "\" y1=\"" + Num(kTop) + "\" x2=\"" + Num(x) + "\" y2=\"" +
           Num(kTop + plot_h) + "\" stroke=\"#2ca02c\" stroke-dasharray=\"6 3\"/>\n";
    svg += "<text x=\"" + Num(x + 4) + "\" y=\"" + Num(kTop + 14) + "\" fill=\"#2ca02c\">" +
           Label(rec.target_share() * 100, "%g%% of plateau at ") + Label(rec.percent(), "%.2g%%") +
           (rec.extrapolated() ? " (extrapolated)" : "") + "</text>\n";
  }

  // Legend.
  double ly = kTop + plot_h - 10;
  auto legend = [&](const std::string& color, const std::string& text) {
    svg += "<rect x=\"" + Num(kLeft + plot_w - 190) + "\" y=\"" + Num(ly - 9) +
           "\" width=\"10\" height=\"10\" fill=\"" + color + "\"/>\n";
    svg +=
        "<text x=\"" + Num(kLeft + plot_w - 175) + "\" y=\"" + Num(ly) + "\">" + text + "</text>\n";
    ly -= 16;
  };
  if (!random_path.empty()) legend("#888", "random pairs, mean &#177; sd");
  legend("#1f77b4",
         "fit: r=" + Label(fit.r(), "%.3f") + ", R&#178;=" + Label(fit.r_squared(), "%.3f"));
  legend("#d62728", "measured, 95% interval");
  svg += "</svg>\n";
  return svg;
}

}  // namespace curation::cli
