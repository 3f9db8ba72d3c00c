#pragma once
// Which accelerator QEMU guests get: KVM when the host can really run KVM
// guests, else TCG (emulation: correct but slow, a boot takes ~15 s instead
// of ~1 s).

#include <filesystem>
#include <string>
#include <utility>

namespace sessiond::libvirt {

// `setting` is LibvirtConfig::accelerator: "auto", "kvm" or "tcg". Returns
// {"kvm" or "tcg", why}. Throws std::runtime_error when "kvm" is forced and
// /dev/kvm cannot run guests. With `guestKernel` (the image's, when there is
// one), KVM must also get that kernel to its first console line.
std::pair<std::string, std::string> chooseAccelerator(const std::string& setting,
                                                      const std::filesystem::path& guestKernel = {});

}  // namespace sessiond::libvirt
