#pragma once
// Standard base64 (RFC 4648, with padding): file chunks in agent frames and
// image results.

#include <optional>
#include <string>
#include <string_view>

namespace sessiond {

std::string encodeBase64(std::string_view bytes);
// nullopt unless `text` is padded base64: whole groups of four characters
// from the alphabet, "=" only as the last one or two.
std::optional<std::string> decodeBase64(std::string_view text);

}  // namespace sessiond
