#pragma once
// What the microVM tests share: where the guest image is, and what a VM pool
// leaves in its runtime directory.

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace sessiond::testing {

// scripts/test.sh builds the guest image here; SESSIOND_IMAGE_DIR overrides it.
inline std::string guestImageDirectory() {
    const char* dir = std::getenv("SESSIOND_IMAGE_DIR");
    return dir ? dir : "/var/lib/sessiond/images";
}

// Every file (not directory) below `root`.
inline std::vector<std::filesystem::path> filesUnder(const std::string& root) {
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root, ec))
        if (!entry.is_directory(ec)) files.push_back(entry.path());
    return files;
}

}  // namespace sessiond::testing
