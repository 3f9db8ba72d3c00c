// Custom container pools on the namespace backend, with nothing faked: a
// test image built here with umoci, unpacked by the image store, run by
// sessiond-nsinit on an overlay of it, and reached through the HTTP proxy.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include <boost/beast/websocket.hpp>
#include <gtest/gtest.h>

#include "sessiond/sandbox/namespace/namespace_backend.hpp"
#include "support/captured_log.hpp"
#include "support/http_client.hpp"
#include "support/leaks.hpp"
#include "support/server_fixture.hpp"
#include "support/test_image.hpp"

using namespace sessiond;
using sessiond::testing::HttpClient;
using namespace std::chrono_literals;

namespace {

std::size_t hostOverlayMounts() {
    std::ifstream mounts("/proc/self/mounts");
    std::size_t n = 0;
    for (std::string line; std::getline(mounts, line);)
        if (line.find(" overlay ") != std::string::npos) ++n;
    return n;
}

class ContainerE2E : public ::testing::Test {
protected:
    void SetUp() override {
        overlaysBefore = hostOverlayMounts();
        config.cgroupName = "sessiond-test-" + std::to_string(getpid());
        // Sandboxes open the image as unprivileged host users.
        std::filesystem::permissions(cache.path(), std::filesystem::perms(0711));
        config.containers.directory = cache.path();
        pool.name = "web";
        pool.containerType = "CustomContainer";
        pool.readySessionInstances = 1;
        pool.maxConcurrentSessions = 4;
        pool.sandboxStartTimeout = 30s;
        pool.resources.memoryBytes = 256ull << 20;
        pool.container.targetPort = 8080;
        pool.container.args = {"--port", "8080"};
    }

    void start(const sessiond::testing::TestImage& image) { start(image.ociReference()); }
    void start(const std::string& imageReference) {
        pool.container.image = imageReference;
        config.pools = {pool};
        server.startNamespace(config);
    }

    // A new session's first request is refused, with `why` in the answer.
    void expectSessionUnavailable(const std::string& why) {
        HttpClient client(server.port());
        auto r = client.get("/pools/web/hello?identifier=never");
        EXPECT_EQ(r.status, 503) << r.body;
        EXPECT_NE(r.body.find(why), std::string::npos) << r.body;
    }

    bool waitReady(std::chrono::seconds limit = 60s) {
        return server.waitFor([&] { return server.counts("web").unallocated >= 1; }, limit);
    }

    std::string etag(HttpClient& client, const std::string& identifier) { return client.sessionEtag("web", identifier); }

    // Starts the pool on a plain test image, then the identifier's session:
    // its etag.
    std::string startAndBegin(const std::string& identifier) {
        plainImage.emplace();
        start(*plainImage);
        EXPECT_TRUE(waitReady());
        HttpClient client(server.port());
        EXPECT_EQ(client.get("/pools/web/hello?identifier=" + identifier).status, 200);
        return etag(client, identifier);
    }

    void TearDown() override {
        server.stop();
        EXPECT_TRUE(sessiond::testing::processesMatching("/" + config.cgroupName + "/").empty());
        EXPECT_TRUE(sessiond::testing::sandboxCgroups(config.cgroupName, true).empty());
        EXPECT_TRUE(sessiond::testing::cgroupsNamed(config.cgroupName).empty());
        // Each session's overlay and writable layer lived in its own mount
        // namespace: the host never had one.
        EXPECT_EQ(hostOverlayMounts(), overlaysBefore);
    }

    std::size_t overlaysBefore = 0;
    sessiond::testing::ScratchDirectory cache{"sessiond-test-containers-"};
    std::optional<sessiond::testing::TestImage> plainImage;
    Config config;
    PoolConfig pool;
    sessiond::testing::ServerFixture server;
};

TEST_F(ContainerE2E, RunsAsTheImageSaysAndServesThroughTheProxy) {
    sessiond::testing::TestImage image(sessiond::testing::appUserImage());
    sessiond::testing::ScratchDirectory secrets;
    std::ofstream(secrets.path() / "token") << "from-a-file";
    pool.secrets = {{"token", "", secrets.path() / "token"}};
    pool.container.env = {{"MODE", "test", ""}, {"TOKEN", "", "token"}};
    start(image);
    ASSERT_TRUE(waitReady());

    HttpClient client(server.port());
    auto r = client.get("/pools/web/info?identifier=alice");
    ASSERT_EQ(r.status, 200) << r.body;
    const auto info = r.json();
    sessiond::testing::expectRunsAsAppUserImageSays(info);
    EXPECT_EQ(info["env"]["MODE"], "test");
    EXPECT_EQ(info["env"]["TOKEN"], "from-a-file");

    std::string upload(8u << 20, 'u');
    r = client.post("/pools/web/echo?identifier=alice", upload, "application/octet-stream");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["bytes"], upload.size());

    EXPECT_EQ(client.webSocketRoundTrip("/pools/web/ws?identifier=alice", "ping"), "ping");

    // Another identifier, another container.
    r = client.get("/pools/web/hello?identifier=robert");
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(etag(client, "alice"), etag(client, "robert"));
    EXPECT_EQ(server.counts("web").allocated, 2u);
}

