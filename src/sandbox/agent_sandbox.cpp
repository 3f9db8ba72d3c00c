#include "sessiond/sandbox/agent_sandbox.hpp"

#include <spdlog/spdlog.h>

#include "sessiond/sandbox/agent_protocol.hpp"

namespace sessiond {

namespace {
// The agent enforces the execution timeout itself and needs a moment to
// interrupt or restart the interpreter; the channel's own deadline only
// catches an agent that stopped answering.
constexpr auto kAgentGrace = std::chrono::seconds(15);
}  // namespace

AgentSandbox::AgentSandbox(boost::asio::io_context& io, std::string id, std::chrono::milliseconds startTimeout)
    : io_(io), id_(std::move(id)), startTimeout_(startTimeout) {}

AgentSandbox::~AgentSandbox() {
    if (channel_) channel_->close();
}

void AgentSandbox::start(ReadyHandler onReady) {
    std::weak_ptr<bool> alive = alive_;
    auto onLaunched = [this, alive, onReady](std::string error, std::optional<AgentChannel::Socket> socket) {
        if (alive.expired()) return onReady(error.empty() ? "sandbox destroyed while starting" : error);
        if (!error.empty() || !socket) {
            // Never call back from inside launch(): the pool may destroy us.
            boost::asio::post(io_, [onReady, error] { onReady(error.empty() ? "no agent channel" : error); });
            return;
        }
        channel_ = std::make_shared<AgentChannel>(std::move(*socket));
        waitForAgent(std::move(onReady));
    };
    try {
        launch(std::move(onLaunched));
    } catch (const std::exception& e) {
        boost::asio::post(io_, [onReady, error = std::string(e.what())] { onReady(error); });
    }
}

void AgentSandbox::waitForAgent(ReadyHandler onReady) {
    std::weak_ptr<bool> alive = alive_;
    channel_->setClosedHandler([this, alive](std::string reason) {
        if (!alive.expired()) reportExit("agent channel closed: " + reason);
    });
    channel_->waitForHello(startTimeout_, [this, alive, onReady](std::string error, nlohmann::json hello) {
        if (alive.expired()) return onReady(error.empty() ? "sandbox destroyed while starting" : error);
        if (!error.empty()) return onReady("no handshake from the agent: " + error);
        ready_ = true;
        spdlog::debug("sandbox {}: agent ready: {}", id_, hello.dump());
        onReady("");
    });
}

void AgentSandbox::execute(ExecuteRequest request, ExecuteHandler onDone) {
    if (!ready_ || !channel_ || !channel_->isOpen()) {
        boost::asio::post(io_, [onDone] { onDone({"the sandbox is not running", {}}); });
        return;
    }
    auto deadline = std::chrono::duration_cast<std::chrono::milliseconds>(request.timeout + kAgentGrace);
    channel_->request(makeExecuteMessage(request), deadline, [onDone](std::string error, nlohmann::json reply) {
        if (!error.empty()) return onDone({error, {}});
        onDone(parseExecuteReply(reply));
    });
}

void AgentSandbox::reportExit(const std::string& reason) {
    if (exitReported_ || !ready_) return;
    exitReported_ = true;
    if (onExit_) onExit_(reason);
}

}  // namespace sessiond
