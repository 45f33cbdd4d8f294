// Small standalone SVG charts for the command line: a file a browser opens as it is, with no
// scripts, fonts or styles from elsewhere.
#pragma once

#include <string>
#include <vector>

namespace curation::cli {

// A histogram of `values` in `bins` equal-width bins between their smallest and largest
// finite value (one bin if they are all equal). Non-finite values are left out and counted in
// the subtitle. The result starts with "<svg" and holds exactly one <rect class="bar"> per
// bin, empty bins included (height 0). Requires bins >= 1; no values gives an empty chart.
std::string HistogramSvg(const std::string& title, const std::vector<double>& values, int bins);

// Text made safe for SVG character data and attribute values.
std::string SvgEscape(const std::string& text);
// A coordinate as SVG wants it: fixed, two decimals.
std::string SvgNumber(double v);
// The opening <svg> element of a width x height document on a white background, with the
// title centred on top and, if not empty, a grey subtitle under it (down to y = 40).
std::string SvgHeader(double width, double height, const std::string& title,
                      const std::string& subtitle = "");

}  // namespace curation::cli
