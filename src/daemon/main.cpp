// sessiond: a self-hosted session-pool daemon with Azure Container Apps
// dynamic sessions' wire API.

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include <boost/asio.hpp>
#include <spdlog/spdlog.h>

#include "sessiond/api/authorizer.hpp"
#include "sessiond/audit/audit_log.hpp"
#include "sessiond/api/routes.hpp"
#include "sessiond/auth/api_keys.hpp"
#include "sessiond/config.hpp"
#include "sessiond/instance_lock.hpp"
#include "sessiond/http/server.hpp"
#include "sessiond/pool/pool.hpp"
#include "sessiond/pool/pool_store.hpp"
#include "sessiond/sandbox/libvirt/libvirt_backend.hpp"
#include "sessiond/sandbox/namespace/namespace_backend.hpp"

namespace {

constexpr auto kShutdownDeadline = std::chrono::seconds(30);

void usage() {
    std::cerr << "usage: sessiond --config FILE [--check]\n"
                 "       sessiond --new-key NAME [--role SessionExecutor|PoolAdministrator] [--pools A,B]\n"
                 "       sessiond --hash-key < KEY\n"
                 "  --config FILE  the JSON configuration (see docs/configuration.md)\n"
                 "  --check        validate the configuration and exit\n"
                 "  --new-key      make an API key: prints the key (give it to the client) and its\n"
                 "                 entry for auth.keys or the key file (which holds only its hash)\n"
                 "  --hash-key     print the SHA-256 of a key read from standard input\n";
}

// Prints a new key once, and the entry that lets it in; the key itself is
// not kept anywhere.
int newKey(const std::string& name, const std::string& role, const std::string& pools) {
    nlohmann::json entry = {{"name", name}, {"role", role}};
    if (!pools.empty()) {
        entry["pools"] = nlohmann::json::array();
        std::stringstream list(pools);
        for (std::string pool; std::getline(list, pool, ',');) entry["pools"].push_back(pool);
    }
    const std::string key = sessiond::newApiKey();
    entry["sha256"] = sessiond::toHex(sessiond::sha256(key));
    try {
        sessiond::parseApiKeys(nlohmann::json::array({entry}), "--new-key");
    } catch (const sessiond::ConfigError& e) {
        std::cerr << "sessiond: " << e.what() << "\n";
        return 2;
    }
    std::cout << "key:   " << key << "\nentry: " << entry.dump() << "\n";
    return 0;
}

int hashKey() {
    std::string key;
    std::getline(std::cin, key);
    if (key.empty()) {
        std::cerr << "sessiond: --hash-key reads the key from standard input\n";
        return 2;
    }
    std::cout << sessiond::toHex(sessiond::sha256(key)) << "\n";
    return 0;
}

// The configuration's keys and the key file's, together.
sessiond::ApiKeyRing loadKeys(const sessiond::Config& config) {
    auto keys = config.auth.keys;
    if (!config.auth.keyFile.empty()) {
        for (auto& entry : sessiond::loadKeyFile(config.auth.keyFile)) {
            for (const auto& other : keys)
                if (other.name == entry.name)
                    throw sessiond::ConfigError(config.auth.keyFile.string(),
                                                "key '" + entry.name + "' is also named in auth.keys");
            keys.push_back(std::move(entry));
        }
    }
    return sessiond::ApiKeyRing(std::move(keys));
}

std::filesystem::path executableDirectory() {
    return std::filesystem::read_symlink("/proc/self/exe").parent_path();
}

// The build tree has agent/ beside the binary; an installed tree has it there too.
std::filesystem::path findAgentDirectory(const sessiond::Config& config) {
    if (!config.agentDirectory.empty()) return config.agentDirectory;
    return executableDirectory() / "agent";
}

bool isLoopback(const std::string& address) {
    boost::system::error_code ec;
    auto parsed = boost::asio::ip::make_address(address, ec);
    return !ec && parsed.is_loopback();
}

// Each session holds a few fds in the daemon (agent channel, pidfd, its
// connection's socket): a thousand sessions need more than the usual soft
// limit of 1024, and the hard limit is there for the asking.
void raiseOpenFileLimit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    if (limit.rlim_cur < limit.rlim_max) {
        const auto before = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &limit) == 0)
            spdlog::debug("open file limit raised from {} to {}", before, limit.rlim_cur);
    }
    if (limit.rlim_max < 16384)
        spdlog::warn("the open file limit is {}, about {} sessions' worth (raise LimitNOFILE or ulimit -Hn)",
                     limit.rlim_max, limit.rlim_max / 4);
}

}  // namespace

