#pragma once
// What every backend shares: a sandbox is something that starts a process or a
// VM running the sessiond agent and hands back the host end of the agent
// channel. Handshake, execution and exit reporting live here, once.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio.hpp>

#include "sessiond/sandbox/agent_channel.hpp"
#include "sessiond/sandbox/sandbox.hpp"

namespace sessiond {

class AgentSandbox : public Sandbox {
public:
    // Limits a backend can tell were hit, as counters that only grow: read
    // before and after each execution, a difference is named in the
    // execution's stderr (or its error), so a killed or refused process is
    // not a mystery to the caller. A limit of 0 is not counted.
    struct LimitCounters {
        std::uint64_t memoryLimitBytes = 0;
        std::uint64_t oomKills = 0;       // processes the kernel killed for memory
        std::uint64_t pidsLimit = 0;
        std::uint64_t pidsLimitHits = 0;  // forks refused at the limit
    };

    AgentSandbox(boost::asio::io_context& io, std::string id, std::chrono::milliseconds startTimeout);
    ~AgentSandbox() override;

    const std::string& id() const override { return id_; }
    void start(ReadyHandler onReady) override;
    void execute(ExecuteRequest request, ExecuteHandler onDone) override;
    void setExitHandler(ExitHandler onExit) override { onExit_ = std::move(onExit); }
    void listFiles(const std::string& directory, bool recursive, Handler<std::vector<FileEntry>> onDone) override;
    void statFile(const std::string& path, Handler<FileEntry> onDone) override;
    void readFile(const std::string& path, std::uint64_t maxBytes, Handler<FileContent> onDone) override;
    void writeFile(const std::string& path, std::string bytes, Handler<FileEntry> onDone) override;
    void deleteFile(const std::string& path, Handler<Done> onDone) override;
    void describe(Handler<nlohmann::json> onDone) override;

protected:
    using LaunchHandler = std::function<void(std::string error, std::optional<AgentChannel::Socket> channel)>;

    // Starts the process or VM and hands back the host end of the agent
    // channel (or an error), once, from the io_context thread; it may do so
    // before returning. Whatever it creates must be owned by members of the
    // subclass, so that destroying the sandbox releases it.
    virtual void launch(LaunchHandler onLaunched) = 0;

    // The agent answered: the sandbox is ready, just before its ReadyHandler runs.
    virtual void becameReady() {}

    // For subclasses: the process or VM ended.
    void reportExit(const std::string& reason);

    // An agent that said its hello before this sandbox existed (a VM
    // restored from a saved one) never says it again: the reply to this
    // request (a "snapshot" restore, docs/agent-protocol.md), sent once the
    // channel is up, stands in for it. nullopt: wait for the hello.
    virtual std::optional<nlohmann::json> handshakeRequest() { return std::nullopt; }

    // Requests the agent carries out after the handshake and before the
    // sandbox is ready, one after the other (a microVM's network card, then
    // its custom container); each reply must be of its request's type.
    virtual std::vector<nlohmann::json> setupRequests() { return {}; }

    // The current counters; a backend that can tell overrides it.
    virtual LimitCounters limitCounters() const { return {}; }

    boost::asio::io_context& io_;

private:
    void waitForAgent(ReadyHandler onReady);
    void runSetup(std::vector<nlohmann::json> requests, std::size_t next, std::function<void(std::string error)> onDone);
    // Sends one request and hands the reply, parsed, to `onDone`.
    template <typename T>
    void ask(nlohmann::json message, Outcome<T> (*parse)(const nlohmann::json&), Handler<T> onDone);
    void readFrom(std::string path, std::uint64_t maxBytes, std::shared_ptr<FileContent> content,
                  Handler<FileContent> onDone);
    void writeFrom(std::string path, std::shared_ptr<const std::string> bytes, std::size_t offset,
                   Handler<FileEntry> onDone);

    std::string id_;
    std::chrono::milliseconds startTimeout_;
    std::shared_ptr<AgentChannel> channel_;
    ExitHandler onExit_;
    bool ready_ = false;
    bool exitReported_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace sessiond
