// The OpenAPI 3.0 document of the HTTP API, generated from the same
// descriptors and routes the gateway serves (GET /v1/openapi.json).
#pragma once

#include <string>

#include "services/gateway/domain/route_table.h"

namespace guestlist::gateway {

// Returns the document as JSON: one operation per route with its path and
// query parameters, request body and response schemas; components.schemas
// holds every message reachable from them (proto3 JSON names and types).
std::string BuildOpenApi(const RouteTable& routes, const std::string& title);

}  // namespace guestlist::gateway
