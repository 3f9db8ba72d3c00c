#pragma once
// The disk a custom container's VM reads its image from (docs/microvm.md,
// "Custom containers"): the image's unpacked root as an ext4 file system,
// made once per image beside that root and attached read-only to every VM
// of the image, whose guest lays a writable tmpfs over it.

#include <filesystem>

namespace sessiond::libvirt {

// `rootfs`/../disk.ext4, made first if missing (mke2fs -d, no journal,
// owners as in `rootfs`, so the root must be unpacked with the image's own
// ids). Blocking: seconds for a large image. Not thread-safe for one
// image: callers make disks on one thread. Throws std::runtime_error.
std::filesystem::path imageDisk(const std::filesystem::path& rootfs);

}  // namespace sessiond::libvirt
