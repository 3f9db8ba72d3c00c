#pragma once
// Times as the API and the audit log write them.

#include <cstdint>
#include <string>

namespace sessiond::http {

// Milliseconds since the epoch as ISO 8601 UTC ("2026-11-22T10:15:30.123Z"),
// and as an HTTP date ("Sun, 22 Nov 2026 10:15:30 GMT").
std::string isoTime(std::int64_t epochMs);
std::string httpDate(std::int64_t epochMs);

}  // namespace sessiond::http
