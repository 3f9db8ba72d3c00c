#include "image_disk.hpp"

#include <unistd.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>

#include <spdlog/spdlog.h>

#include "sessiond/host_tool.hpp"

namespace sessiond::libvirt {

namespace fs = std::filesystem;

namespace {

constexpr std::uintmax_t kBlock = 4096;

struct Footprint {
    std::uintmax_t bytes = 0;   // file data, in whole blocks
    std::uintmax_t inodes = 0;  // one per directory entry
};

Footprint footprintOf(const fs::path& root) {
    Footprint total;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::none, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        ++total.inodes;
        const auto status = it->symlink_status(ec);
        if (!ec && fs::is_regular_file(status)) total.bytes += (it->file_size(ec) + kBlock - 1) / kBlock * kBlock;
        if (!ec && fs::is_directory(status)) total.bytes += kBlock;
    }
    if (ec) throw std::runtime_error("cannot read the image's root " + root.string() + ": " + ec.message());
    return total;
}

}  // namespace

fs::path imageDisk(const fs::path& rootfs) {
    const fs::path disk = rootfs.parent_path() / "disk.ext4";
    if (fs::exists(disk)) return disk;
    const Footprint footprint = footprintOf(rootfs);
    // Room for ext4's own metadata (inode tables, bitmaps, directories'
    // blocks) over the files' data; the file is sparse, so slack is free.
    const std::uintmax_t inodes = footprint.inodes + footprint.inodes / 4 + 1024;
    const std::uintmax_t bytes = footprint.bytes + footprint.bytes / 5 + inodes * 256 + (16u << 20);
    const std::uintmax_t mib = (bytes + (1u << 20) - 1) >> 20;
    const fs::path partial = disk.string() + ".partial-" + std::to_string(::getpid());
    std::error_code ignored;
    fs::remove(partial, ignored);
    try {
        runHostTool({"mke2fs", "-q", "-F", "-t", "ext4", "-b", std::to_string(kBlock), "-O", "^has_journal", "-N",
                     std::to_string(inodes), "-L", "sessiond-image", "-d", rootfs.string(), partial.string(),
                     std::to_string(mib) + "M"});
        // QEMU runs as another user: the disk is read by all, written by none.
        fs::permissions(partial, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
        fs::rename(partial, disk);
    } catch (const std::exception& e) {
        fs::remove(partial, ignored);
        throw std::runtime_error(std::string("cannot make the image's disk: ") + e.what());
    }
    spdlog::info("made the VM disk {} ({} MiB, {} inodes) of the image root {}", disk.string(), mib, inodes,
                 rootfs.string());
    return disk;
}

}  // namespace sessiond::libvirt
