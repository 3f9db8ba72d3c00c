#pragma once
#include <string_view>

namespace sessiond {

// Azure's session identifier rule: 4 to 128 characters, each a letter, a digit
// or one of | - & ^ % $ # ( ) { } [ ] ; < > _ (all known clients send UUIDs).
bool isValidSessionIdentifier(std::string_view identifier);

}  // namespace sessiond
