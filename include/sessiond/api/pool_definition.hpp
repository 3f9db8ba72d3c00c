#pragma once
// The body of PUT /pools/{pool}: a pool's definition as sent by a client.

#include <string>

#include "sessiond/config.hpp"

namespace sessiond::api {

// The definition a PUT body gives for the pool `name`: Azure's resource shape
// ({"properties": {...}}) or the bare properties, as the configuration file
// has them. Throws ConfigError naming the field.
PoolConfig parsePoolBody(const std::string& name, const std::string& body);

}  // namespace sessiond::api
