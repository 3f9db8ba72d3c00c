#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>

#include "nsinit.hpp"
#include "sessiond/ipv4_subnet.hpp"

namespace sessiond::nsinit {

namespace {

void setUp(int sock, const std::string& name) {
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (::ioctl(sock, SIOCGIFFLAGS, &ifr) != 0) die(name + " SIOCGIFFLAGS");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (::ioctl(sock, SIOCSIFFLAGS, &ifr) != 0) die(name + " SIOCSIFFLAGS");
}

sockaddr_in ipv4(const std::string& text, const std::string& step) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    if (::inet_pton(AF_INET, text.c_str(), &address.sin_addr) != 1) fail(step, "'" + text + "' is not an IPv4 address");
    return address;
}

}  // namespace

// A new network namespace has only "lo", and it is down; without egress the
// sandbox gets loopback and nothing else, so it cannot reach any other host.
void bringUpLoopback() {
    UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (sock.get() < 0) die("loopback socket");
    setUp(sock.get(), "lo");
}

// The session's end of its veth pair, which the daemon has moved into this
// namespace: its address, then up, then the default route through the host's
// bridge (docs/networking.md).
void configureInterface(const JailNetwork& network) {
    UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (sock.get() < 0) die("network socket");
    const std::string& name = network.interface;

    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    const sockaddr_in address = ipv4(network.address, "network address");
    std::memcpy(&ifr.ifr_addr, &address, sizeof address);
    if (::ioctl(sock.get(), SIOCSIFADDR, &ifr) != 0) die(name + " SIOCSIFADDR");
    sockaddr_in mask{};
    mask.sin_family = AF_INET;
    mask.sin_addr.s_addr = htonl((Ipv4Subnet{0, network.prefixLength}.mask()));
    std::memcpy(&ifr.ifr_netmask, &mask, sizeof mask);
    if (::ioctl(sock.get(), SIOCSIFNETMASK, &ifr) != 0) die(name + " SIOCSIFNETMASK");
    setUp(sock.get(), name);

    rtentry route{};
    sockaddr_in any{};
    any.sin_family = AF_INET;
    const sockaddr_in gateway = ipv4(network.gateway, "network gateway");
    std::memcpy(&route.rt_dst, &any, sizeof any);
    std::memcpy(&route.rt_genmask, &any, sizeof any);
    std::memcpy(&route.rt_gateway, &gateway, sizeof gateway);
    route.rt_flags = RTF_UP | RTF_GATEWAY;
    route.rt_dev = const_cast<char*>(name.c_str());
    if (::ioctl(sock.get(), SIOCADDRT, &route) != 0) die("default route via " + network.gateway);
}

}  // namespace sessiond::nsinit

namespace sessiond::nsinit {

// Without capabilities a container's root could not bind port 80, which
// most images' servers listen on. The setting is the namespace's own: the
// host's ports are not touched.
void allowAllPortsUnprivileged() {
    UniqueFd fd(::open("/proc/sys/net/ipv4/ip_unprivileged_port_start", O_WRONLY | O_CLOEXEC));
    if (!fd || ::write(fd.get(), "0", 1) != 1) die("ip_unprivileged_port_start");
}

}  // namespace sessiond::nsinit
