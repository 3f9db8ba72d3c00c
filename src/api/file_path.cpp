#include "sessiond/api/file_path.hpp"

#include <string_view>

namespace sessiond::api {

namespace {
constexpr std::size_t kMaxPathBytes = 4096;
constexpr std::size_t kMaxSegmentBytes = 255;
}  // namespace

std::optional<std::string> dataRelativePath(const std::string& raw, std::string& error) {
    if (raw.size() > kMaxPathBytes) {
        error = "The file path is longer than " + std::to_string(kMaxPathBytes) + " bytes.";
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
