"""A microVM's network card, configured from the host's "network" message
(docs/agent-protocol.md): its MAC address, IPv4 address, default route and
resolver. Ioctls, as the guest has no ip(8) (a minbase root), and as the
namespace sandbox's pid 1 does the same for its veth.

A VM restored from its pool's template has the template's card: the MAC
set here is the member's own, which the host's bridge rules expect."""

import fcntl
import ipaddress
import os
import re
import socket
import struct

SIOCSIFFLAGS, SIOCGIFFLAGS = 0x8914, 0x8913
SIOCSIFADDR, SIOCSIFNETMASK, SIOCSIFHWADDR = 0x8916, 0x891C, 0x8924
SIOCADDRT = 0x890B
IFF_UP = 0x1
RTF_UP, RTF_GATEWAY = 0x1, 0x2
ARPHRD_ETHER = 1
EEXIST = 17
# struct rtentry (linux/route.h) with native alignment; "0L" pads its end.
RTENTRY = "@L16s16s16sHhLPhPLLH0L"


class NetworkError(Exception):
    pass


def card_name():
    """The first Ethernet interface: the only card the host gives a VM."""
    for name in sorted(os.listdir("/sys/class/net")):
        try:
            with open(f"/sys/class/net/{name}/type") as f:
                if int(f.read()) == ARPHRD_ETHER and os.path.exists(f"/sys/class/net/{name}/device"):
                    return name
        except (OSError, ValueError):
            continue
    raise NetworkError("the VM has no network card (is the virtio_net driver loaded?)")


def _ifreq(name, payload=b""):
    return struct.pack("16s", name.encode()) + payload.ljust(16, b"\0")


def _sockaddr_in(address):
    return struct.pack("HH4s8x", socket.AF_INET, 0, ipaddress.IPv4Address(address).packed)


def _parse(message):
    mac, address, gateway = message.get("mac"), message.get("address"), message.get("gateway")
    prefix, resolv = message.get("prefixLength"), message.get("resolvConf", "")
    if not isinstance(mac, str) or not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac):
        raise NetworkError("mac must be six lower-case hex bytes joined by ':'")
    if not isinstance(prefix, int) or isinstance(prefix, bool) or not 1 <= prefix <= 30:
        raise NetworkError("prefixLength must be an integer from 1 to 30")
    try:
        interface = ipaddress.IPv4Interface(f"{address}/{prefix}")
        gateway = ipaddress.IPv4Address(gateway)
    except (ValueError, TypeError) as e:
        raise NetworkError(f"address and gateway must be IPv4 addresses: {e}")
    if gateway not in interface.network:
        raise NetworkError("the gateway must be on the address's subnet")
    if not isinstance(resolv, str):
        raise NetworkError("resolvConf must be a string")
    return bytes.fromhex(mac.replace(":", "")), interface, gateway, resolv


def configure(message):
    """Applies a "network" message; raises NetworkError saying what failed."""
    mac, interface, gateway, resolv = _parse(message)
    name = card_name()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        def ioctl(request, payload, what):
            try:
                return fcntl.ioctl(s, request, payload)
            except OSError as e:
                raise NetworkError(f"{what} of {name}: {e.strerror}")

        ioctl(SIOCSIFHWADDR, _ifreq(name, struct.pack("H", ARPHRD_ETHER) + mac), "setting the MAC address")
        ioctl(SIOCSIFADDR, _ifreq(name, _sockaddr_in(str(interface.ip))), "setting the address")
        ioctl(SIOCSIFNETMASK, _ifreq(name, _sockaddr_in(str(interface.netmask))), "setting the netmask")
        flags = struct.unpack("16sH", ioctl(SIOCGIFFLAGS, _ifreq(name), "reading the flags")[:18])[1]
        ioctl(SIOCSIFFLAGS, _ifreq(name, struct.pack("H", flags | IFF_UP)), "bringing up")
        any_address = _sockaddr_in("0.0.0.0")
        route = struct.pack(RTENTRY, 0, any_address, _sockaddr_in(str(gateway)), any_address,
                            RTF_UP | RTF_GATEWAY, 0, 0, 0, 0, 0, 0, 0, 0)
        try:
            fcntl.ioctl(s, SIOCADDRT, route)
        except OSError as e:
            if e.errno != EEXIST:
                raise NetworkError(f"adding the default route via {gateway}: {e.strerror}")
    # Replaced rather than written through: it may be a link into the image.
    temporary = "/etc/.resolv.conf.sessiond"
    with open(temporary, "w") as f:
        f.write(resolv)
    os.replace(temporary, "/etc/resolv.conf")
    return name
