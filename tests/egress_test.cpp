// Network egress of namespace sandboxes (docs/networking.md), with nothing
// faked: the daemon's bridge, veth pairs and nftables rules, and a stand-in
// for the outside world that the test makes: a network namespace of its own,
// reached from the host through a veth pair, running an HTTP server that
// answers with the address a request came from, and a DNS server for a
// few names of its own.

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "sessiond/host_tool.hpp"
#include "sessiond/sandbox/egress_network.hpp"
#include "sessiond/sandbox/namespace/namespace_backend.hpp"
#include "support/http_client.hpp"
#include "support/leaks.hpp"
#include "support/outside_world.hpp"
#include "support/server_fixture.hpp"
#include "support/test_image.hpp"

using namespace sessiond;
using namespace sessiond::testing;
using namespace std::chrono_literals;

namespace {

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
        return probeIn(server.port(), pool, session, expression);
    }

    Config config;
    std::string table;
    sessiond::testing::ServerFixture server;
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
    const std::string url = outside.url();
    // The host's listener is reachable from the world, so only the rules
    // keep sessions from it.
    ASSERT_TRUE(outside.serving());
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
    const std::string address = in("open", "sess-a", listenAndTellAddress(outside.address));
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

    // The gateway's MAC is set on the bridge, so it stays while sessions come
    // and go (a bridge left to itself takes its ports' lowest MAC, and each
    // change cost every session its gateway until its ARP entry went stale),
    // and it is what a session learned.
    const std::string gateway = Ipv4Subnet::toString(subnet.gateway());
    std::ifstream bridgeAddress("/sys/class/net/" + config.network.bridge + "/address");
    std::string bridgeMac;
    bridgeAddress >> bridgeMac;
    EXPECT_EQ(bridgeMac, EgressPort::macOf(subnet.gateway()));
    EXPECT_EQ(in("open", "sess-a", "[l.split()[3] for l in open('/proc/net/arp').read().splitlines()[1:] "
                                   "if l.split()[0] == '" + gateway + "']"),
              "['" + bridgeMac + "']");

    // Stopping removes the bridge, the table and every session's veth pair.
    server.stop();
    EXPECT_FALSE(interfaceExists(config.network.bridge));
    EXPECT_FALSE(nftTableExists(table));
    for (const auto& link : std::filesystem::directory_iterator("/sys/class/net"))
        EXPECT_NE(link.path().filename().string().rfind(hostInterfacePrefix(subnet), 0), 0u) << link.path() << " is left";
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
    ASSERT_TRUE(outside.serving());
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

// A pool with allowedDestinations: names through the daemon's resolver,
// each session only the addresses it was told, and the listed CIDRs.
TEST_F(Egress, AllowListLetsSessionsReachOnlyListedNamesAndNetworks) {
    OutsideWorld outside("198.20." + std::to_string(getpid() % 256));
    HostListener host;
    ASSERT_FALSE(host.port().empty());
    config.network.resolvers = {outside.address};
    PoolConfig listed = config.pools[0];
    listed.name = "listed";
    listed.allowedDestinations = {"allowed.test", outside.third + "/32"};
    config.pools = {config.pools[0], listed};
    server.startNamespace(config);
    ASSERT_TRUE(server.waitFor([&] { return server.counts("listed").unallocated >= 2; }, 60s));
    ASSERT_TRUE(server.waitFor([&] { return server.counts("open").unallocated >= 2; }, 60s));
    const std::string port = std::to_string(kOutsidePort);
    ASSERT_TRUE(outside.serving());
    const Ipv4Subnet subnet = Ipv4Subnet::parse(config.network.subnet);
    const std::string gateway = Ipv4Subnet::toString(subnet.gateway());

    // Sessions ask the daemon's resolver, whatever the host's resolv.conf says.
    EXPECT_EQ(in("listed", "list-a", "open('/etc/resolv.conf').read()"), "nameserver " + gateway + "\n");
    // The listed name resolves, and its address is reachable, by this session.
    EXPECT_EQ(in("listed", "list-a", "resolve('allowed.test')"), "resolved " + outside.address);
    EXPECT_EQ(in("listed", "list-a", "fetch('http://allowed.test:" + port + "/')"), "answered " + outside.hostAddress);
    // A name off the list does not resolve; an address off it is not reached.
    const std::string other = in("listed", "list-a", "resolve('other.test')");
    EXPECT_EQ(other.rfind("unresolved", 0), 0u) << other;
    const std::string raw = in("listed", "list-a", "connect('" + outside.second + "', " + port + ")");
    EXPECT_EQ(raw.rfind("blocked", 0), 0u) << raw;
    // Another session of the pool was told nothing: the address allowed.test
    // has is not its to reach.
    const std::string neighbourOfA = in("listed", "list-b", "connect('" + outside.address + "', " + port + ")");
    EXPECT_EQ(neighbourOfA.rfind("blocked", 0), 0u) << neighbourOfA;
    // The listed CIDR, without DNS.
    EXPECT_EQ(in("listed", "list-b", "connect('" + outside.third + "', " + port + ")"), "connected");
    // The host stays out of reach, the resolver aside.
    const std::string toHost = in("listed", "list-b", "connect('" + gateway + "', " + host.port() + ")");
    EXPECT_EQ(toHost.rfind("blocked", 0), 0u) << toHost;

    // An unrestricted session resolves through the daemon's resolver too,
    // and reaches everything.
    EXPECT_EQ(in("open", "open-a", "resolve('other.test')"), "resolved " + outside.second);
    EXPECT_EQ(in("open", "open-a", "fetch('http://other.test:" + port + "/')"), "answered " + outside.hostAddress);
    EXPECT_EQ(in("open", "open-a", "connect('" + outside.address + "', " + port + ")"), "connected");
    const std::string nothing = in("open", "open-a", "resolve('nothing.test')");
    EXPECT_EQ(nothing.rfind("unresolved", 0), 0u) << nothing;

    // The refusal is counted.
    HttpClient client(server.port());
    const auto metrics = client.get("/metrics");
    EXPECT_NE(metrics.body.find("sessiond_egress_dns_queries_total{pool=\"listed\",result=\"refused\"}"),
              std::string::npos)
        << metrics.body;
    EXPECT_NE(metrics.body.find("sessiond_egress_dns_queries_total{pool=\"open\",result=\"answered\"}"),
              std::string::npos);

    // A session's addresses leave the sets with it.
    const std::string address = in("listed", "list-a",
                                   "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                                   "u.connect(('" + outside.third + "', 9)); u.getsockname()[0]");
    auto elementsOf = [&](const std::string& set) {
        return runHostToolOutput({"nft", "list", "set", "inet", table, set}).find(address + " . ") !=
               std::string::npos;
    };
    EXPECT_TRUE(elementsOf("allowed_addresses"));
    EXPECT_TRUE(elementsOf("allowed_networks"));
    const auto ended = client.request(boost::beast::http::verb::delete_, "/pools/listed/session?identifier=list-a");
    EXPECT_LT(ended.status, 300) << ended.body;
    EXPECT_TRUE(server.waitFor([&] { return !elementsOf("allowed_addresses") && !elementsOf("allowed_networks"); },
                               10s));

    server.stop();
    EXPECT_FALSE(interfaceExists(config.network.bridge));
    EXPECT_FALSE(nftTableExists(table));
    EXPECT_TRUE(sessiond::testing::cgroupsNamed(config.cgroupName).empty());
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
