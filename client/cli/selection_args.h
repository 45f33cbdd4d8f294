// The words `curation select`, `evaluate` and `recommend` share: budgets, methods and units as
// users type them, so the three commands accept and print exactly the same spellings.
#pragma once

#include <optional>
#include <string>

#include "curation/v1/curation.pb.h"

namespace curation::cli {

// "10%" and "0.1" are shares of the pool; "5000" is a count. False for anything else.
bool ParseBudget(const std::string& text, v1::Budget* budget);

// "isa", "random", "facility_location" (or "facility-location"), "kcenter", "herding",
// "dedup"; nullopt for anything else.
std::optional<v1::SelectionMethod> ParseMethod(const std::string& text);
// The name ParseMethod reads back; "?" for UNSPECIFIED and unknown values.
const char* MethodName(v1::SelectionMethod method);
// For usage messages: the accepted method names.
inline constexpr char kMethodChoices[] =
    "isa, random, facility_location, kcenter, herding or dedup";

// "pair" or "example"; nullopt for anything else.
std::optional<v1::SelectionUnit> ParseUnit(const std::string& text);

}  // namespace curation::cli
