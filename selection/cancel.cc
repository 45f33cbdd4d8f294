#include "selection/cancel.h"

#include <faiss/impl/AuxIndexStructures.h>

#include <memory>
#include <mutex>

namespace curation::selection::internal {
namespace {

thread_local Cancel* current = nullptr;

// Asks the Cancel of the calling thread's innermost scope, if any.
struct ThreadInterrupt final : faiss::InterruptCallback {
  bool want_interrupt() override { return current != nullptr && current->Stop(); }
};

void InstallOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (!faiss::InterruptCallback::instance) {
      faiss::InterruptCallback::instance = std::make_unique<ThreadInterrupt>();
    }
  });
}

}  // namespace

FaissInterruptScope::FaissInterruptScope(Cancel* cancel) : previous_(current) {
  InstallOnce();
  current = cancel;
}

FaissInterruptScope::~FaissInterruptScope() { current = previous_; }

}  // namespace curation::selection::internal
