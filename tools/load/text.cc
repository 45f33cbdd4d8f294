#include "tools/load/text.h"

#include <iterator>

#include "absl/strings/str_cat.h"

namespace curation::load {
namespace {

// Common English words; sentences drawn from them embed to spread-out vectors, as real text
// does, rather than to one point as a repeated filler would.
constexpr const char* kWords[] = {
    "the",      "model",     "answer",   "question",  "data",      "because",   "should",
    "example",  "training",  "people",   "water",     "energy",    "system",    "problem",
    "simple",   "recipe",    "history",  "city",      "garden",    "music",     "learn",
    "write",    "explain",   "compare",  "before",    "after",     "during",    "without",
    "between",  "through",   "quickly",  "carefully", "important", "different", "similar",
    "small",    "large",     "first",    "second",    "finally",   "however",   "therefore",
    "instead",  "often",     "rarely",   "usually",   "computer",  "program",   "function",
    "memory",   "network",   "server",   "client",    "request",   "weather",   "travel",
    "budget",   "health",    "exercise", "sleep",     "coffee",    "morning",   "evening",
    "friend",   "family",    "school",   "teacher",   "student",   "book",      "story",
    "language", "grammar",   "sentence", "word",      "number",    "prime",     "equation",
    "physics",  "chemistry", "biology",  "planet",    "ocean",     "mountain",  "river",
    "forest",   "animal",    "dog",      "cat",       "bird",      "tree",      "flower",
    "market",   "price",     "money",    "bank",      "loan",      "interest",  "company",
    "product",  "customer",  "service",  "quality",   "safety",    "risk",      "law",
    "policy",   "vote",      "country",  "culture",   "food",      "bread",     "cheese",
    "apple",    "kitchen",   "oven",     "minutes",   "hours",     "days",      "years",
    "try",
};

constexpr const char* kOpenings[] = {"How do I",
                                     "Can you explain why",
                                     "What is the best way to",
                                     "Why does",
                                     "Could you help me understand how to",
                                     "Is it true that"};

}  // namespace

std::string PairGenerator::Words(int min_words, int max_words) {
  std::uniform_int_distribution<int> count(min_words, max_words);
  std::uniform_int_distribution<size_t> pick(0, std::size(kWords) - 1);
  std::string out;
  const int n = count(rng_);
  for (int i = 0; i < n; ++i) {
    if (i > 0) out += (i % 11 == 10) ? ". " : " ";
    out += kWords[pick(rng_)];
  }
  return out;
}

v1::Example PairGenerator::Next(const std::string& id, int64_t serial) {
  std::uniform_int_distribution<size_t> opening(0, std::size(kOpenings) - 1);
  v1::Example example;
  example.set_id(id);
  v1::PreferencePair* pair = example.mutable_pair();
  pair->set_prompt(absl::StrCat("\n\nHuman: ", kOpenings[opening(rng_)], " ", Words(6, 30),
                                " (case ", serial, ")?\n\nAssistant:"));
  pair->set_chosen(absl::StrCat("Sure. ", Words(40, 220), ". In short: ", Words(5, 15), "."));
  pair->set_rejected(absl::StrCat(Words(5, 60), "."));
  (*example.mutable_metadata())["source"] = "curation-load";
  return example;
}

}  // namespace curation::load
