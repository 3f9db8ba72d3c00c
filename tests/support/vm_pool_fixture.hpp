#pragma once
// A daemon (HTTP server, pool manager) with the real libvirt backend and one
// VM pool "vm", for the microVM end-to-end tests. Skips the test when
// libvirtd or the guest image is missing; after the test, checks that no
// domain and no file of the daemon's is left.

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "sessiond/sandbox/libvirt/libvirt_backend.hpp"
#include "http_client.hpp"
#include "server_fixture.hpp"
#include "vm_files.hpp"

namespace sessiond::testing {

class VmPoolTest : public ::testing::Test {
protected:
    // `tag` names the daemon instance: "sessiond-<tag>-<pid>".
    void prepare(const std::string& tag) {
        if (std::string missing = missingVmPrerequisite(); !missing.empty()) GTEST_SKIP() << missing;
        std::string pattern = "/tmp/sessiond-" + tag + "-XXXXXX";
        runtime_ = ::mkdtemp(pattern.data());
        std::filesystem::permissions(runtime_, std::filesystem::perms(0755));
        config.cgroupName = "sessiond-" + tag + "-" + std::to_string(getpid());
        config.libvirt.imageDirectory = guestImageDirectory();
        config.libvirt.runtimeDirectory = runtime_;
        PoolConfig pool;
        pool.name = "vm";
        pool.backend = "libvirt";
        pool.readySessionInstances = 1;
        pool.maxConcurrentSessions = 4;
        pool.cooldownPeriod = std::chrono::seconds(300);
        pool.sandboxStartTimeout = std::chrono::seconds(180);
        pool.resources.cpus = 1;
        pool.resources.memoryBytes = 768ull << 20;
        config.pools = {pool};
    }

    void TearDown() override {
        if (runtime_.empty()) return;  // skipped
        server.stop();
        EXPECT_TRUE(domainsNamed(config.cgroupName).empty()) << "a domain outlived the daemon";
        EXPECT_TRUE(filesUnder(runtime_).empty()) << "files outlived the daemon in " << runtime_;
        std::error_code ec;
        std::filesystem::remove_all(runtime_, ec);
    }

    void start() {
        server.start(config, [this](boost::asio::io_context& io) {
            auto made = std::make_unique<LibvirtBackend>(io, config);
            made->cleanupLeftovers();
            backend = made.get();
            return made;
        });
    }

    bool waitReady(std::size_t n, std::chrono::seconds limit = std::chrono::seconds(300)) {
        return server.waitFor([&] { return server.counts("vm").unallocated >= n; }, limit);
    }

    // The execution's Azure properties.
    nlohmann::json run(HttpClient& client, const std::string& id, const std::string& code) {
        auto r = client.execute("vm", id, code);
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json()["properties"];
    }

    Config config;
    std::string runtime_;
    LibvirtBackend* backend = nullptr;  // the server's
    ServerFixture server;
};

}  // namespace sessiond::testing
