#pragma once
// Standard base64 (RFC 4648, with padding): file chunks in agent frames and
// image results.

#include <optional>
#include <string>
#include <string_view>

namespace sessiond {

std::string encodeBase64(std::string_view bytes);
// nullopt if `text` holds a character outside the alphabet or a dangling bit.
std::optional<std::string> decodeBase64(std::string_view text);

}  // namespace sessiond
