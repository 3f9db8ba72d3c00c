// Network egress of microVMs (docs/networking.md) under TCG, with nothing
// faked: libvirt's taps on the daemon's bridge, the guest's virtio card set
// up by its agent, the daemon's nftables rules, and the test's stand-in for
// the outside world (support/outside_world.hpp). VMs are restored from their
// pool's template, so each one's card was made with the template's MAC and
// must take its own.

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "sessiond/host_tool.hpp"
#include "sessiond/ipv4_subnet.hpp"
#include "sessiond/sandbox/egress_network.hpp"
#include "../src/sandbox/libvirt/domain_xml.hpp"
#include "support/outside_world.hpp"
#include "support/vm_pool_fixture.hpp"

using namespace sessiond;
using namespace sessiond::testing;
using namespace std::chrono_literals;

namespace {

class LibvirtEgress : public VmPoolTest {
protected:
    void SetUp() override {
        prepare("test-vmegress");
        if (IsSkipped()) return;
        const int pid = getpid();
        config.network.bridge = "sdv" + std::to_string(pid % 1000000);
        config.network.subnet = "10.215." + std::to_string(pid % 256) + ".0/24";
        PoolConfig& open = config.pools[0];
        open.readySessionInstances = 2;
        open.egressEnabled = true;
        PoolConfig closed = open;
        closed.name = "closed";
        closed.readySessionInstances = 1;
        closed.egressEnabled = false;
        config.pools.push_back(closed);
    }

    // The session's value of `expression`, after the probe's definitions.
    std::string in(const std::string& pool, const std::string& session, const std::string& expression) {
        return probeIn(server.port(), pool, session, expression);
    }

    static bool blocked(const std::string& outcome) { return outcome.rfind("blocked", 0) == 0; }
};

TEST_F(LibvirtEgress, VmsReachOnlyWhatTheirPoolAllowsAndNeverTheHostANeighbourOrAnotherAddress) {
    OutsideWorld outside("198.20." + std::to_string(getpid() % 256));
    HostListener host;
    ASSERT_FALSE(host.port().empty());
    config.network.resolvers = {outside.address};
    config.pools[0].allowedDestinations = {"allowed.test"};
    start();
    ASSERT_TRUE(server.waitFor([&] { return server.counts("vm").unallocated >= 2; }, 300s)) << "the pool did not fill";
    ASSERT_TRUE(server.waitFor([&] { return server.counts("closed").unallocated >= 1; }, 300s));
    EXPECT_GE(backend->counts().restored, 2u) << "the VMs with egress should have been restored";
    ASSERT_TRUE(outside.serving());
    const std::string port = std::to_string(kOutsidePort);
    const Ipv4Subnet subnet = Ipv4Subnet::parse(config.network.subnet);
    const std::string gateway = Ipv4Subnet::toString(subnet.gateway());

    // A card of its own, its own MAC, the daemon's resolver, and out
    // through the host's NAT to what its pool's list names.
    const std::string interfaces =
        "str(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]))";
    EXPECT_EQ(in("vm", "vm-a", interfaces), "['eth0', 'lo']");
    EXPECT_EQ(in("vm", "vm-a", "open('/etc/resolv.conf').read()"), "nameserver " + gateway + "\n");
    EXPECT_EQ(in("vm", "vm-a", "resolve('allowed.test')"), "resolved " + outside.address);
    EXPECT_EQ(in("vm", "vm-a", "fetch('http://allowed.test:" + port + "/')"), "answered " + outside.hostAddress);
    const std::string other = in("vm", "vm-a", "resolve('other.test')");
    EXPECT_EQ(other.rfind("unresolved", 0), 0u) << "a name off the list resolved: " << other;
    EXPECT_TRUE(blocked(in("vm", "vm-a", "connect('" + outside.second + "', " + port + ")"))) << "an address off the list";
    EXPECT_TRUE(blocked(in("vm", "vm-b", "connect('" + outside.address + "', " + port + ")")))
        << "what one VM resolved is not another's";
    const std::string macA = in("vm", "vm-a", "open('/sys/class/net/eth0/address').read().strip()");
    const std::string macB = in("vm", "vm-b", "open('/sys/class/net/eth0/address').read().strip()");
    EXPECT_EQ(macA.rfind("52:54:", 0), 0u) << macA;
    EXPECT_NE(macA, macB) << "two VMs restored from one template share a MAC";
    EXPECT_NE(macA, libvirt::kTemplateMac) << "the guest kept the template's MAC";

    // Disabled: no card at all.
    EXPECT_EQ(in("closed", "vm-c", interfaces), "['lo']");
    EXPECT_TRUE(blocked(in("closed", "vm-c", "fetch('" + outside.url() + "')")));

    // A neighbour VM: a listens, reaches itself; b cannot reach it.
    const std::string address = in("vm", "vm-a", listenAndTellAddress(outside.address));
    ASSERT_EQ(address.rfind("10.215.", 0), 0u) << address;
    EXPECT_EQ(in("vm", "vm-a", "connect('" + address + "', 9000)"), "connected");
    EXPECT_TRUE(blocked(in("vm", "vm-b", "connect('" + address + "', 9000)")));

    // The host, at the bridge's address and at its address towards the world.
    for (const std::string& hostAddress : {gateway, outside.hostAddress})
        EXPECT_TRUE(blocked(in("vm", "vm-b", "connect('" + hostAddress + "', " + host.port() + ")"))) << hostAddress;

    // Code in a VM runs as root and may take another address or MAC: b
    // posing as a, whose list lets it reach the world's server, still
    // sends nothing past its bridge port.
    EXPECT_EQ(in("vm", "vm-a", "connect('" + outside.address + "', " + port + ")"), "connected");
    auto retake = [&](const std::string& mac, const std::string& ip) {
        return "import sys; sys.path.insert(0, '/opt/sessiond/agent'); import sessiond_network; "
               "sessiond_network.configure({'mac': '" + mac + "', 'address': '" + ip + "', 'prefixLength': " +
               std::to_string(subnet.prefixLength) + ", 'gateway': '" + gateway + "', 'resolvConf': ''}); 'retaken'";
    };
    EXPECT_EQ(in("vm", "vm-b", retake(macB, address)), "retaken");
    EXPECT_TRUE(blocked(in("vm", "vm-b", "connect('" + outside.address + "', " + port + ")"))) << "a's address got out";
    EXPECT_EQ(in("vm", "vm-b", retake(macA, address)), "retaken");
    EXPECT_TRUE(blocked(in("vm", "vm-b", "connect('" + outside.address + "', " + port + ")")))
        << "a's MAC and address got out of b's port";

    // Stopping removes the bridge, the tables and every VM's tap.
    server.stop();
    EXPECT_FALSE(interfaceExists(config.network.bridge));
    EXPECT_FALSE(nftTableExists(EgressNetwork::tableName(config.network)));
    for (const auto& link : std::filesystem::directory_iterator("/sys/class/net"))
        EXPECT_NE(link.path().filename().string().rfind(hostInterfacePrefix(subnet), 0), 0u)
            << link.path() << " is left";
}

}  // namespace
