#include "server/stored_selections.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "server/limits.h"
#include "server/selection_ids.h"
#include "server/validation.h"

namespace curation::server {

absl::StatusOr<v1::Selection> LoadSelection(const store::Store& store, const Catalog& catalog,
                                            const std::string& tenant, const std::string& id,
                                            absl::string_view field) {
  if (auto e = CheckRequestId(field, id, Limits().max_id_bytes)) {
    return InvalidField(e->field, e->reason);
  }
  const auto not_found = [&] {
    return absl::NotFoundError(absl::StrCat("selection '", id, "' not found"));
  };
  // Ownership from the id alone, before anything is read: another tenant's id (or a forged
  // one) answers exactly like a missing one, after the same in-memory work.
  const std::optional<SelectionIdParts> parts = ParseSelectionId(id);
  if (!parts) return not_found();
  if (catalog.FindByInternalId(tenant, parts->dataset_id) == nullptr) return not_found();
  auto selection = store.GetSelection(parts->dataset_id, parts->seq);
  if (absl::IsNotFound(selection.status())) return not_found();
  if (!selection.ok()) return selection.status();
  // An untagged id names only a selection stored under exactly that id (made before tags);
  // the untagged form of a newer selection's id is not an alias of it.
  if (selection->id() != id) return not_found();
  return selection;
}

}  // namespace curation::server
