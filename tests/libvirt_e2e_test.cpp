// Real microVMs, nothing faked: the HTTP server and pool manager on the
// libvirt backend, booting the guest image through libvirtd (under TCG where
// KVM cannot run guests) and running Python in it through the agent.
//
// Needs libvirtd running and a built guest image: scripts/test.sh provides
// both (SESSIOND_IMAGE_DIR overrides the image directory).

#include <libvirt/libvirt.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <future>

#include <gtest/gtest.h>

#include "sessiond/sandbox/libvirt/libvirt_backend.hpp"
#include "support/http_client.hpp"
#include "support/server_fixture.hpp"
#include "support/vm_files.hpp"
#include "support/walk.hpp"
#include "support/vm_pool_fixture.hpp"

using namespace sessiond;
using sessiond::testing::domainsNamed;
using sessiond::testing::HttpClient;
using namespace std::chrono_literals;

namespace {

// Host pid of the QEMU process running the named domain.
pid_t qemuPidOf(const std::string& domainPrefix) {
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
        std::string name = entry.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::ifstream in(entry.path() / "cmdline", std::ios::binary);
        std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (cmdline.rfind("/usr/bin/qemu-system", 0) == 0 && cmdline.find("guest=" + domainPrefix) != std::string::npos)
            return std::stoi(name);
    }
    return -1;
}

class LibvirtE2E : public sessiond::testing::VmPoolTest {
protected:
    void SetUp() override {
        prepare("vmtest");
        config.libvirt.start = "boot";  // libvirt_restore_test.cpp covers restoring
    }

    std::size_t sandboxDirectories() {
        std::size_t n = 0;
        sessiond::testing::walkTree(runtime_, [&n](const std::filesystem::directory_entry& entry) {
            std::error_code ec;
            if (entry.is_directory(ec)) ++n;
        });
        return n;
    }
};

}  // namespace

TEST_F(LibvirtE2E, BootsAVmRunsPythonStatefullyAndReapsIt) {
    config.pools[0].cooldownPeriod = 3s;
    config.pools[0].readySessionInstances = 1;
    start();
    auto booted = std::chrono::steady_clock::now();
    ASSERT_TRUE(waitReady(1)) << "no VM became ready";
    std::cout << "first VM ready after "
              << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - booted).count()
              << " ms\n";
    HttpClient client(server.port());
    auto version = run(client, "vm-sess-1", "import sys; print(sys.version)");
    EXPECT_EQ(version["status"], "Success") << version;
    EXPECT_EQ(version["stdout"].get<std::string>().rfind("3.", 0), 0u) << version;
    run(client, "vm-sess-1", "x = 21");
    EXPECT_EQ(run(client, "vm-sess-1", "x * 2")["result"], 42);
    auto hostname = run(client, "vm-sess-1", "import socket, os\n(socket.gethostname(), os.getcwd())");
    EXPECT_EQ(hostname["result"], "('sandbox', '/mnt/data')");

    // While allocated the session has its own copy-on-write layer.
    EXPECT_GE(domainsNamed(config.cgroupName).size(), 1u);
    ASSERT_TRUE(server.waitFor([&] { return server.counts("vm").allocated == 0; }, 30s)) << "not reaped";
    // Only the refilled ready VM is left: the reaped one's domain and files are gone.
    EXPECT_TRUE(server.waitFor([&] { return domainsNamed(config.cgroupName).size() <= 1; }, 30s));
    EXPECT_TRUE(server.waitFor([&] { return sandboxDirectories() <= 2; }, 30s));  // <instance>/<ready sandbox>
}

TEST_F(LibvirtE2E, AWarmPoolOfTwoAllocatesWithoutWaitingForABoot) {
    config.pools[0].readySessionInstances = 2;
    start();
    ASSERT_TRUE(waitReady(2)) << "the two VMs did not both become ready";
    HttpClient client(server.port());
    auto started = std::chrono::steady_clock::now();
    auto r = run(client, "vm-warm-1", "1+1");
    auto allocation = std::chrono::steady_clock::now() - started;
    EXPECT_EQ(r["result"], 2);
    std::cout << "allocation from a warm VM pool: "
              << std::chrono::duration_cast<std::chrono::microseconds>(allocation).count() / 1000.0 << " ms\n";
    EXPECT_EQ(server.counts("vm").allocated, 1u);
    // Time one boot: the replacement VM the allocation started.
    auto refillStarted = std::chrono::steady_clock::now();
    ASSERT_TRUE(waitReady(2)) << "the pool did not refill";
    auto boot = std::chrono::steady_clock::now() - refillStarted;
    EXPECT_LT(allocation * 5, boot) << "allocation should not include a boot";
}

TEST_F(LibvirtE2E, AKilledQemuIsNoticedWithinASecondAndTheRequestGetsAClearError) {
    start();
    ASSERT_TRUE(waitReady(1));
    HttpClient client(server.port());
    EXPECT_EQ(run(client, "vm-kill-1", "y = 1\ny")["result"], 1);
    auto inFlight = std::async(std::launch::async, [port = server.port()] {
        HttpClient c(port);
        return c.execute("vm", "vm-kill-1", "import time\ntime.sleep(60)");
    });
    std::this_thread::sleep_for(1s);
    // The allocated VM is the one not in the ready queue: the first started.
    pid_t qemu = qemuPidOf("sessiond-" + config.cgroupName + "-vm-1");
    ASSERT_GT(qemu, 0);
    auto exitsBefore = server.counts("vm").sandboxExits;
    auto killed = std::chrono::steady_clock::now();
    ::kill(qemu, SIGKILL);
    ASSERT_TRUE(server.waitFor([&] { return server.counts("vm").sandboxExits > exitsBefore; }, 5s));
    auto noticed = std::chrono::steady_clock::now() - killed;
    EXPECT_LT(noticed, 1s);
    std::cout << "killed QEMU noticed after "
              << std::chrono::duration_cast<std::chrono::milliseconds>(noticed).count() << " ms\n";
    ASSERT_EQ(inFlight.wait_for(10s), std::future_status::ready);
    auto answer = inFlight.get().json()["properties"];
    EXPECT_EQ(answer["status"], "Failure");
    EXPECT_NE(answer["stderr"].get<std::string>().find("state is lost"), std::string::npos) << answer;
    // The identifier now starts a new session (which waits for a new VM).
    auto fresh = run(client, "vm-kill-1", "'y' in globals()");
    EXPECT_EQ(fresh["result"], false);
}

TEST_F(LibvirtE2E, AGuestWithoutAHandshakeIsDestroyedAndRetried) {
    // Far shorter than any boot here: every start times out.
    config.pools[0].sandboxStartTimeout = 2s;
    start();
    ASSERT_TRUE(server.waitFor([&] { return server.counts("vm").startFailures >= 2; }, 30s));
    // Each timed-out VM was destroyed: at most the one being retried exists.
    EXPECT_LE(domainsNamed(config.cgroupName).size(), 1u);
}
