#pragma once
// Sockets made inside a sandbox's network namespace from the daemon: how the
// host reaches a custom container's server on the sandbox's own loopback,
// which nothing outside the namespace can otherwise reach.

#include <sys/types.h>

#include "sessiond/unique_fd.hpp"

namespace sessiond {

// The network namespace of `pid` (/proc/PID/ns/net), held open.
UniqueFd openNetworkNamespace(pid_t pid);

// A non-blocking IPv4 TCP socket that belongs to the namespace `netns`
// (from openNetworkNamespace): a socket stays in the namespace it was made
// in, so connecting it later from the daemon's own reaches the sandbox's.
// Throws std::runtime_error.
UniqueFd tcpSocketInNetworkNamespace(int netns);

// The first child of `pid`, or 0 when it has none yet.
pid_t firstChildOf(pid_t pid);

}  // namespace sessiond
