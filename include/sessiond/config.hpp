#pragma once
// The daemon's configuration, parsed from JSON (config/sessiond.json is the
// documented example; docs/configuration.md describes every field).
// parseConfig() validates every field and throws ConfigError naming the field.

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sessiond {

class ConfigError : public std::runtime_error {
public:
    ConfigError(const std::string& field, const std::string& problem)
        : std::runtime_error(field + ": " + problem), field_(field) {}
    const std::string& field() const { return field_; }

private:
    std::string field_;
};

// PEM files, read once when the listener starts.
struct TlsConfig {
    std::filesystem::path certificateFile;  // the certificate, then any intermediates
    std::filesystem::path privateKeyFile;   // unencrypted: the daemon never prompts
};

struct ListenConfig {
    std::string address = "127.0.0.1";
    std::uint16_t port = 8080;
    std::optional<TlsConfig> tls;  // set: HTTPS only on this listener
};

struct HttpConfig {
    std::size_t maxConnections = 1024;
    std::size_t maxHeaderBytes = 16 * 1024;
    std::size_t maxBodyBytes = 8 * 1024 * 1024;      // JSON and other requests
    std::size_t maxUploadBytes = 128 * 1024 * 1024;  // file uploads (Azure: 128 MB), multipart framing aside
    // A download is held whole in memory; a sparse file in a session could
    // otherwise claim far more than the session's disk limit.
    std::size_t maxDownloadBytes = 256 * 1024 * 1024;
    std::chrono::seconds readTimeout{30};      // to receive a request's header, and again its body
    std::chrono::seconds keepAliveTimeout{60}; // idle connection between requests
    // A request forwarded to a custom container (docs/custom-containers.md):
    // how long either side may stay silent, mid-request or mid-answer,
    // before the exchange is cut. Bodies stream and have no size limit.
    std::chrono::seconds forwardIdleTimeout{240};
};

// Who may call what: a session executor uses the data plane (sessions,
// code, files); a pool administrator also creates, changes and deletes pools.
enum class Role { SessionExecutor, PoolAdministrator };

// One API key, as the configuration stores it: never the key itself, only
// its SHA-256.
struct ApiKeyEntry {
    std::string name;  // for logs: which key was used, never the key
    Role role = Role::SessionExecutor;
    std::array<unsigned char, 32> sha256{};
    std::vector<std::string> pools;  // the pools it may use; empty: all
};

struct AuthConfig {
    std::vector<ApiKeyEntry> keys;
    // More keys, in a file of its own ({"keys": [...]}) that SIGHUP re-reads.
    std::filesystem::path keyFile;
};

struct ResourceLimits {
    double cpus = 1.0;                 // cgroup CPU quota, in cores
    std::uint64_t memoryBytes = 1024ull << 20;
    std::uint64_t pids = 256;
    std::uint64_t openFiles = 1024;    // RLIMIT_NOFILE
    std::uint64_t tmpfsBytes = 256ull << 20;  // each of /mnt/data and /tmp

    bool operator==(const ResourceLimits&) const = default;
};

struct NamespaceSandboxConfig {
    std::filesystem::path interpreter = "/usr/bin/python3";
    // Host paths mounted read-only into the sandbox at the same place.
    // Entries that do not exist on the host are skipped.
    std::vector<std::string> readOnlyPaths = {
        "/usr",               "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",  "/etc/localtime",    "/etc/matplotlibrc", "/etc/mime.types",
        "/etc/ssl/certs",     "/etc/python3",      "/etc/python3.11",   "/etc/fonts",
        "/etc/resolv.conf",   "/etc/nsswitch.conf"};
    std::uint32_t sandboxUid = 1000;   // inside the sandbox
    std::uint32_t hostUidBase = 600000; // inside uids 0..65535 map to base.. on the host
    bool seccomp = true;
    // Fork each sandbox from its pool's zygote (a warm interpreter) rather
    // than start a fresh interpreter; see docs/architecture.md ("Zygote").
    bool zygote = true;
    // Sandboxes starting at once, all pools together; the rest wait their
    // turn (docs/architecture.md, "Starting in turns"). 0: twice the host's cores.
    std::size_t maxConcurrentStarts = 0;
};

struct LibvirtConfig {
    std::string uri = "qemu:///system";
    // "auto": KVM when /dev/kvm can run guests, else TCG; "kvm" or "tcg" to force.
    std::string accelerator = "auto";
    // Built guest images (see docs/microvm.md); the daemon boots <dir>/current.
    std::filesystem::path imageDirectory = "/var/lib/sessiond/images";
    // Per-VM files: copy-on-write disk layers, agent sockets, console logs;
    // and each pool template's saved VM.
    std::filesystem::path runtimeDirectory = "/var/lib/sessiond/vms";
    // "restore": new VMs are restored from a VM saved once per pool template
    // (booted, warmed up, saved); "boot": every VM boots.
    std::string start = "restore";
    // VMs starting (booting or restoring) at once; 0: the host's cores.
    std::size_t maxConcurrentStarts = 0;
};

// The host side of sessions with egress (docs/networking.md): a bridge with
// the subnet's first address, NAT to the host's routes, and nftables rules
// that keep sessions from each other and from the host. Made when the first
// such session starts.
struct NetworkConfig {
    std::string bridge = "sessiond0";   // also names the nftables table
    std::string subnet = "10.213.0.0/16";  // IPv4; the first address is the bridge's
    // Where the sessions' resolver (on the bridge's address) sends queries:
    // "ip" or "ip:port" ("[ip]:port" for IPv6). Empty: the nameservers of
    // the host's /etc/resolv.conf.
    std::vector<std::string> resolvers;
};

// A custom container's health check (Azure's probes[]; docs/custom-containers.md).
struct ContainerProbe {
    enum class Type { Startup, Liveness };
    Type type = Type::Liveness;
    // httpGet: passes on an answer from 200 to 399; tcpSocket: on a
    // connection accepted.
    bool httpGet = true;
    std::string path = "/";
    std::uint16_t port = 0;
    std::vector<std::pair<std::string, std::string>> httpHeaders;
    std::uint32_t failureThreshold = 3;
    std::uint32_t successThreshold = 1;
    std::chrono::seconds initialDelay{0};
    std::chrono::seconds period{10};
    std::chrono::seconds timeout{1};

    bool operator==(const ContainerProbe&) const = default;
};

// An environment variable of a custom container: a value, or the name of one
// of the pool's secrets.
struct ContainerEnvVar {
    std::string name;
    std::string value;
    std::string secretRef;

    bool operator==(const ContainerEnvVar&) const = default;
};

// A pool's secret: a value given in the definition, or a file on the host
// read each time a container starts, so the value stays out of the
// configuration and can change without redefining the pool.
struct PoolSecret {
    std::string name;
    std::string value;
    std::filesystem::path file;

    bool operator==(const PoolSecret&) const = default;
};

// customContainerTemplate (containerType CustomContainer): one container
// per session, its HTTP server on targetPort receiving the pool's requests.
struct ContainerTemplate {
    // An OCI image layout directory or an OCI or docker archive on the host
    // (see sandbox/container_image.hpp for the reference syntax).
    std::string image;
    std::string name;
    std::vector<std::string> command;  // replaces the image's entrypoint
    std::vector<std::string> args;     // replaces the image's cmd
    std::vector<ContainerEnvVar> env;
    std::uint16_t targetPort = 0;
    std::vector<ContainerProbe> probes;

    bool operator==(const ContainerTemplate&) const = default;
};

struct PoolConfig {
    std::string name;
    std::string containerType = "PythonLTS";
    std::string backend = "namespace";
    std::size_t maxConcurrentSessions = 10;
    std::size_t readySessionInstances = 2;
    std::chrono::seconds cooldownPeriod{300};
    std::chrono::seconds sandboxStartTimeout{60};
    std::chrono::seconds defaultExecutionTimeout{100};
    std::chrono::seconds maxExecutionTimeout{220};
    std::size_t maxOutputChars = 4096;
    // Modules the interpreter imports before the session counts as ready.
    std::vector<std::string> preloadModules;
    ResourceLimits resources;
    // sessionNetworkConfiguration.status EgressEnabled: sessions reach
    // outside hosts through the egress network (docs/networking.md).
    bool egressEnabled = false;
    // sessionNetworkConfiguration.allowedDestinations: with entries, an
    // enabled session reaches only these names, addresses and CIDRs
    // (sandbox/egress_allow_list.hpp); empty: anything.
    std::vector<std::string> allowedDestinations;
    // containerType CustomContainer only.
    ContainerTemplate container;
    std::vector<PoolSecret> secrets;
    // lifecycleType OnContainerExit (custom containers): a session lasts
    // until its container exits, or maxAlivePeriod after it began, however
    // busy; Timed: until cooldownPeriod passes without a request.
    bool endOnContainerExit = false;
    std::chrono::seconds maxAlivePeriod{3600};

    bool customContainer() const { return containerType == "CustomContainer"; }
};

// The interpreter the agent runs for a pool's containerType: "python"
// (PythonLTS), "node" (NodeLTS) or "shell" (Shell).
std::string agentLanguage(const PoolConfig& pool);

// The audit log (docs/hardening.md, "Audit log"): one JSON line per request
// and per session lifecycle event.
// Custom containers' images, unpacked once each, and each session's
// writable layer over its image (docs/custom-containers.md).
struct ContainerConfig {
    std::filesystem::path directory = "/var/lib/sessiond/containers";
};

struct AuditConfig {
    bool enabled = true;
    // Appended to, created with mode 0600; SIGHUP reopens it (after a
    // rotation). Empty: the daemon's own log, on standard error.
    std::filesystem::path file;
    // The code of each execution request, in its request's line. Off by
    // default: code can carry secrets of its own.
    bool includeCode = false;
};

struct Config {
    ListenConfig listen;
    HttpConfig http;
    AuthConfig auth;
    std::string logLevel = "info";
    AuditConfig audit;
    // Name of the cgroup (under each hierarchy) that holds the sandboxes.
    std::string cgroupName = "sessiond";
    // Directory holding the agent's Python sources; empty = found beside the binary.
    std::filesystem::path agentDirectory;
    // Where pools created, changed or deleted through the API are kept across
    // restarts (pools.json); empty: such changes last until the daemon stops.
    std::filesystem::path stateDirectory;
    NamespaceSandboxConfig namespaceSandbox;
    LibvirtConfig libvirt;
    NetworkConfig network;
    ContainerConfig containers;
    std::vector<PoolConfig> pools;
};

Config parseConfig(const nlohmann::json& document);
// A JSON file's document; throws ConfigError naming the file (`what` says
// which file it is meant to be) if it cannot be read or parsed.
nlohmann::json readJsonFile(const std::filesystem::path& file, const std::string& what);

// API key entries: a JSON array of {"name","role","sha256","pools"}, from the
// configuration's auth.keys or a key file; `path` prefixes errors.
std::vector<ApiKeyEntry> parseApiKeys(const nlohmann::json& keys, const std::string& path);
// A key file's entries; throws ConfigError naming the file and field.
std::vector<ApiKeyEntry> loadKeyFile(const std::filesystem::path& file);

// One pool's definition, as in the configuration's `pools` array and in the
// pool administration API; `path` prefixes the field names in errors.
PoolConfig parsePool(const nlohmann::json& definition, const std::string& path);
// The definition parsePool() reads back to the same PoolConfig.
nlohmann::json poolDefinition(const PoolConfig& pool);
Config loadConfig(const std::filesystem::path& file);

}  // namespace sessiond
