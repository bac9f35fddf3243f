// Flags of the bulk import (also read from GUESTLIST_IDENTITY_IMPORT_MAX_ROWS
// / GUESTLIST_IDENTITY_IMPORT_MAX_BYTES by ParseFlagsAndEnvironment).
#pragma once

#include "services/identity/import/import_service.h"

namespace guestlist::identity::import {

// ImportConfig with the limits taken from --import_max_rows and
// --import_max_bytes (public_url is left to the caller).
ImportConfig ImportConfigFromFlags();

}  // namespace guestlist::identity::import
