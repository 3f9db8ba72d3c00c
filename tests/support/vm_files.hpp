#pragma once
// What the microVM tests share: where the guest image is, and what a VM pool
// leaves in its runtime directory.

#include <libvirt/libvirt.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "walk.hpp"

namespace sessiond::testing {

// scripts/test.sh builds the guest image here; SESSIOND_IMAGE_DIR overrides it.
inline std::string guestImageDirectory() {
    const char* dir = std::getenv("SESSIOND_IMAGE_DIR");
    return dir ? dir : "/var/lib/sessiond/images";
}

// Why VM tests cannot run here, or "".
inline std::string missingVmPrerequisite() {
    const std::string image = guestImageDirectory() + "/current/rootfs.qcow2";
    if (!std::filesystem::exists(image)) return "no guest image at " + image + "; scripts/test.sh builds it";
    virConnectPtr connection = virConnectOpen("qemu:///system");
    if (!connection) return "libvirtd is not reachable; scripts/start-libvirt.sh starts it";
    virConnectClose(connection);
    return "";
}

// Every file (not directory) below `root`.
inline std::vector<std::filesystem::path> filesUnder(const std::string& root) {
    std::vector<std::filesystem::path> files;
    walkTree(root, [&](const std::filesystem::directory_entry& entry) {
        std::error_code ec;
        if (!entry.is_directory(ec)) files.push_back(entry.path());
    });
    return files;
}

// Calls `visit` with each domain whose name carries `instance`; false when
// libvirt cannot be reached.
template <typename Visit>
bool visitDomainsNamed(const std::string& instance, Visit visit) {
    virConnectPtr conn = virConnectOpen("qemu:///system");
    if (!conn) return false;
    virDomainPtr* domains = nullptr;
    int n = virConnectListAllDomains(conn, &domains, 0);
    for (int i = 0; i < n; ++i) {
        if (std::string(virDomainGetName(domains[i])).find(instance) != std::string::npos) visit(domains[i]);
        virDomainFree(domains[i]);
    }
    free(domains);
    virConnectClose(conn);
    return true;
}

// Domains whose names carry `instance`, as libvirt sees them.
inline std::vector<std::string> domainsNamed(const std::string& instance) {
    std::vector<std::string> names;
    if (!visitDomainsNamed(instance, [&](virDomainPtr domain) { names.push_back(virDomainGetName(domain)); }))
        return {"(cannot connect to libvirt)"};
    return names;
}

// The UUIDs of the domains whose names carry `instance`.
inline std::vector<std::string> domainUuidsNamed(const std::string& instance) {
    std::vector<std::string> uuids;
    visitDomainsNamed(instance, [&](virDomainPtr domain) {
        char uuid[VIR_UUID_STRING_BUFLEN] = {};
        if (virDomainGetUUIDString(domain, uuid) == 0) uuids.push_back(uuid);
    });
    return uuids;
}

}  // namespace sessiond::testing
