#pragma once
// A stand-in for the world outside the host, for the egress tests of both
// backends (docs/networking.md): a network namespace of the test's own,
// reached from the host through a veth pair, running an HTTP server that
// answers with the address a request came from and a DNS server for a few
// names of its own. Also what sessions run to probe a connection, and a
// listener of the host's that no session may reach.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netinet/in.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sessiond/host_tool.hpp"
#include "sessiond/ipv4_subnet.hpp"
#include "http_client.hpp"

extern char** environ;

namespace sessiond::testing {

constexpr int kOutsidePort = 8080;

// Debian's interpreter, as the sandboxes use (the first python3 on PATH may be another).
constexpr const char* kPython = "/usr/bin/python3";

inline bool interfaceExists(const std::string& name) { return std::filesystem::exists("/sys/class/net/" + name); }

inline bool nftTableExists(const std::string& table) {
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

// The world's DNS server, on its first address: allowed.test is that
// address, other.test the second; every other name does not exist.
inline const std::string kDnsServer = R"(
import socket, struct, sys
first, second = sys.argv[1], sys.argv[2]
names = {b'allowed.test': first, b'other.test': second}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((first, 53))
while True:
    q, peer = s.recvfrom(512)
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]]); i += 1 + q[i]
    qtype = struct.unpack('>H', q[i + 1:i + 3])[0]
    name = b'.'.join(labels).lower()
    found = name in names
    answer = b''
    if found and qtype == 1:
        answer = b'\xc0\x0c' + struct.pack('>HHIH', 1, 1, 5, 4) + socket.inet_aton(names[name])
    header = struct.pack('>HHHHHH', struct.unpack('>H', q[:2])[0], 0x8180 | (0 if found else 3), 1,
                         1 if answer else 0, 0, 0)
    s.sendto(header + q[12:i + 5] + answer, peer)
)";

// The outside world: a network namespace with one veth pair to the host.
// The host's end has .1, the world's .2, .3 and .4 of `subnet` (a /24).
class OutsideWorld {
public:
    explicit OutsideWorld(const std::string& prefix)
        : hostAddress(prefix + ".1"), address(prefix + ".2"), second(prefix + ".3"), third(prefix + ".4") {
        runHostTool({"ip", "netns", "add", name_});
        runHostTool({"ip", "-batch", "-"}, "link add " + link_ + " type veth peer name eth0 netns " + name_ + "\n" +
                                                "addr add " + hostAddress + "/24 dev " + link_ + "\n" + "link set " +
                                                link_ + " up\n");
        runHostTool({"ip", "-n", name_, "-batch", "-"},
                    "addr add " + address + "/24 dev eth0\naddr add " + second + "/24 dev eth0\naddr add " + third +
                        "/24 dev eth0\nlink set eth0 up\nlink set lo up\n");
        const std::string server =
            "import http.server\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        body = self.client_address[0].encode()\n"
            "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
            "        self.end_headers(); self.wfile.write(body)\n"
            "    def log_message(self, *args): pass\n"
            "http.server.ThreadingHTTPServer(('', " + std::to_string(kOutsidePort) + "), H).serve_forever()\n";
        server_.emplace(std::vector<std::string>{"ip", "netns", "exec", name_, kPython, "-c", server});
        dns_.emplace(std::vector<std::string>{"ip", "netns", "exec", name_, kPython, "-c", kDnsServer, address, second});
    }
    ~OutsideWorld() {
        server_.reset();
        dns_.reset();
        try {
            runHostTool({"ip", "netns", "del", name_});  // takes its end of the pair, and so the pair, with it
        } catch (const std::exception&) {
        }
        // The namespace's deletion takes the pair with it, in its own time.
        try {
            if (interfaceExists(link_)) runHostTool({"ip", "link", "del", link_});
        } catch (const std::exception&) {
            if (interfaceExists(link_)) ADD_FAILURE() << "the outside world's link " << link_ << " is left";
        }
    }

    // Its HTTP server's address.
    std::string url() const { return "http://" + address + ":" + std::to_string(kOutsidePort) + "/"; }

    // Whether its HTTP server answers, waiting up to 10 s for it to listen.
    bool serving() {
        for (int attempt = 0; attempt < 100; ++attempt) {
            if (run("import urllib.request; urllib.request.urlopen('" + url() + "', timeout=1)")) return true;
            ::usleep(100 * 1000);
        }
        return false;
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

    const std::string hostAddress, address, second, third;

private:
    const std::string name_ = "sessiond-test-outside-" + std::to_string(getpid());
    const std::string link_ = "so" + std::to_string(getpid());
    std::optional<Child> server_, dns_;
};

// What the sessions run: a probe that prints what became of a connection.
inline const std::string kProbe = R"(
import socket, urllib.request
def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return "connected"
    except OSError as e:
        return "blocked: " + str(e)
def resolve(name):
    try:
        return "resolved " + socket.gethostbyname(name)
    except OSError as e:
        return "unresolved: " + str(e)
def fetch(url):
    try:
        return "answered " + urllib.request.urlopen(url, timeout=3).read().decode()
    except OSError as e:
        return "blocked: " + str(e)
)";

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

// The value of `expression` in the pool's session `identifier` (a Python
// one), after the probe's definitions; the answer's body when it fails.
inline std::string probeIn(std::uint16_t port, const std::string& pool, const std::string& identifier,
                           const std::string& expression) {
    HttpClient client(port);
    auto defined = client.execute(pool, identifier, kProbe);
    EXPECT_EQ(defined.status, 200) << defined.body;
    auto r = client.execute(pool, identifier, expression);
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200) return r.body;
    const auto result = r.json()["properties"].value("result", nlohmann::json());
    return result.is_string() ? result.get<std::string>() : r.body;
}

// A Python expression for a session: it listens on kNeighbourPort and
// gives its own address (the one it reaches `outsideAddress` from).
constexpr int kNeighbourPort = 9000;
inline std::string listenAndTellAddress(const std::string& outsideAddress) {
    return "srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
           "srv.bind(('0.0.0.0', " + std::to_string(kNeighbourPort) + ")); srv.listen(8); "
           "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
           "u.connect(('" + outsideAddress + "', 9)); u.getsockname()[0]";
}

// The names of the host's ends of the sessions' links (EgressPort) on `subnet`.
inline std::string hostInterfacePrefix(const Ipv4Subnet& subnet) {
    char prefix[16];
    std::snprintf(prefix, sizeof prefix, "sv%06x", subnet.network >> 8);
    return prefix;
}

}  // namespace sessiond::testing