int main(int argc, char** argv) {
    std::string configPath, keyName, keyRole = "SessionExecutor", keyPools;
    bool checkOnly = false, hashOnly = false;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--config" && i + 1 < argc)
            configPath = argv[++i];
        else if (arg == "--check")
            checkOnly = true;
        else if (arg == "--new-key" && i + 1 < argc)
            keyName = argv[++i];
        else if (arg == "--role" && i + 1 < argc)
            keyRole = argv[++i];
        else if (arg == "--pools" && i + 1 < argc)
            keyPools = argv[++i];
        else if (arg == "--hash-key")
            hashOnly = true;
        else {
            usage();
            return 2;
        }
    }
    if (!keyName.empty()) return newKey(keyName, keyRole, keyPools);
    if (hashOnly) return hashKey();
    if (configPath.empty()) {
        usage();
        return 2;
    }

    sessiond::Config config;
    try {
        config = sessiond::loadConfig(configPath);
    } catch (const sessiond::ConfigError& e) {
        std::cerr << "sessiond: invalid configuration: " << e.what() << "\n";
        return 2;
    }
    sessiond::ApiKeyRing keys;
    try {
        keys = loadKeys(config);
    } catch (const sessiond::ConfigError& e) {
        std::cerr << "sessiond: invalid configuration: " << e.what() << "\n";
        return 2;
    }
    if (keys.empty() && !isLoopback(config.listen.address)) {
        std::cerr << "sessiond: invalid configuration: listen.address: '" << config.listen.address
                  << "' is not a loopback address; without API keys (auth.keys or auth.keyFile) sessiond serves "
                     "only this host\n";
        return 2;
    }
    if (checkOnly) {
        std::cout << "configuration is valid\n";
        return 0;
    }

    spdlog::set_level(spdlog::level::from_str(config.logLevel));
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
    std::signal(SIGPIPE, SIG_IGN);
    if (geteuid() != 0) spdlog::warn("sessiond is not running as root; creating sandboxes will fail");
    raiseOpenFileLimit();

    // Taken before anything an earlier run left under this name is removed,
    // and released last.
    std::optional<sessiond::InstanceLock> instanceLock;
    try {
        instanceLock.emplace(sessiond::InstanceLock::kDefaultDirectory, config.cgroupName);
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }

    boost::asio::io_context io(1);
    sessiond::metrics::Registry metrics;
    sessiond::BackendPaths paths{executableDirectory() / "sessiond-nsinit", findAgentDirectory(config)};
    // A backend is made when a pool first needs it, so a host without libvirt
    // runs namespace pools, and the reverse.
    std::optional<sessiond::NamespaceBackend> namespaceBackend;
    std::optional<sessiond::LibvirtBackend> libvirtBackend;
    auto backendFor = [&](const std::string& name) -> sessiond::SandboxBackend& {
        sessiond::SandboxBackend* backend = nullptr;
        if (name == "namespace") {
            if (namespaceBackend) return *namespaceBackend;
            backend = &namespaceBackend.emplace(io, config, paths, &metrics);
        } else if (name == "libvirt") {
            if (libvirtBackend) return *libvirtBackend;
            backend = &libvirtBackend.emplace(io, config, &metrics);
        } else {
            throw std::runtime_error("no backend named '" + name + "'");
        }
        backend->cleanupLeftovers();
        return *backend;
    };

    std::optional<sessiond::PoolStore> store;
    std::vector<sessiond::PoolConfig> poolConfigs = config.pools;
    try {
        if (!config.stateDirectory.empty()) {
            store.emplace(config.stateDirectory / "pools.json");
            poolConfigs = store->overlay(config.pools);
        }
    } catch (const sessiond::ConfigError& e) {
        spdlog::critical("invalid pool state: {}", e.what());
        return 2;
    }
    if (!store) spdlog::info("no stateDirectory is configured: pools changed through the API last until sessiond stops");

    std::optional<sessiond::audit::AuditLog> audit;
    try {
        audit.emplace(config.audit);
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }

    std::optional<sessiond::PoolManager> pools;
    try {
        pools.emplace(io, poolConfigs, backendFor, metrics, store ? &*store : nullptr, &*audit);
    } catch (const std::exception& e) {
        spdlog::critical("cannot start the sandbox backends: {}", e.what());
        return 1;
    }

    sessiond::http::Router router;
    sessiond::api::addRoutes(router, *pools, config.http, metrics);
    sessiond::api::Authorizer authorizer(std::move(keys));
    sessiond::http::HttpServer server(io, config.http, router,
                                      [&authorizer](sessiond::http::Request& request,
                                                    const sessiond::http::RouteOptions& route) {
                                          return authorizer.admit(request, route);
                                      },
                                      sessiond::api::bothObservers(sessiond::api::recordAnswers(metrics),
                                                                   sessiond::api::auditAnswers(*audit)));
    server.setForwarder(sessiond::api::containerForwarder(*pools, io));
    try {
        server.listen(config.listen.address, config.listen.port, config.listen.tls);
    } catch (const std::exception& e) {
        spdlog::critical("cannot listen on {}:{}: {}", config.listen.address, config.listen.port, e.what());
        return 1;
    }
    const char* scheme = config.listen.tls ? "https" : "http";
    if (authorizer.keys().empty())
        spdlog::info("sessiond listening on {}://{}:{} (loopback only: no API keys are configured)", scheme,
                     config.listen.address, server.port());
    else
        spdlog::info("sessiond listening on {}://{}:{}; requests need one of {} API keys", scheme,
                     config.listen.address, server.port(), authorizer.keys().size());
    if (!authorizer.keys().empty() && !config.listen.tls && !isLoopback(config.listen.address))
        spdlog::warn("API keys travel in clear text to {}: configure listen.tls, or a TLS proxy in front",
                     config.listen.address);
    pools->start();

    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code ec, int signal) {
        if (ec) return;
        spdlog::info("received {}; finishing in-flight requests", strsignal(signal));
        server.stop(kShutdownDeadline, [&] {
            pools->shutdown();
            spdlog::info("sessiond stopped");
            io.stop();
        });
    });

    // SIGHUP re-reads the key file, so keys can be added and revoked without
    // a restart (a file that does not parse, or that would leave a daemon
    // reachable beyond loopback without keys, changes nothing), and reopens
    // the audit log, so it can be rotated.
    boost::asio::signal_set reload(io, SIGHUP);
    std::function<void()> awaitReload = [&] {
        reload.async_wait([&](boost::system::error_code ec, int) {
            if (ec) return;
            try {
                auto fresh = loadKeys(config);
                if (fresh.empty() && !isLoopback(config.listen.address))
                    spdlog::error("SIGHUP: the keys were not changed: none would be left on a non-loopback address");
                else {
                    spdlog::info("SIGHUP: {} API keys now (were {})", fresh.size(), authorizer.keys().size());
                    authorizer.replaceKeys(std::move(fresh));
                }
            } catch (const sessiond::ConfigError& e) {
                spdlog::error("SIGHUP: the keys were not changed: {}", e.what());
            }
            try {
                audit->reopen();
            } catch (const std::exception& e) {
                spdlog::error("SIGHUP: {}; still writing to the file open before", e.what());
            }
            awaitReload();
        });
    };
    awaitReload();

    io.run();
    pools->shutdown();
    return 0;
}
