#pragma once
// The file virDomainSave writes with the QEMU driver: a header, the domain
// XML and a cookie that libvirt restores the domain from, then QEMU's
// migration stream (the guest's memory and device state).
//
// libvirt refuses to restore a saved domain under another name or UUID
// (virDomainRestoreFlags' dxml may change host paths only), so two VMs
// cannot be restored from one file at once. A copy whose header holds
// another domain XML, followed by the same stream, can: that is what
// writeSavedStateCopy makes. The layout is libvirt's qemu_saveimage.h
// (version 2, unchanged since libvirt 0.9.x); reading checks every field it
// relies on and throws std::runtime_error naming what it found.

#include <cstdint>
#include <filesystem>
#include <string>

namespace sessiond::libvirt {

struct SavedState {
    std::string xml;     // the saved domain, as libvirt wrote it
    std::string cookie;  // libvirt's (the guest CPU it saw); may be empty
    std::uint32_t wasRunning = 0;
    std::uint64_t streamOffset = 0;  // where QEMU's migration stream starts
};

SavedState readSavedState(const std::filesystem::path& file);

// Writes `to` (mode 0600): `saved`'s header with `xml` as the domain XML,
// then the stream of `from`, which `saved` was read from.
void writeSavedStateCopy(const std::filesystem::path& from, const SavedState& saved, const std::string& xml,
                         const std::filesystem::path& to);

}  // namespace sessiond::libvirt
