// The HTTP forwarding of custom container pools (docs/custom-containers.md),
// with the real server, routes and pool manager and a fake backend whose
// sandboxes connect to the test container server running on the host: the
// relay's behaviour apart from any sandbox.

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include <boost/beast/websocket.hpp>
#include <gtest/gtest.h>

#include "support/fake_backend.hpp"
#include "support/http_client.hpp"
#include "support/server_fixture.hpp"

extern char** environ;

namespace {

using namespace sessiond;
using namespace sessiond::testing;
namespace http = boost::beast::http;

// The test container server as a host process on a free port.
class HostServer {
public:
    HostServer() {
        int fds[2];
        if (::pipe(fds) != 0) throw std::runtime_error("pipe");
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
        posix_spawn_file_actions_addclose(&actions, fds[0]);
        const char* argv[] = {SESSIOND_TEST_CONTAINER_SERVER, "--port", "0", nullptr};
        const int rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, const_cast<char**>(argv), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(fds[1]);
        if (rc != 0) throw std::runtime_error("cannot start the test container server");
        FILE* out = ::fdopen(fds[0], "r");
        unsigned port = 0;
        if (std::fscanf(out, "listening %u", &port) != 1) port = 0;
        std::fclose(out);
        port_ = static_cast<std::uint16_t>(port);
    }
    ~HostServer() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    std::uint16_t port() const { return port_; }

private:
    pid_t pid_ = -1;
    std::uint16_t port_ = 0;
};

std::uint64_t fnv1a64(const std::string& bytes) {
    std::uint64_t hash = 0xcbf29ce484222325ull;
    for (unsigned char c : bytes) hash = (hash ^ c) * 0x100000001b3ull;
    return hash;
}

class ForwardTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_NE(upstream.port(), 0);
        Config config;
        PoolConfig web;
        web.name = "web";
        web.containerType = "CustomContainer";
        web.container.image = "oci:/unused";
        web.container.targetPort = 8080;
        web.readySessionInstances = 1;
        PoolConfig python;
        python.name = "python";
        python.readySessionInstances = 0;
        config.pools = {web, python};
        server.start(config, [this](boost::asio::io_context& io) {
            auto backend = std::make_unique<FakeBackend>(io);
            backend->connectPort = upstream.port();
            fake = backend.get();
            return backend;
        });
    }

    FakeBackend& backend() { return *fake; }

    HostServer upstream;
    ServerFixture server;
    FakeBackend* fake = nullptr;
};

TEST_F(ForwardTest, PathQueryAndHeadersReachTheContainerButNotTheApiKey) {
    HttpClient client(server.port());
    client.withKey("not-for-the-container");
    auto r = client.get("/pools/web/headers?identifier=user-1&x=a%20b&api-version=2025-02-02-preview");
    ASSERT_EQ(r.status, 200) << r.body;
    const auto seen = r.json();
    EXPECT_EQ(seen["method"], "GET");
    EXPECT_EQ(seen["target"], "/headers?identifier=user-1&x=a%20b&api-version=2025-02-02-preview");
    EXPECT_FALSE(seen["headers"].contains("authorization")) << seen.dump();
    EXPECT_EQ(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    EXPECT_EQ(seen["headers"]["x-forwarded-proto"], "http");
    EXPECT_EQ(seen["headers"]["host"], "127.0.0.1");

    // The same client connection goes on: the relay left it reusable.
    r = client.get("/pools/web/hello?identifier=user-1");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "hello");
    // The container's own statuses and bodies come back as they were.
    r = client.get("/pools/web/status/418?identifier=user-1");
    EXPECT_EQ(r.status, 418);
    EXPECT_EQ(r.body, "status 418");
    r = client.get("/pools/web/nothing-here?identifier=user-1");
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.body, "not found");
    // One session served them all.
    EXPECT_EQ(server.counts("web").allocated, 1u);
    EXPECT_EQ(backend().connects, 4u);
}

