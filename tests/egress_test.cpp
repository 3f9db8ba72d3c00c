// Network egress of namespace sandboxes (docs/networking.md), with nothing
// faked: the daemon's bridge, veth pairs and nftables rules, and a stand-in
// for the outside world that the test makes: a network namespace of its own,
// reached from the host through a veth pair, running an HTTP server that
// answers with the address a request came from.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "sessiond/host_tool.hpp"
#include "sessiond/sandbox/egress_network.hpp"
#include "sessiond/sandbox/namespace/namespace_backend.hpp"
#include "support/http_client.hpp"
#include "support/leaks.hpp"
#include "support/server_fixture.hpp"
#include "support/test_image.hpp"

extern char** environ;

using namespace sessiond;
using sessiond::testing::HttpClient;
using namespace std::chrono_literals;

namespace {

constexpr int kOutsidePort = 8080;

// Debian's interpreter, as the sandboxes use (the first python3 on PATH may be another).
constexpr const char* kPython = "/usr/bin/python3";

bool interfaceExists(const std::string& name) { return std::filesystem::exists("/sys/class/net/" + name); }

bool nftTableExists(const std::string& table) {
    try {
        runHostTool({"nft", "list", "table", "inet", table});
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

// A process the test started; killed and reaped when it goes.
class Child {
public:
    explicit Child(const std::vector<std::string>& args) {
        std::vector<char*> argv;
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        // Not the test's output: a test that crashes would leave it open.
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        if (::posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
        posix_spawn_file_actions_destroy(&actions);
    }
    ~Child() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    bool started() const { return pid_ > 0; }

private:
    pid_t pid_ = -1;
};

// The outside world: a network namespace with one veth pair to the host.
// The host's end has .1, the world's .2 of `subnet` (a /24).
class OutsideWorld {
public:
    explicit OutsideWorld(const std::string& prefix) : hostAddress(prefix + ".1"), address(prefix + ".2") {
        runHostTool({"ip", "netns", "add", name_});
        runHostTool({"ip", "-batch", "-"}, "link add " + link_ + " type veth peer name eth0 netns " + name_ + "\n" +
                                                "addr add " + hostAddress + "/24 dev " + link_ + "\n" + "link set " +
                                                link_ + " up\n");
        runHostTool({"ip", "-n", name_, "-batch", "-"},
                    "addr add " + address + "/24 dev eth0\nlink set eth0 up\nlink set lo up\n");
        const std::string server =
            "import http.server\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        body = self.client_address[0].encode()\n"
            "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
            "        self.end_headers(); self.wfile.write(body)\n"
            "    def log_message(self, *args): pass\n"
            "http.server.HTTPServer(('" + address + "', " + std::to_string(kOutsidePort) + "), H).serve_forever()\n";
        server_.emplace(std::vector<std::string>{"ip", "netns", "exec", name_, kPython, "-c", server});
    }
    ~OutsideWorld() {
        server_.reset();
        try {
            runHostTool({"ip", "netns", "del", name_});  // takes its end of the pair, and so the pair, with it
        } catch (const std::exception&) {
        }
        if (interfaceExists(link_)) runHostTool({"ip", "link", "del", link_});
    }

    // Runs Python in the outside world; true if it exited with 0.
    bool run(const std::string& code) {
        try {
            runHostTool({"ip", "netns", "exec", name_, kPython, "-c", code});
            return true;
        } catch (const std::exception&) {
            return false;
        }
    }

    const std::string hostAddress, address;

private:
    const std::string name_ = "sessiond-test-outside-" + std::to_string(getpid());
    const std::string link_ = "so" + std::to_string(getpid());
    std::optional<Child> server_;
};

// What the sessions run: a probe that prints what became of a connection.
const std::string kProbe = R"(
import socket, urllib.request
def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return "connected"
    except OSError as e:
        return "blocked: " + str(e)
def fetch(url):
    try:
        return "answered " + urllib.request.urlopen(url, timeout=3).read().decode()
    except OSError as e:
        return "blocked: " + str(e)
)";

class Egress : public ::testing::Test {
protected:
    void SetUp() override {
        const int pid = getpid();
        config.cgroupName = "sessiond-test-egress-" + std::to_string(pid);
        config.network.bridge = "sdt" + std::to_string(pid % 1000000);
        config.network.subnet = "10.214." + std::to_string(pid % 256) + ".0/24";
        PoolConfig open;
        open.name = "open";
        open.readySessionInstances = 2;
        open.maxConcurrentSessions = 4;
        open.egressEnabled = true;
        PoolConfig closed = open;
        closed.name = "closed";
        closed.readySessionInstances = 1;
        closed.egressEnabled = false;
        config.pools = {open, closed};
        table = EgressNetwork::tableName(config.network);
    }

    void start() {
        server.startNamespace(config);
        ASSERT_TRUE(server.waitFor([&] { return server.counts("open").unallocated >= 2; }, 60s));
        ASSERT_TRUE(server.waitFor([&] { return server.counts("closed").unallocated >= 1; }, 60s));
    }

    // The session's value of `expression`, after the probe's definitions.
    std::string in(const std::string& pool, const std::string& session, const std::string& expression) {
        HttpClient client(server.port());
        auto defined = client.execute(pool, session, kProbe);
        EXPECT_EQ(defined.status, 200) << defined.body;
        auto r = client.execute(pool, session, expression);
        EXPECT_EQ(r.status, 200) << r.body;
        if (r.status != 200) return r.body;
        const auto reply = r.json();
        const auto result = reply["properties"].value("result", nlohmann::json());
        return result.is_string() ? result.get<std::string>() : r.body;
    }

    Config config;
    std::string table;
    sessiond::testing::ServerFixture server;
};

// A listening socket of the host's on every address, which no session may reach.
class HostListener {
public:
    HostListener() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in address{};
        address.sin_family = AF_INET;  // port 0: any free one
        socklen_t length = sizeof address;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 && ::listen(fd_, 16) == 0 &&
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0)
            port_ = std::to_string(ntohs(address.sin_port));
    }
    ~HostListener() { ::close(fd_); }
    // Empty if it could not listen.
    const std::string& port() const { return port_; }

private:
    int fd_ = -1;
    std::string port_;
};

// Sessions forked from their pool's zygote, and sessions nsinit starts afresh
// (namespaceSandbox.zygote off), which get their interface another way.
class EgressBothWays : public Egress, public ::testing::WithParamInterface<bool> {
protected:
    void SetUp() override {
        Egress::SetUp();
        config.namespaceSandbox.zygote = GetParam();
    }
};

INSTANTIATE_TEST_SUITE_P(Sandboxes, EgressBothWays, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "Zygote" : "Fresh"; });

