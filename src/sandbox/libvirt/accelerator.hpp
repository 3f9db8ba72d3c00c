#pragma once
// Which accelerator QEMU guests get: KVM when the host can really run KVM
// guests, else TCG (emulation: correct but slow, a boot takes ~15 s instead
// of ~1 s).

#include <string>
#include <utility>

namespace sessiond::libvirt {

// `setting` is LibvirtConfig::accelerator: "auto", "kvm" or "tcg". Returns
// {"kvm" or "tcg", why}. Throws std::runtime_error when "kvm" is forced and
// /dev/kvm cannot run guests.
std::pair<std::string, std::string> chooseAccelerator(const std::string& setting);

}  // namespace sessiond::libvirt
