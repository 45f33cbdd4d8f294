#include "server/stored_selections.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace curation::server {
namespace {

bool ParseSelectionId(const std::string& id, uint64_t* dataset_id, int64_t* seq) {
  std::vector<absl::string_view> parts = absl::StrSplit(id, '-');
  return parts.size() == 3 && parts[0] == "sel" && absl::SimpleAtoi(parts[1], dataset_id) &&
         absl::SimpleAtoi(parts[2], seq) && *seq >= 0;
}

}  // namespace

std::string NewSelectionId(const storage::DatasetRecord& dataset, int64_t seq) {
  return absl::StrCat("sel-", dataset.internal_id(), "-", seq);
}

absl::StatusOr<v1::Selection> LoadSelection(const store::Store& store, const Catalog& catalog,
                                            const std::string& tenant, const std::string& id,
                                            absl::string_view field) {
  if (id.empty()) return InvalidField(field, "required");
  auto not_found =
      absl::NotFoundError(absl::StrCat("selection '", id.substr(0, 256), "' not found"));
  uint64_t dataset_id = 0;
  int64_t seq = 0;
  if (!ParseSelectionId(id, &dataset_id, &seq)) return not_found;
  auto selection = store.GetSelection(dataset_id, seq);
  if (absl::IsNotFound(selection.status())) return not_found;
  if (!selection.ok()) return selection.status();
  // Another tenant's selection does not exist for this caller.
  auto owner = catalog.Find(tenant, selection->dataset());
  if (owner == nullptr || owner->Snapshot().internal_id() != dataset_id) return not_found;
  return selection;
}

}  // namespace curation::server
