#pragma once
// A SandboxBackend fake for pool and API tests: sandboxes start after a set
// delay (or fail), answer executions with their own id and a counter, and can
// be made to die. It counts live sandboxes so tests can check nothing leaks.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>

#include <boost/asio.hpp>

#include "sessiond/config.hpp"
#include "sessiond/sandbox/sandbox.hpp"

namespace sessiond::testing {

// Runs the handlers that are ready, such as those that destroy the sandboxes
// a pool retired: a test runs them while its FakeBackend still exists.
inline void drain(boost::asio::io_context& io) {
    io.restart();
    io.poll();
}

class FakeBackend : public SandboxBackend {
public:
    explicit FakeBackend(boost::asio::io_context& io) : io_(io) {}

    std::chrono::milliseconds startDelay{0};
    int failNextStarts = 0;
    bool startsHang = false;
    std::chrono::milliseconds executeDelay{0};  // how long each execution runs
    // connect() reaches this port on the host's loopback, whatever port it
    // is asked for (0: the one asked for): a server the test runs stands in
    // for a custom container.
    std::uint16_t connectPort = 0;
    std::size_t connects = 0;

    std::size_t created = 0;
    std::size_t describes = 0;
    std::set<std::string> live;  // ids of sandboxes not yet destroyed

    std::string name() const override { return "fake"; }
    void cleanupLeftovers() override {}
    std::unique_ptr<Sandbox> create(const PoolConfig&, const std::string& id) override;

    // Makes the sandbox end as if its process died.
    void kill(const std::string& id);

    class FakeSandbox;
    std::map<std::string, FakeSandbox*> sandboxes;

private:
    boost::asio::io_context& io_;
};

class FakeBackend::FakeSandbox : public Sandbox {
public:
    FakeSandbox(FakeBackend& backend, std::string id, bool fail)
        : backend_(backend), id_(std::move(id)), fail_(fail), timer_(backend.io_) {
        backend_.live.insert(id_);
        backend_.sandboxes[id_] = this;
    }
    ~FakeSandbox() override {
        backend_.live.erase(id_);
        backend_.sandboxes.erase(id_);
        *alive_ = false;
    }
    const std::string& id() const override { return id_; }
    void start(ReadyHandler onReady) override {
        if (backend_.startsHang) return;
        timer_.expires_after(backend_.startDelay);
        timer_.async_wait([this, alive = alive_, onReady](boost::system::error_code ec) {
            if (!*alive) return;
            if (fail_) return onReady("fake start failure");
            ready_ = true;
            onReady("");
        });
    }
    void execute(ExecuteRequest request, ExecuteHandler onDone) override {
        auto alive = alive_;
        auto running = std::make_shared<boost::asio::steady_timer>(backend_.io_, backend_.executeDelay);
        running->async_wait([this, alive, running, request, onDone](boost::system::error_code) {
            if (!*alive) return onDone({"channel closed", {}, ""});
            ExecuteResult result;
            result.succeeded = true;
            result.stdoutText = request.code;
            result.result = {{"sandbox", id_}, {"count", ++executions_}};
            onDone({"", result, ""});
        });
    }
    void setExitHandler(ExitHandler onExit) override { onExit_ = std::move(onExit); }

    // A flat in-memory data directory.
    void listFiles(const std::string&, bool, Handler<std::vector<FileEntry>> onDone) override {
        std::vector<FileEntry> entries;
        for (const auto& [path, bytes] : files_) entries.push_back(entry(path));
        answer(std::move(onDone), Outcome<std::vector<FileEntry>>{"", entries, ""});
    }
    void statFile(const std::string& path, Handler<FileEntry> onDone) override {
        answer(std::move(onDone), files_.count(path) ? Outcome<FileEntry>{"", entry(path), ""} : missing<FileEntry>(path));
    }
    void readFile(const std::string& path, std::uint64_t maxBytes, Handler<FileContent> onDone) override {
        if (files_.count(path) && files_[path].size() > maxBytes)
            return answer(std::move(onDone), Outcome<FileContent>{"over the download limit", {}, "tooLarge"});
        answer(std::move(onDone), files_.count(path) ? Outcome<FileContent>{"", {entry(path), files_[path]}, ""}
                                                     : missing<FileContent>(path));
    }
    void writeFile(const std::string& path, std::string bytes, Handler<FileEntry> onDone) override {
        files_[path] = std::move(bytes);
        answer(std::move(onDone), Outcome<FileEntry>{"", entry(path), ""});
    }
    void deleteFile(const std::string& path, Handler<Done> onDone) override {
        answer(std::move(onDone), files_.erase(path) ? Outcome<Done>{} : missing<Done>(path));
    }
    void describe(Handler<nlohmann::json> onDone) override {
        ++backend_.describes;
        answer(std::move(onDone),
               Outcome<nlohmann::json>{"", {{"runtimes", {{{"name", "fake"}, {"version", "1"}}}},
                                            {"packages", nlohmann::json::array()}, {"kernel", nlohmann::json::object()}}, ""});
    }

    void connect(std::uint16_t port, Handler<UniqueFd> onDone) override {
        ++backend_.connects;
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(backend_.connectPort ? backend_.connectPort : port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
            return onDone({std::string("connect: ") + std::strerror(errno), UniqueFd(), ""});
        ::fcntl(fd.get(), F_SETFL, O_NONBLOCK);
        onDone({"", std::move(fd), ""});
    }

    void die() {
        if (ready_ && onExit_) onExit_("killed by the test");
    }
    int executions() const { return executions_; }

private:
    template <typename T>
    void answer(Handler<T> onDone, Outcome<T> outcome) {
        boost::asio::post(backend_.io_, [alive = alive_, onDone = std::move(onDone), outcome = std::move(outcome)] {
            onDone(*alive ? outcome : Outcome<T>{"channel closed", {}, ""});
        });
    }
    template <typename T>
    static Outcome<T> missing(const std::string& path) {
        return {"'" + path + "' does not exist", {}, "notFound"};
    }
    FileEntry entry(const std::string& path) {
        FileEntry e;
        e.path = e.name = path;
        e.size = files_[path].size();
        e.modifiedMs = 1700000000000;
        return e;
    }

    FakeBackend& backend_;
    std::map<std::string, std::string> files_;
    std::string id_;
    bool fail_;
    bool ready_ = false;
    int executions_ = 0;
    boost::asio::steady_timer timer_;
    ExitHandler onExit_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

inline std::unique_ptr<Sandbox> FakeBackend::create(const PoolConfig&, const std::string& id) {
    ++created;
    bool fail = failNextStarts > 0;
    if (fail) --failNextStarts;
    return std::make_unique<FakeSandbox>(*this, id, fail);
}

inline void FakeBackend::kill(const std::string& id) {
    auto it = sandboxes.find(id);
    if (it != sandboxes.end()) it->second->die();
}

}  // namespace sessiond::testing
