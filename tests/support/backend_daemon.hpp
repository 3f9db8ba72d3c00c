#pragma once
// An in-process daemon serving `config`'s pools on the namespace backend or
// on microVMs, for end-to-end suites that run the same tests on both. Its
// end checks that nothing of its sessions is left: processes, cgroups, VM
// files.

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "sessiond/sandbox/libvirt/libvirt_backend.hpp"
#include "sessiond/sandbox/namespace/namespace_backend.hpp"
#include "support/leaks.hpp"
#include "support/server_fixture.hpp"
#include "support/vm_files.hpp"

namespace sessiond::testing {

struct BackendDaemon {
    Config config;
    ServerFixture server;
    std::string runtimeDirectory;
    bool vm = false;

    explicit BackendDaemon(bool useVm) : vm(useVm) {}
    BackendDaemon(const BackendDaemon&) = delete;
    BackendDaemon& operator=(const BackendDaemon&) = delete;

    // Serves config; VMs get a runtime directory of their own under /tmp.
    void start() {
        if (vm) {
            std::string dir = "/tmp/" + config.cgroupName + "-vm-XXXXXX";
            runtimeDirectory = ::mkdtemp(dir.data());
            std::filesystem::permissions(runtimeDirectory, std::filesystem::perms(0755));
            config.libvirt.imageDirectory = guestImageDirectory();
            config.libvirt.runtimeDirectory = runtimeDirectory;
            server.start(config, [this](boost::asio::io_context& io) {
                auto backend = std::make_unique<LibvirtBackend>(io, config);
                backend->cleanupLeftovers();
                return backend;
            });
        } else {
            server.startNamespace(config);
        }
    }

    ~BackendDaemon() {
        server.stop();
        // Nothing a session started outlives the daemon.
        EXPECT_TRUE(processesMatching("/" + config.cgroupName + "/").empty());
        EXPECT_TRUE(cgroupsNamed(config.cgroupName).empty());
        if (vm) {
            EXPECT_TRUE(filesUnder(runtimeDirectory).empty());
            std::filesystem::remove_all(runtimeDirectory);
        }
    }
};

// Typed test suites over both backends: TYPED_TEST_SUITE(Suite, Backends, BackendNames)
// names their tests Suite/Namespace.* and Suite/MicroVm.*.
struct NamespaceKind {
    static constexpr bool vm = false;
    static constexpr const char* name = "namespace";
};
struct MicroVmKind {
    static constexpr bool vm = true;
    static constexpr const char* name = "microVM";
};
using Backends = ::testing::Types<NamespaceKind, MicroVmKind>;
struct BackendNames {
    template <typename T>
    static std::string GetName(int) {
        return T::vm ? "MicroVm" : "Namespace";
    }
};

}  // namespace sessiond::testing
