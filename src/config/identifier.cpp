#include "sessiond/identifier.hpp"

#include <string_view>

namespace sessiond {

bool isValidSessionIdentifier(std::string_view identifier) {
    constexpr std::string_view kPunctuation = "|-&^%$#(){}[];<>_";
    if (identifier.size() < 4 || identifier.size() > 128) return false;
    for (char c : identifier) {
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && kPunctuation.find(c) == std::string_view::npos) return false;
    }
    return true;
}

}  // namespace sessiond
