#pragma once
// The Azure Container Apps dynamic-sessions routes (docs/api.md), mapped onto
// the pool manager. HTTP mechanics live in http/; this layer only translates
// Azure's request and response bodies and error codes.

#include "sessiond/config.hpp"
#include "sessiond/http/router.hpp"
#include "sessiond/pool/pool.hpp"

namespace sessiond::api {

void addRoutes(http::Router& router, PoolManager& pools, const HttpConfig& http);

}  // namespace sessiond::api
