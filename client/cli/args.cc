#include "client/cli/args.h"

namespace curation::cli {

Args::Args(int argc, char** argv, int first, const std::set<std::string>& flags) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.size() > 2 && arg.rfind("--", 0) == 0) {
      std::string name = arg.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        options_[name.substr(0, eq)] = name.substr(eq + 1);
        all_[name.substr(0, eq)].push_back(name.substr(eq + 1));
      } else if (flags.count(name)) {
        options_[name] = "true";
      } else if (i + 1 < argc) {
        options_[name] = argv[++i];
        all_[name].push_back(options_[name]);
      } else {
        error_ = "option --" + name + " needs a value";
      }
    } else if (arg == "-o" && i + 1 < argc) {
      options_["output"] = argv[++i];
    } else {
      positional_.push_back(arg);
    }
  }
}

std::optional<std::string> Args::Get(const std::string& name) const {
  auto it = options_.find(name);
  if (it == options_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> Args::GetAll(const std::string& name) const {
  auto it = all_.find(name);
  return it == all_.end() ? std::vector<std::string>{} : it->second;
}

std::string Args::GetOr(const std::string& name, const std::string& fallback) const {
  return Get(name).value_or(fallback);
}

std::string Args::Unknown(const std::set<std::string>& known) const {
  for (const auto& [name, value] : options_) {
    if (!known.count(name)) return name;
  }
  return "";
}

}  // namespace curation::cli
