#pragma once
// The files a sandbox VM is made of: the shared guest image it boots and the
// per-sandbox directory holding its disk layer, agent socket and console log.
// Blocking filesystem work: the backend runs it on its worker thread.

#include <filesystem>
#include <string>

namespace sessiond::libvirt {

struct GuestImage {
    std::filesystem::path directory;  // the version `current` pointed to
    std::filesystem::path kernel;
    std::filesystem::path initrd;     // empty: the image has none
    std::filesystem::path rootfs;     // qcow2, read-only, shared by every VM
    std::string cmdline;              // the kernel command line it asks for; empty: ours
};

// Resolves <imageDirectory>/current and finds its files as manifest.json
// names them (else vmlinuz, rootfs.qcow2, and initrd.img if it exists).
// Throws std::runtime_error saying what is missing.
GuestImage resolveGuestImage(const std::filesystem::path& imageDirectory);

// Creates `path` afresh (whatever an earlier run left there is removed) and
// removes it with everything inside when destroyed.
class SandboxDirectory {
public:
    explicit SandboxDirectory(std::filesystem::path path);
    ~SandboxDirectory();
    SandboxDirectory(const SandboxDirectory&) = delete;
    SandboxDirectory& operator=(const SandboxDirectory&) = delete;
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

// Throws std::runtime_error when `socket` is too long for a unix socket's address.
void checkSocketPath(const std::filesystem::path& socket);

// The end of a guest's console log, for error messages; "" if there is none.
std::string consoleTail(const std::filesystem::path& log);

// Counts the lines holding `needle` that the log gained after `offset`,
// which it moves past the last whole line read. A missing log counts 0; a
// log shorter than `offset` (rotated) is counted from its start.
std::uint64_t countNewLines(const std::filesystem::path& log, const std::string& needle, std::uint64_t& offset);

// Creates a qcow2 layer at `overlay` whose reads fall through to `base`.
// Throws std::runtime_error with qemu-img's message.
void createOverlay(const std::filesystem::path& base, const std::filesystem::path& overlay);

}  // namespace sessiond::libvirt
