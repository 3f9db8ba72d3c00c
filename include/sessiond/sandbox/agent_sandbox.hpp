#pragma once
// What every backend shares: a sandbox is something that starts a process or a
// VM running the sessiond agent and hands back the host end of the agent
// channel. Handshake, execution and exit reporting live here, once.

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio.hpp>

#include "sessiond/sandbox/agent_channel.hpp"
#include "sessiond/sandbox/sandbox.hpp"

namespace sessiond {

class AgentSandbox : public Sandbox {
public:
    AgentSandbox(boost::asio::io_context& io, std::string id, std::chrono::milliseconds startTimeout);
    ~AgentSandbox() override;

    const std::string& id() const override { return id_; }
    void start(ReadyHandler onReady) override;
    void execute(ExecuteRequest request, ExecuteHandler onDone) override;
    void setExitHandler(ExitHandler onExit) override { onExit_ = std::move(onExit); }

protected:
    using LaunchHandler = std::function<void(std::string error, std::optional<AgentChannel::Socket> channel)>;

    // Starts the process or VM and hands back the host end of the agent
    // channel (or an error), once, from the io_context thread; it may do so
    // before returning. Whatever it creates must be owned by members of the
    // subclass, so that destroying the sandbox releases it.
    virtual void launch(LaunchHandler onLaunched) = 0;

    // For subclasses: the process or VM ended.
    void reportExit(const std::string& reason);

    boost::asio::io_context& io_;

private:
    void waitForAgent(ReadyHandler onReady);

    std::string id_;
    std::chrono::milliseconds startTimeout_;
    std::shared_ptr<AgentChannel> channel_;
    ExitHandler onExit_;
    bool ready_ = false;
    bool exitReported_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace sessiond
