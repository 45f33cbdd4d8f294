#include "client/cli/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace curation::cli {
namespace {

constexpr double kWidth = 640, kHeight = 400;
constexpr double kLeft = 70, kRight = 20, kTop = 50, kBottom = 60;
constexpr double kPlotW = kWidth - kLeft - kRight, kPlotH = kHeight - kTop - kBottom;
// Distinguishable for the usual kinds of colour blindness (Okabe and Ito).
constexpr const char* kColours[] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7",
                                    "#56B4E9", "#D55E00", "#F0E442", "#000000"};

}  // namespace

std::string SvgEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string SvgNumber(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", v);
  return buf;
}

std::string SvgHeader(double width, double height, const std::string& title,
                      const std::string& subtitle) {
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + SvgNumber(width) +
                  "\" height=\"" + SvgNumber(height) + "\" viewBox=\"0 0 " + SvgNumber(width) +
                  " " + SvgNumber(height) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text x=\"" + SvgNumber(width / 2) +
       "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" + SvgEscape(title) + "</text>\n";
  if (!subtitle.empty()) {
    s += "<text x=\"" + SvgNumber(width / 2) + "\" y=\"40\" text-anchor=\"middle\" fill=\"#555\">" +
         SvgEscape(subtitle) + "</text>\n";
  }
  return s;
}

namespace {

std::string Escape(const std::string& text) { return SvgEscape(text); }
std::string Num(double v) { return SvgNumber(v); }

std::string Label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

std::string Header(const std::string& title, const std::string& subtitle) {
  return SvgHeader(kWidth, kHeight, title, subtitle);
}

// Axes with ticks at both ends and the middle, labelled in data units.
std::string Axes(double x0, double x1, double y0, double y1, const std::string& x_label,
                 const std::string& y_label, bool log_x) {
  std::string s;
  const double bottom = kTop + kPlotH;
  s += "<line x1=\"" + Num(kLeft) + "\" y1=\"" + Num(bottom) + "\" x2=\"" + Num(kLeft + kPlotW) +
       "\" y2=\"" + Num(bottom) + "\" stroke=\"black\"/>\n";
  s += "<line x1=\"" + Num(kLeft) + "\" y1=\"" + Num(kTop) + "\" x2=\"" + Num(kLeft) + "\" y2=\"" +
       Num(bottom) + "\" stroke=\"black\"/>\n";
  for (int t = 0; t <= 2; ++t) {
    const double f = t / 2.0;
    const double xv =
        log_x ? std::exp(std::log(x0) + f * (std::log(x1) - std::log(x0))) : x0 + f * (x1 - x0);
    const double px = kLeft + f * kPlotW;
    s += "<text x=\"" + Num(px) + "\" y=\"" + Num(bottom + 16) + "\" text-anchor=\"middle\">" +
         Label(xv) + "</text>\n";
    const double py = bottom - f * kPlotH;
    s += "<text x=\"" + Num(kLeft - 6) + "\" y=\"" + Num(py + 4) + "\" text-anchor=\"end\">" +
         Label(y0 + f * (y1 - y0)) + "</text>\n";
  }
  s += "<text x=\"" + Num(kLeft + kPlotW / 2) + "\" y=\"" + Num(kHeight - 14) +
       "\" text-anchor=\"middle\">" + Escape(x_label) + "</text>\n";
  s += "<text transform=\"translate(16," + Num(kTop + kPlotH / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + Escape(y_label) + "</text>\n";
  return s;
}

}  // namespace

std::string HistogramSvg(const std::string& title, const std::vector<double>& values, int bins) {
  bins = std::max(bins, 1);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  int64_t skipped = 0;
  for (double v : values) {
    if (!std::isfinite(v)) {
      ++skipped;
      continue;
    }
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  std::vector<int64_t> counts(bins, 0);
  const bool any = lo <= hi;
  if (!any) lo = hi = 0;
  const double width = hi - lo;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    int b = width > 0 ? static_cast<int>((v - lo) / width * bins) : 0;
    counts[std::clamp(b, 0, bins - 1)]++;
  }
  const int64_t top = std::max<int64_t>(1, *std::max_element(counts.begin(), counts.end()));
  std::string subtitle = std::to_string(values.size() - skipped) + " values";
  if (skipped > 0) subtitle += ", " + std::to_string(skipped) + " non-finite left out";
  std::string s = Header(title, subtitle);
  s += Axes(lo, width > 0 ? hi : lo + 1, 0, static_cast<double>(top), "score", "count", false);
  const double bar_w = kPlotW / bins;
  for (int b = 0; b < bins; ++b) {
    const double h = kPlotH * static_cast<double>(counts[b]) / static_cast<double>(top);
    s += "<rect class=\"bar\" x=\"" + Num(kLeft + b * bar_w) + "\" y=\"" + Num(kTop + kPlotH - h) +
         "\" width=\"" + Num(std::max(bar_w - 1, 0.5)) + "\" height=\"" + Num(h) + "\" fill=\"" +
         kColours[0] + "\"><title>" + Label(lo + b * (width / bins)) + " .. " +
         Label(lo + (b + 1) * (width / bins)) + ": " + std::to_string(counts[b]) +
         "</title></rect>\n";
  }
  s += "</svg>\n";
  return s;
}

}  // namespace curation::cli
