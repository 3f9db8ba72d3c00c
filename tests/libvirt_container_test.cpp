// Custom container pools on the microVM backend (docs/custom-containers.md),
// under TCG, with nothing faked: a test image built here with umoci,
// unpacked with its own owners and made into a disk, a VM per session whose
// agent starts the container on an overlay of that disk, and the HTTP proxy
// reaching it through the VM's streams port (the VM has no network card).

#include <gtest/gtest.h>

#include "support/test_image.hpp"
#include "support/vm_pool_fixture.hpp"

using namespace sessiond;
using namespace sessiond::testing;
using namespace std::chrono_literals;

namespace {

class LibvirtContainer : public VmPoolTest {
protected:
    void SetUp() override {
        prepare("test-vmcontainer");
        if (IsSkipped()) return;
        // QEMU, not root, opens the image's disk.
        std::filesystem::permissions(cache.path(), std::filesystem::perms(0711));
        config.containers.directory = cache.path();
        PoolConfig& pool = config.pools[0];
        pool.containerType = "CustomContainer";
        pool.resources.memoryBytes = 512ull << 20;
        pool.container.targetPort = 8080;
        pool.container.args = {"--port", "8080"};
    }

    void start(const TestImage& image) {
        config.pools[0].container.image = image.ociReference();
        VmPoolTest::start();
    }

    std::string etag(HttpClient& client, const std::string& identifier) { return client.sessionEtag("vm", identifier); }

    ScratchDirectory cache{"sessiond-test-vmcontainers-"};
};

TEST_F(LibvirtContainer, AVmPerSessionRunsTheImageAsItSaysAndServesThroughTheStreamsPort) {
    TestImage image(appUserImage());
    config.pools[0].container.env = {{"MODE", "test", ""}};
    start(image);
    ASSERT_TRUE(waitReady(1)) << "the pool did not fill";

    HttpClient client(server.port());
    auto r = client.get("/pools/vm/info?identifier=alice");
    ASSERT_EQ(r.status, 200) << r.body;
    const auto info = r.json();
    expectRunsAsAppUserImageSays(info);
    EXPECT_EQ(info["env"]["MODE"], "test");
    // No egress: the VM has no card, and the proxy came through the streams port.
    EXPECT_EQ(client.get("/pools/vm/interfaces?identifier=alice").body, "lo\n");

    std::string upload(8u << 20, '\0');
    for (std::size_t i = 0; i < upload.size(); ++i) upload[i] = static_cast<char>((i * 131) >> 7);
    r = client.post("/pools/vm/echo?identifier=alice", upload, "application/octet-stream");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["bytes"], upload.size());
    r = client.get("/pools/vm/big?identifier=alice&bytes=20000000");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body.size(), 20000000u);

    EXPECT_EQ(client.webSocketRoundTrip("/pools/vm/ws?identifier=alice", "ping"), "ping");

    // Another identifier, another VM.
    r = client.get("/pools/vm/hello?identifier=robert");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_NE(etag(client, "alice"), etag(client, "robert"));
    EXPECT_EQ(server.counts("vm").allocated, 2u);
}

TEST_F(LibvirtContainer, OnContainerExitEndsTheVmAndTheSession) {
    config.pools[0].endOnContainerExit = true;
    config.pools[0].maxAlivePeriod = 3600s;
    TestImage image;
    start(image);
    ASSERT_TRUE(waitReady(1));
    HttpClient client(server.port());
    ASSERT_EQ(client.get("/pools/vm/hello?identifier=short").status, 200);
    const std::string first = etag(client, "short");
    ASSERT_FALSE(first.empty());
    EXPECT_EQ(client.post("/pools/vm/exit?identifier=short", "").status, 200);
    EXPECT_TRUE(server.waitFor([&] { return etag(client, "short").empty(); }, 60s)) << "the session outlived its container";
    EXPECT_TRUE(server.waitFor([&] { return server.counts("vm").sandboxExits >= 1; }, 10s));
}

// Both probe kinds go through the streams port too: a Startup tcpSocket
// probe gates readiness, and an httpGet Liveness probe that fails replaces
// the session's VM.
TEST_F(LibvirtContainer, ProbesReachTheContainerAndAFailingLivenessProbeReplacesTheVm) {
    TestImage image;
    ContainerProbe startup;
    startup.type = ContainerProbe::Type::Startup;
    startup.httpGet = false;
    startup.port = 8080;
    startup.period = 1s;
    startup.failureThreshold = 30;
    ContainerProbe liveness;
    liveness.type = ContainerProbe::Type::Liveness;
    liveness.path = "/status/500";
    liveness.port = 8080;
    liveness.period = 1s;
    liveness.failureThreshold = 2;
    config.pools[0].container.probes = {startup, liveness};
    config.pools[0].container.args = {"--port", "8080", "--start-delay-ms", "1500"};
    start(image);
    ASSERT_TRUE(waitReady(1));
    HttpClient client(server.port());
    ASSERT_EQ(client.get("/pools/vm/hello?identifier=sick").status, 200);
    EXPECT_TRUE(server.waitFor([&] { return server.counts("vm").sandboxExits >= 1; }, 60s));
    EXPECT_TRUE(etag(client, "sick").empty());
}

TEST_F(LibvirtContainer, AContainerThatExitsAtOnceFailsItsStartWithItsExitStatus) {
    TestImage image;
    config.pools[0].container.args = {"--exit-after-ms", "0"};
    start(image);
    EXPECT_TRUE(server.waitFor([&] { return server.counts("vm").startFailures >= 1; }, 300s));
    EXPECT_EQ(server.counts("vm").unallocated, 0u);
    HttpClient client(server.port());
    auto r = client.get("/pools/vm/hello?identifier=never");
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_NE(r.body.find("exit status 3"), std::string::npos) << r.body;
}

}  // namespace
