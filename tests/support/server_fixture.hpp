#pragma once
// Runs the real HTTP server, API routes and pool manager on an io_context
// thread, with whatever backend the test gives, as the daemon wires them.

#include <future>
#include <memory>
#include <thread>

#include <boost/asio.hpp>

#include "sessiond/api/routes.hpp"
#include "sessiond/config.hpp"
#include "sessiond/http/server.hpp"
#include "sessiond/pool/pool.hpp"
#include "sessiond/sandbox/namespace/namespace_backend.hpp"

namespace sessiond::testing {

class ServerFixture {
public:
    // `makeBackend` is called on the test thread before the io thread starts.
    // `store`, if given, records pool administration as the daemon's does.
    template <typename MakeBackend>
    void start(const Config& config, MakeBackend makeBackend, PoolStore* store = nullptr) {
        store_ = store;
        config_ = config;
        backend_ = makeBackend(io_);
        // The test's one backend serves every pool, whatever backend it names.
        pools_ = std::make_unique<PoolManager>(
            io_, config_.pools, [this](const std::string&) -> SandboxBackend& { return *backend_; }, metrics_, store_);
        api::addRoutes(router_, *pools_, config.http, metrics_);
        server_ = std::make_unique<http::HttpServer>(io_, config_.http, router_, http::Admission{},
                                                     api::recordAnswers(metrics_));
        server_->setForwarder(api::containerForwarder(*pools_, io_));
        server_->listen("127.0.0.1", 0);
        port_ = server_->port();
        pools_->start();
        work_.emplace(io_.get_executor());
        thread_ = std::thread([this] { io_.run(); });
    }

    // With the namespace backend, on the jail and agent this build made.
    void startNamespace(const Config& config, PoolStore* store = nullptr) {
        start(
            config,
            [this](boost::asio::io_context& io) {
                return std::make_unique<NamespaceBackend>(
                    io, config_, BackendPaths{SESSIOND_BINARY_DIR "/sessiond-nsinit", SESSIOND_BINARY_DIR "/agent"},
                    &metrics_);
            },
            store);
    }

    ~ServerFixture() { stop(); }

    // Graceful stop, as on SIGTERM: drain HTTP, then destroy every sandbox.
    void stop() {
        if (!thread_.joinable()) return;
        call([this] {
            server_->stop(std::chrono::seconds(10), [this] { pools_->shutdown(); });
        });
        // Wait until the pools are shut down, then let the io thread finish.
        for (int i = 0; i < 200; ++i) {
            bool done = call([this] { return server_->openConnections() == 0; });
            if (done) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        call([this] { pools_->shutdown(); });
        work_.reset();
        io_.stop();
        thread_.join();
        server_.reset();
        pools_.reset();
        backend_.reset();
    }

    // Runs `fn` on the io thread and returns its result.
    template <typename Fn>
    auto call(Fn fn) -> decltype(fn()) {
        std::packaged_task<decltype(fn())()> task(std::move(fn));
        auto future = task.get_future();
        boost::asio::post(io_, [&task] { task(); });
        return future.get();
    }

    PoolCounts counts(const std::string& pool) {
        return call([&] { return pools_->find(pool)->counts(); });
    }

    // Polls, on the calling thread, until `predicate` holds or the timeout passes.
    template <typename Predicate>
    bool waitFor(Predicate predicate, std::chrono::milliseconds timeout) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            if (predicate()) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return predicate();
    }

    std::uint16_t port() const { return port_; }
    SandboxBackend& backend() { return *backend_; }
    boost::asio::io_context& io() { return io_; }

private:
    boost::asio::io_context io_;
    Config config_;
    std::unique_ptr<SandboxBackend> backend_;
    PoolStore* store_ = nullptr;
    metrics::Registry metrics_;  // before the pools and the server, which use it
    std::unique_ptr<PoolManager> pools_;
    http::Router router_;
    std::unique_ptr<http::HttpServer> server_;
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
    std::thread thread_;
    std::uint16_t port_ = 0;
};

}  // namespace sessiond::testing