TEST_P(EgressBothWays, EnabledReachesTheOutsideDisabledNeverAndNeitherTheHostNorANeighbour) {
    OutsideWorld outside("198.18." + std::to_string(getpid() % 256));
    HostListener host;
    ASSERT_FALSE(host.port().empty());
    start();
    ASSERT_TRUE(interfaceExists(config.network.bridge));
    ASSERT_TRUE(nftTableExists(table));
    const std::string url = "http://" + outside.address + ":" + std::to_string(kOutsidePort) + "/";
    // The world's server needs a moment to listen; and the host's listener
    // is reachable from there, so only the rules keep sessions from it.
    ASSERT_TRUE(server.waitFor(
        [&] { return outside.run("import urllib.request; urllib.request.urlopen('" + url + "', timeout=1)"); }, 10s));
    EXPECT_TRUE(outside.run("import socket; socket.create_connection(('" + outside.hostAddress + "', " +
                            host.port() + "), timeout=2)"));

    // Enabled: an interface of its own, and out through the host, as the host (NAT).
    const std::string interfaces = "str(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]))";
    EXPECT_EQ(in("open", "sess-a", interfaces), "['eth0', 'lo']");
    EXPECT_EQ(in("open", "sess-a", "fetch('" + url + "')"), "answered " + outside.hostAddress);

    // Disabled: loopback only, so there is no route at all.
    EXPECT_EQ(in("closed", "sess-c", interfaces), "['lo']");
    const std::string closed = in("closed", "sess-c", "fetch('" + url + "')");
    EXPECT_EQ(closed.rfind("blocked", 0), 0u) << closed;

    // A neighbour: session a listens on its address; it can reach itself, b cannot reach it.
    const std::string address = in("open", "sess-a",
                                   "srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                                   "srv.bind(('0.0.0.0', 9000)); srv.listen(8); "
                                   "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                                   "u.connect(('" + outside.address + "', 9)); u.getsockname()[0]");
    ASSERT_EQ(address.rfind("10.214.", 0), 0u) << address;
    EXPECT_EQ(in("open", "sess-a", "connect('" + address + "', 9000)"), "connected");
    const std::string neighbour = in("open", "sess-b", "connect('" + address + "', 9000)");
    EXPECT_EQ(neighbour.rfind("blocked", 0), 0u) << neighbour;

    // The host, at the bridge's address and at its address towards the world.
    const Ipv4Subnet subnet = Ipv4Subnet::parse(config.network.subnet);
    for (const std::string& hostAddress : {Ipv4Subnet::toString(subnet.gateway()), outside.hostAddress}) {
        const std::string reached = in("open", "sess-b", "connect('" + hostAddress + "', " + host.port() + ")");
        EXPECT_EQ(reached.rfind("blocked", 0), 0u) << hostAddress << ": " << reached;
    }

    // Stopping removes the bridge, the table and every session's veth pair.
    server.stop();
    EXPECT_FALSE(interfaceExists(config.network.bridge));
    EXPECT_FALSE(nftTableExists(table));
    char prefix[16];
    std::snprintf(prefix, sizeof prefix, "sv%06x", subnet.network >> 8);
    for (const auto& link : std::filesystem::directory_iterator("/sys/class/net"))
        EXPECT_NE(link.path().filename().string().rfind(prefix, 0), 0u) << link.path() << " is left";
    EXPECT_TRUE(sessiond::testing::cgroupsNamed(config.cgroupName).empty());
}

// Custom containers (docs/custom-containers.md) under the same rules: the
// pool's status decides, and the host is out of reach.
TEST_F(Egress, CustomContainersReachTheOutsideOnlyWithEgress) {
    OutsideWorld outside("198.19." + std::to_string(getpid() % 256));
    HostListener host;
    ASSERT_FALSE(host.port().empty());
    sessiond::testing::TestImage image;
    sessiond::testing::ScratchDirectory cache{"sessiond-test-containers-"};
    std::filesystem::permissions(cache.path(), std::filesystem::perms(0711));
    config.containers.directory = cache.path();
    for (auto& pool : config.pools) {
        pool.containerType = "CustomContainer";
        pool.container.image = image.ociReference();
        pool.container.targetPort = 8080;
        pool.container.args = {"--port", "8080"};
    }
    start();
    const std::string url = "http://" + outside.address + ":" + std::to_string(kOutsidePort) + "/";
    ASSERT_TRUE(server.waitFor(
        [&] { return outside.run("import urllib.request; urllib.request.urlopen('" + url + "', timeout=1)"); }, 10s));
    HttpClient client(server.port());
    auto get = [&](const std::string& pool, const std::string& identifier, const std::string& path) {
        auto r = client.get("/pools/" + pool + path + (path.find('?') == std::string::npos ? "?" : "&") +
                            "identifier=" + identifier);
        EXPECT_EQ(r.status, 200) << r.body;
        return r.body;
    };
    const std::string fetchOutside = "/fetch?host=" + outside.address + "&port=" + std::to_string(kOutsidePort);
    EXPECT_EQ(get("open", "box-a", "/interfaces"), "lo\neth0\n");
    EXPECT_EQ(get("open", "box-a", fetchOutside), "answered " + outside.hostAddress);
    EXPECT_EQ(get("closed", "box-c", "/interfaces"), "lo\n");
    const std::string closed = get("closed", "box-c", fetchOutside);
    EXPECT_EQ(closed.rfind("blocked", 0), 0u) << closed;
    // The host, at the bridge's address and at its address towards the world.
    const Ipv4Subnet subnet = Ipv4Subnet::parse(config.network.subnet);
    for (const std::string& hostAddress : {Ipv4Subnet::toString(subnet.gateway()), outside.hostAddress}) {
        const std::string reached = get("open", "box-b", "/fetch?host=" + hostAddress + "&port=" + host.port());
        EXPECT_EQ(reached.rfind("blocked", 0), 0u) << hostAddress << ": " << reached;
    }
    server.stop();
    EXPECT_FALSE(interfaceExists(config.network.bridge));
    EXPECT_FALSE(nftTableExists(table));
}

// A daemon killed with its egress network up leaves the bridge and the
// table; the next start removes them before it makes its own.
TEST_F(Egress, LeftoversOfAKilledRunAreRemoved) {
    runHostTool({"ip", "link", "add", config.network.bridge, "type", "bridge"});
    runHostTool({"nft", "add", "table", "inet", table});
    start();
    server.stop();
    EXPECT_FALSE(interfaceExists(config.network.bridge));
    EXPECT_FALSE(nftTableExists(table));
}

TEST(EgressConfig, SubnetsAndBridgeNamesAreChecked) {
    EXPECT_EQ(Ipv4Subnet::parse("10.213.0.0/16").cidr(), "10.213.0.0/16");
    EXPECT_EQ(Ipv4Subnet::toString(Ipv4Subnet::parse("10.213.0.0/16").gateway()), "10.213.0.1");
    EXPECT_EQ(Ipv4Subnet::toString(Ipv4Subnet::parse("10.213.0.0/16").lastHost()), "10.213.255.254");
    for (const char* bad : {"10.213.0.1/16", "10.213.0.0", "10.213.0.0/31", "10.213.0.0/4", "300.0.0.0/8", "10.0.0.0/x"})
        EXPECT_THROW(Ipv4Subnet::parse(bad), std::invalid_argument) << bad;
}

}  // namespace
