// sessiond: a self-hosted session-pool daemon with Azure Container Apps
// dynamic sessions' wire API.

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include <boost/asio.hpp>
#include <spdlog/spdlog.h>

#include "sessiond/api/routes.hpp"
#include "sessiond/config.hpp"
#include "sessiond/http/server.hpp"
#include "sessiond/pool/pool.hpp"
#include "sessiond/pool/pool_store.hpp"
#include "sessiond/sandbox/libvirt/libvirt_backend.hpp"
#include "sessiond/sandbox/namespace/namespace_backend.hpp"

namespace {

constexpr auto kShutdownDeadline = std::chrono::seconds(30);

void usage() {
    std::cerr << "usage: sessiond --config FILE [--check]\n"
                 "  --config FILE  the JSON configuration (see docs/configuration.md)\n"
                 "  --check        validate the configuration and exit\n";
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

}  // namespace

int main(int argc, char** argv) {
    std::string configPath;
    bool checkOnly = false;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--config" && i + 1 < argc)
            configPath = argv[++i];
        else if (arg == "--check")
            checkOnly = true;
        else {
            usage();
            return 2;
        }
    }
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
    if (!isLoopback(config.listen.address)) {
        std::cerr << "sessiond: invalid configuration: listen.address: '" << config.listen.address
                  << "' is not a loopback address; without API keys sessiond serves only this host\n";
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

    boost::asio::io_context io(1);
    sessiond::BackendPaths paths{executableDirectory() / "sessiond-nsinit", findAgentDirectory(config)};
    // A backend is made when a pool first needs it, so a host without libvirt
    // runs namespace pools, and the reverse.
    std::optional<sessiond::NamespaceBackend> namespaceBackend;
    std::optional<sessiond::LibvirtBackend> libvirtBackend;
    auto backendFor = [&](const std::string& name) -> sessiond::SandboxBackend& {
        sessiond::SandboxBackend* backend = nullptr;
        if (name == "namespace") {
            if (namespaceBackend) return *namespaceBackend;
            backend = &namespaceBackend.emplace(io, config, paths);
        } else if (name == "libvirt") {
            if (libvirtBackend) return *libvirtBackend;
            backend = &libvirtBackend.emplace(io, config);
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

    std::optional<sessiond::PoolManager> pools;
    try {
        pools.emplace(io, poolConfigs, backendFor, store ? &*store : nullptr);
    } catch (const std::exception& e) {
        spdlog::critical("cannot start the sandbox backends: {}", e.what());
        return 1;
    }

    sessiond::http::Router router;
    sessiond::api::addRoutes(router, *pools, config.http);
    sessiond::http::HttpServer server(io, config.http, router);
    try {
        server.listen(config.listen.address, config.listen.port, config.listen.tls);
    } catch (const std::exception& e) {
        spdlog::critical("cannot listen on {}:{}: {}", config.listen.address, config.listen.port, e.what());
        return 1;
    }
    spdlog::info("sessiond listening on {}://{}:{} (loopback only: no API keys are configured)",
                 config.listen.tls ? "https" : "http", config.listen.address, server.port());
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

    io.run();
    pools->shutdown();
    return 0;
}
