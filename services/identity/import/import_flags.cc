#include "services/identity/import/import_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(int64_t, import_max_rows, 1000000,
          "Most data rows a CSV import may have; more fails before anything "
          "is written (RESOURCE_EXHAUSTED).");
ABSL_FLAG(int64_t, import_max_bytes, 512LL * 1024 * 1024,
          "Largest CSV file an import accepts, in bytes (INVALID_ARGUMENT "
          "beyond).");

namespace guestlist::identity::import {

ImportConfig ImportConfigFromFlags() {
  ImportConfig config;
  config.max_rows = absl::GetFlag(FLAGS_import_max_rows);
  config.max_bytes = absl::GetFlag(FLAGS_import_max_bytes);
  return config;
}

}  // namespace guestlist::identity::import