TEST_F(ContainerE2E, ARootImageServesPort80AndTcpStartupProbeGatesReadiness) {
    sessiond::testing::TestImage image;  // no user: root, unprivileged on the host
    pool.container.targetPort = 80;
    pool.container.args = {"--port", "80", "--start-delay-ms", "1500"};
    ContainerProbe startup;
    startup.type = ContainerProbe::Type::Startup;
    startup.httpGet = false;
    startup.port = 80;
    startup.period = 1s;
    startup.failureThreshold = 10;
    pool.container.probes = {startup};
    const auto began = std::chrono::steady_clock::now();
    start(image);
    ASSERT_TRUE(waitReady());
    EXPECT_GE(std::chrono::steady_clock::now() - began, 1500ms);
    HttpClient client(server.port());
    auto r = client.get("/pools/web/info?identifier=root-user");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["uid"], 0);
}

TEST_F(ContainerE2E, OnContainerExitEndsTheSessionWhenItsContainerExits) {
    pool.endOnContainerExit = true;
    pool.maxAlivePeriod = 3600s;
    const std::string first = startAndBegin("short");
    HttpClient client(server.port());
    ASSERT_FALSE(first.empty());
    EXPECT_EQ(client.post("/pools/web/exit?identifier=short", "").status, 200);
    EXPECT_TRUE(server.waitFor([&] { return etag(client, "short").empty(); }, 10s));
    // The identifier's next request starts a new container.
    ASSERT_EQ(client.get("/pools/web/hello?identifier=short").status, 200);
    EXPECT_NE(etag(client, "short"), first);
}

TEST_F(ContainerE2E, OnContainerExitSessionsEndAtTheirMaximumAgeWhateverTheirActivity) {
    pool.endOnContainerExit = true;
    pool.maxAlivePeriod = 3s;
    const std::string first = startAndBegin("aging");
    HttpClient client(server.port());
    bool ended = false;
    for (int i = 0; i < 16 && !ended; ++i) {
        std::this_thread::sleep_for(500ms);
        ended = etag(client, "aging") != first;
        client.get("/pools/web/hello?identifier=aging");  // busy, yet it ends
    }
    EXPECT_TRUE(ended);
}

TEST_F(ContainerE2E, TimedSessionsLiveWhileRequestsComeAndEndAfterTheCooldown) {
    pool.cooldownPeriod = 3s;
    const std::string first = startAndBegin("steady");
    HttpClient client(server.port());
    for (int i = 0; i < 5; ++i) {
        std::this_thread::sleep_for(1s);
        ASSERT_EQ(client.get("/pools/web/hello?identifier=steady").status, 200);
    }
    EXPECT_EQ(etag(client, "steady"), first);  // 5 s old, yet never idle for 3
    EXPECT_TRUE(server.waitFor([&] { return etag(client, "steady").empty(); }, 10s));
}

TEST_F(ContainerE2E, AFailingLivenessProbeReplacesTheContainer) {
    sessiond::testing::TestImage image;
    ContainerProbe liveness;
    liveness.type = ContainerProbe::Type::Liveness;
    liveness.path = "/status/500";
    liveness.port = 8080;
    liveness.period = 1s;
    liveness.failureThreshold = 2;
    pool.container.probes = {liveness};
    start(image);
    ASSERT_TRUE(waitReady());
    HttpClient client(server.port());
    ASSERT_EQ(client.get("/pools/web/hello?identifier=sick").status, 200);
    EXPECT_TRUE(server.waitFor([&] { return server.counts("web").sandboxExits >= 1; }, 15s));
    EXPECT_TRUE(etag(client, "sick").empty());
}

TEST_F(ContainerE2E, AContainerThatExitsAtOnceFailsItsStartWithItsExitCode) {
    sessiond::testing::TestImage image;
    pool.container.args = {"--exit-after-ms", "0"};
    pool.sandboxStartTimeout = 10s;
    start(image);
    EXPECT_TRUE(server.waitFor([&] { return server.counts("web").startFailures >= 1; }, 30s));
    EXPECT_EQ(server.counts("web").unallocated, 0u);
    expectSessionUnavailable("exit code 3");
}

TEST_F(ContainerE2E, AMissingImageFailsTheStartNamingIt) {
    pool.sandboxStartTimeout = 10s;
    start("oci:/nonexistent/image:1");
    expectSessionUnavailable("/nonexistent/image");
}

TEST_F(ContainerE2E, AnImageCacheSandboxesCannotSearchFailsTheStartSayingSo) {
    sessiond::testing::TestImage image;
    std::filesystem::permissions(cache.path(), std::filesystem::perms(0700));
    pool.sandboxStartTimeout = 10s;
    start(image);
    expectSessionUnavailable("is not searchable by others");
}

TEST_F(ContainerE2E, AChattyContainerDoesNotDrownTheLog) {
    sessiond::testing::CapturedLog log;
    sessiond::testing::TestImage image;
    pool.container.args = {"--port", "8080", "--chatter", "5000"};
    start(image);
    ASSERT_TRUE(waitReady());
    HttpClient client(server.port());
    ASSERT_EQ(client.get("/pools/web/hello?identifier=chatty").status, 200);
    server.stop();  // the count of what was not logged is told at the end at the latest
    const std::string text = log.text();
    std::size_t logged = 0;
    for (std::size_t at = 0; (at = text.find("chatter line ", at)) != std::string::npos; ++at) ++logged;
    // Two containers (the session's and its replacement) of 5000 lines each,
    // over about a second: a few hundred get through at most.
    EXPECT_GE(logged, 100u);
    EXPECT_LE(logged, 800u);
    EXPECT_NE(text.find("chatter line 0\n"), std::string::npos);
    EXPECT_NE(text.find("lines of output were not logged (over 100 a second)"), std::string::npos);
}

}  // namespace
