// Stored selections by their public id, for every caller that reads one (GetSelection,
// ExportSelection, EvaluateSelection). New ones are named by CommitSelection (catalog.h).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "curation/storage/records.pb.h"
#include "curation/v1/curation.pb.h"
#include "server/catalog.h"
#include "store/store.h"

namespace curation::server {

// A stored selection of `tenant`'s by id (selection_ids.h). INVALID_ARGUMENT naming `field`
// if the id is empty or too long; NOT_FOUND, decided before anything is read, if it is
// malformed, forged or another tenant's, exactly as for a missing one.
absl::StatusOr<v1::Selection> LoadSelection(const store::Store& store, const Catalog& catalog,
                                            const std::string& tenant, const std::string& id,
                                            absl::string_view field = "id");

}  // namespace curation::server
