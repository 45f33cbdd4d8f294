// A small command-line parser for the `curation` subcommands: positional words plus
// "--name value", "--name=value" and bare "--flag" options, in any order.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace curation::cli {

class Args {
 public:
  // `flags` lists the options that take no value; every other --option takes one.
  Args(int argc, char** argv, int first, const std::set<std::string>& flags);

  const std::vector<std::string>& positional() const { return positional_; }
  // The last value given for the option.
  std::optional<std::string> Get(const std::string& name) const;
  // Every value given for a repeatable option, in order.
  std::vector<std::string> GetAll(const std::string& name) const;
  std::string GetOr(const std::string& name, const std::string& fallback) const;
  bool Has(const std::string& name) const { return options_.count(name) > 0; }
  // A problem found while parsing (an option missing its value), or "".
  const std::string& error() const { return error_; }
  // Options given that are not in `known`; the first one, or "".
  std::string Unknown(const std::set<std::string>& known) const;

 private:
  std::vector<std::string> positional_;
  std::map<std::string, std::string> options_;
  std::map<std::string, std::vector<std::string>> all_;
  std::string error_;
};

}  // namespace curation::cli