TEST_F(ForwardTest, LargeBodiesStreamBothWays) {
    HttpClient client(server.port());
    std::string upload(48u << 20, '\0');
    for (std::size_t i = 0; i < upload.size(); ++i) upload[i] = static_cast<char>((i * 131) >> 7);
    auto r = client.post("/pools/web/echo?identifier=big-one", upload, "application/octet-stream");
    ASSERT_EQ(r.status, 200) << r.body;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a64(upload)));
    EXPECT_EQ(r.json()["bytes"], upload.size());
    EXPECT_EQ(r.json()["fnv1a64"], hex);

    // Past http.maxUploadBytes too: forwarded bodies have no limit of their own.
    r = client.get("/pools/web/big?identifier=big-one&bytes=150000000");
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.body.size(), 150000000u);
    EXPECT_EQ(r.header("Transfer-Encoding"), "chunked");
}

// A container that answers before reading the body it is sent (a 413, say)
// is heard, not taken for a broken connection (502); the connection closes
// after its answer, as the rest of the body was never read.
TEST_F(ForwardTest, AnAnswerBeforeTheBodyWasReadReachesTheClient) {
    HttpClient client(server.port());
    const std::string upload(32u << 20, 'x');
    auto r = client.post("/pools/web/refuse?identifier=early-one", upload, "application/octet-stream");
    EXPECT_EQ(r.status, 413) << r.body;
    EXPECT_EQ(r.body, "refused before reading the body");
    // The session and its container serve the next request as before.
    HttpClient next(server.port());
    r = next.post("/pools/web/echo?identifier=early-one", "after", "text/plain");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["bytes"], 5);
}

TEST_F(ForwardTest, WebSocketUpgradeIsTunnelled) {
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket socket(io);
    socket.connect({boost::asio::ip::address_v4::loopback(), server.port()});
    boost::beast::websocket::stream<boost::asio::ip::tcp::socket> ws(std::move(socket));
    ws.handshake("127.0.0.1", "/pools/web/ws?identifier=ws-user");
    for (const std::string& message : std::vector<std::string>{"hello", std::string(200000, 'x'), "last"}) {
        ws.write(boost::asio::buffer(message));
        boost::beast::flat_buffer buffer;
        ws.read(buffer);
        EXPECT_EQ(boost::beast::buffers_to_string(buffer.data()), message);
    }
    // The session is busy while the tunnel is open, and free after.
    EXPECT_EQ(server.counts("web").allocated, 1u);
    ws.close(boost::beast::websocket::close_code::normal);
}

TEST_F(ForwardTest, ErrorsAreAzuresAndTheManagementRoutesStayLocal) {
    HttpClient client(server.port());
    auto r = client.get("/pools/web/hello");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.json()["error"]["code"], "SessionRequestValidationFailed");
    // The management routes are sessiond's own, not the container's.
    r = client.get("/pools/web/hello?identifier=managed");
    ASSERT_EQ(r.status, 200);
    r = client.post("/pools/web/.management/getSession?identifier=managed&api-version=2025-02-02-preview", "");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["identifier"], "managed");
    r = client.post("/pools/web/.management/stopSession?identifier=managed&api-version=2025-02-02-preview", "");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(server.waitFor([&] { return server.counts("web").allocated == 0; }, std::chrono::seconds(5)));
    // The pool's own endpoint and other pools' routes are not forwarded.
    EXPECT_EQ(client.get("/pools/web").status, 200);
    EXPECT_EQ(client.get("/pools/python/hello?identifier=user-1").status, 404);

    // A container that accepts no connection.
    server.call([&] { backend().connectPort = 1; return 0; });
    r = client.get("/pools/web/hello?identifier=refused");
    EXPECT_EQ(r.status, 502);
    EXPECT_EQ(r.json()["error"]["code"], "ContainerUnreachable");
}

}  // namespace
