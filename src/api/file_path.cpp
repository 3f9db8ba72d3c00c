#include "sessiond/api/file_path.hpp"

#include <cstdint>
#include <string_view>

namespace sessiond::api {

namespace {
constexpr std::size_t kMaxPathBytes = 4096;
constexpr std::size_t kMaxSegmentBytes = 255;

// Names reach the agent as JSON strings, where invalid UTF-8 becomes U+FFFD:
// two different names would land on one file.
bool isUtf8(std::string_view text) {
    for (std::size_t i = 0; i < text.size();) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        std::size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
        if (length == 0 || i + length > text.size()) return false;
        std::uint32_t code = length == 1 ? c : c & (0x7f >> length);
        for (std::size_t k = 1; k < length; ++k) {
            const unsigned char next = static_cast<unsigned char>(text[i + k]);
            if ((next >> 6) != 0x2) return false;
            code = (code << 6) | (next & 0x3f);
        }
        static constexpr std::uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
        if (code < kSmallest[length] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
        i += length;
    }
    return true;
}
}  // namespace

std::optional<std::string> dataRelativePath(const std::string& raw, std::string& error) {
    if (raw.size() > kMaxPathBytes) {
        error = "The file path is longer than " + std::to_string(kMaxPathBytes) + " bytes.";
        return std::nullopt;
    }
    if (!isUtf8(raw)) {
        error = "The path is not valid UTF-8.";
        return std::nullopt;
    }
    std::string_view rest = raw;
    if (!rest.empty() && rest.front() == '/') {
        const std::string_view root = kDataDirectory;
        if (rest.substr(0, root.size()) != root || (rest.size() > root.size() && rest[root.size()] != '/')) {
            // "/" alone names the data directory, as the 2024-10-02 examples use it.
            if (rest.find_first_not_of('/') != std::string_view::npos) {
                error = "The path '" + raw + "' is outside " + kDataDirectory + "; use a path relative to it.";
                return std::nullopt;
            }
            rest = {};
        } else {
            rest.remove_prefix(root.size());
        }
    }
    std::string out;
    std::size_t start = 0;
    while (start <= rest.size()) {
        std::size_t end = rest.find('/', start);
        if (end == std::string_view::npos) end = rest.size();
        std::string_view segment = rest.substr(start, end - start);
        start = end + 1;
        if (segment.empty()) continue;
        if (segment == "." || segment == "..") {
            error = "The path '" + raw + "' has a '" + std::string(segment) + "' segment; paths must stay inside " +
                    kDataDirectory + ".";
            return std::nullopt;
        }
        if (segment.size() > kMaxSegmentBytes) {
            error = "A name in the path '" + raw + "' is longer than 255 bytes.";
            return std::nullopt;
        }
        for (unsigned char c : segment) {
            if (c < 0x20 || c == 0x7f) {
                error = "The path has a control character.";
                return std::nullopt;
            }
        }
        if (!out.empty()) out += '/';
        out += segment;
    }
    return out;
}

std::optional<std::string> sessionFilePath(const std::string& directory, const std::string& name, std::string& error) {
    auto dir = dataRelativePath(directory, error);
    if (!dir) return std::nullopt;
    // A name that is itself absolute (under the data directory) ignores `path`.
    auto file = dataRelativePath(name, error);
    if (!file) return std::nullopt;
    std::string joined = (!name.empty() && name.front() == '/') || dir->empty() ? *file : *dir + "/" + *file;
    if (file->empty()) {
        error = "A file name is required.";
        return std::nullopt;
    }
    return joined;
}

}  // namespace sessiond::api
