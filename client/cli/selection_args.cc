#include "client/cli/selection_args.h"

#include <utility>

namespace curation::cli {
namespace {

constexpr std::pair<const char*, v1::SelectionMethod> kMethods[] = {
    {"isa", v1::SELECTION_METHOD_ISA},
    {"random", v1::SELECTION_METHOD_RANDOM},
    {"facility_location", v1::SELECTION_METHOD_FACILITY_LOCATION},
    {"kcenter", v1::SELECTION_METHOD_KCENTER},
    {"herding", v1::SELECTION_METHOD_HERDING},
    {"dedup", v1::SELECTION_METHOD_DEDUP},
};

}  // namespace

bool ParseBudget(const std::string& text, v1::Budget* budget) {
  try {
    size_t used = 0;
    if (!text.empty() && text.back() == '%') {
      const double percent = std::stod(text.substr(0, text.size() - 1), &used);
      if (used != text.size() - 1) return false;
      budget->set_fraction(percent / 100.0);
      return true;
    }
    if (text.find_first_of(".eE") != std::string::npos) {
      budget->set_fraction(std::stod(text, &used));
      return used == text.size();
    }
    budget->set_count(std::stoll(text, &used));
    return used == text.size();
  } catch (...) {
    return false;
  }
}

std::optional<v1::SelectionMethod> ParseMethod(const std::string& text) {
  std::string name = text;
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  for (const auto& [known, method] : kMethods) {
    if (name == known) return method;
  }
  return std::nullopt;
}

const char* MethodName(v1::SelectionMethod method) {
  for (const auto& [name, m] : kMethods) {
    if (m == method) return name;
  }
  return "?";
}

std::optional<v1::SelectionUnit> ParseUnit(const std::string& text) {
  if (text == "pair") return v1::SELECTION_UNIT_PAIR;
  if (text == "example") return v1::SELECTION_UNIT_EXAMPLE;
  return std::nullopt;
}

}  // namespace curation::cli
