#include "vm_files.hpp"

#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "sessiond/host_tool.hpp"

namespace sessiond::libvirt {

namespace fs = std::filesystem;

namespace {

// QEMU runs as an unprivileged user (libvirt-qemu on Debian) and opens the
// disk layer by path: it may pass through our directories, not list them.
constexpr fs::perms kDirectoryMode = fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec;
constexpr std::size_t kConsoleTailBytes = 2048;

std::string slurp(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace

GuestImage resolveGuestImage(const fs::path& imageDirectory) {
    // Resolved once per VM, so a VM keeps the image version it started with
    // while `current` moves on to a new build.
    std::error_code ec;
    fs::path directory = fs::canonical(imageDirectory / "current", ec);
    if (ec) throw std::runtime_error("no guest image at " + (imageDirectory / "current").string() + ": " + ec.message());

    GuestImage image;
    image.directory = directory;
    image.kernel = directory / "vmlinuz";
    image.rootfs = directory / "rootfs.qcow2";
    // manifest.json is written by src/guest/build-image.sh.
    fs::path manifestPath = directory / "manifest.json";
    if (fs::exists(manifestPath)) {
        nlohmann::json manifest = nlohmann::json::parse(slurp(manifestPath), nullptr, false);
        if (manifest.is_discarded() || !manifest.is_object())
            throw std::runtime_error(manifestPath.string() + " is not a JSON object");
        const nlohmann::json files = manifest.value("files", nlohmann::json::object());
        auto file = [&](const char* key, const char* fallback) {
            auto it = files.find(key);
            return directory / (it != files.end() && it->is_string() ? it->get<std::string>() : fallback);
        };
        image.kernel = file("kernel", "vmlinuz");
        image.rootfs = file("rootDisk", "rootfs.qcow2");
        if (manifest.value("initrdNeeded", false)) image.initrd = file("initrd", "initrd.img");
        auto cmdline = manifest.find("kernelCommandLine");
        if (cmdline != manifest.end() && cmdline->is_string()) image.cmdline = cmdline->get<std::string>();
    }
    for (const fs::path* file : {&image.kernel, &image.rootfs, &image.initrd})
        if (!file->empty() && !fs::is_regular_file(*file))
            throw std::runtime_error("the guest image in " + directory.string() + " has no " + file->filename().string());
    return image;
}

SandboxDirectory::SandboxDirectory(fs::path path) : path_(std::move(path)) {
    fs::remove_all(path_);
    fs::create_directories(path_.parent_path());
    fs::permissions(path_.parent_path(), kDirectoryMode);
    fs::create_directory(path_);
    fs::permissions(path_, kDirectoryMode);
}

SandboxDirectory::~SandboxDirectory() {
    std::error_code ec;
    fs::remove_all(path_, ec);
    if (ec) spdlog::warn("cannot remove {}: {}", path_.string(), ec.message());
}

void checkSocketPath(const fs::path& socket) {
    if (socket.string().size() >= sizeof(sockaddr_un::sun_path))
        throw std::runtime_error("the agent socket path " + socket.string() +
                                 " is too long for a unix socket; choose a shorter libvirt.runtimeDirectory");
}

std::string consoleTail(const fs::path& log) {
    std::ifstream in(log, std::ios::binary | std::ios::ate);
    if (!in) return "";
    auto size = static_cast<std::size_t>(in.tellg());
    std::size_t start = size > kConsoleTailBytes ? size - kConsoleTailBytes : 0;
    in.seekg(static_cast<std::streamoff>(start));
    std::string tail(size - start, '\0');
    in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
    return tail;
}

std::uint64_t countNewLines(const fs::path& log, const std::string& needle, std::uint64_t& offset) {
    std::ifstream in(log, std::ios::binary);
    if (!in) return 0;
    // virtlogd rotates a log at its max_size: a log shorter than the offset
    // is a new one (lines between the offset and the rotation are missed).
    in.seekg(0, std::ios::end);
    if (static_cast<std::uint64_t>(in.tellg()) < offset) offset = 0;
    in.seekg(static_cast<std::streamoff>(offset));
    std::uint64_t count = 0;
    std::string line;
    while (std::getline(in, line)) {
        if (in.eof()) break;  // a line still being written: read it whole next time
        offset += line.size() + 1;
        if (line.find(needle) != std::string::npos) ++count;
    }
    return count;
}

void createOverlay(const fs::path& base, const fs::path& overlay) {
    // qemu-img rather than libvirt's storage API: it needs no storage pool
    // defined in libvirt for our directory, and behaves the same with every
    // libvirt driver, including the test driver.
    try {
        runHostTool({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base.string(), overlay.string()});
    } catch (const std::runtime_error& e) {
        throw std::runtime_error("qemu-img could not create the disk layer " + overlay.string() + ": " + e.what());
    }
}

}  // namespace sessiond::libvirt
