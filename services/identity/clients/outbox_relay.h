// Delivery of identity's outbox topics (emails to notification, user and
// workspace syncs to membership) through common/outbox.h's relay.
#pragma once

#include "common/outbox.h"
#include "services/identity/clients/peers.h"
#include "services/identity/storage/repository.h"

namespace guestlist::identity {

// Registers a handler per identity topic on `relay`. A message the peer
// refuses as malformed (INVALID_ARGUMENT) can never succeed: it is logged
// and dropped instead of retried.
// `repository` answers whether an interrupted invite's user exists.
void RegisterOutboxHandlers(OutboxRelay* relay, MembershipClient* membership,
                            NotificationClient* notification,
                            Repository* repository);

}  // namespace guestlist::identity
