#include "sessiond/sandbox/custom_container_sandbox.hpp"

namespace sessiond {

namespace {

constexpr const char* kNoInterpreter =
    "a custom container session runs no code interpreter: requests go to its container";

}  // namespace

CustomContainerSandbox::CustomContainerSandbox(boost::asio::io_context& io, const PoolConfig& pool, std::string id,
                                               ContainerPlanner& planner)
    : io_(io), pool_(pool), id_(std::move(id)), planner_(planner), startDeadline_(io) {}

CustomContainerSandbox::~CustomContainerSandbox() {
    startDeadline_.cancel();
    health_.reset();
}

void CustomContainerSandbox::start(ReadyHandler onReady) {
    onReady_ = std::move(onReady);
    startDeadline_.expires_after(pool_.sandboxStartTimeout);
    startDeadline_.async_wait([this, alive = alive()](boost::system::error_code ec) {
        if (ec || alive.expired()) return;
        failStart("the container was not ready within " + std::to_string(pool_.sandboxStartTimeout.count()) +
                  " s (sandboxStartTimeoutInSeconds)");
    });
    planner_.plan(pool_, [this, alive = alive()](std::string error, ContainerLaunch plan) {
        if (alive.expired()) return;
        if (!error.empty()) return failStart(error);
        health_ = std::make_unique<ContainerHealth>(
            io_, pool_.container, [this, alive](std::uint16_t port, Handler<UniqueFd> onDone) {
                if (alive.expired()) return onDone({"the sandbox is gone", UniqueFd(), ""});
                connect(port, std::move(onDone));
            });
        auto onRunning = [this, alive](std::string error) {
            if (alive.expired()) return;
            if (!error.empty()) return failStart(error);
            health_->waitUntilStarted([this](std::string failure) {
                if (!failure.empty()) return failStart(failure);
                becameReady();
            });
        };
        try {
            launch(plan, onRunning);
        } catch (const std::exception& e) {
            failStart(e.what());
        }
    });
}

void CustomContainerSandbox::becameReady() {
    startDeadline_.cancel();
    if (!onReady_) return;
    started_ = true;
    std::exchange(onReady_, nullptr)("");
    health_->watchLiveness([this](std::string failure) { exited("its liveness probe failed: " + failure); });
}

void CustomContainerSandbox::failStart(const std::string& error) {
    startDeadline_.cancel();
    if (!onReady_) return;
    std::string tail = lastOutput();
    while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
    std::exchange(onReady_, nullptr)(tail.empty() ? error : error + "; its last output: " + tail);
}

void CustomContainerSandbox::exited(const std::string& reason) {
    if (!started_) return failStart(reason + " before it was ready");
    if (onExit_) std::exchange(onExit_, nullptr)(reason);
}

void CustomContainerSandbox::execute(ExecuteRequest, ExecuteHandler onDone) { onDone({kNoInterpreter, {}, ""}); }
void CustomContainerSandbox::listFiles(const std::string&, bool, Handler<std::vector<FileEntry>> onDone) {
    onDone({kNoInterpreter, {}, ""});
}
void CustomContainerSandbox::statFile(const std::string&, Handler<FileEntry> onDone) { onDone({kNoInterpreter, {}, ""}); }
void CustomContainerSandbox::readFile(const std::string&, std::uint64_t, Handler<FileContent> onDone) {
    onDone({kNoInterpreter, {}, ""});
}
void CustomContainerSandbox::writeFile(const std::string&, std::string, Handler<FileEntry> onDone) {
    onDone({kNoInterpreter, {}, ""});
}
void CustomContainerSandbox::deleteFile(const std::string&, Handler<Done> onDone) { onDone({kNoInterpreter, {}, ""}); }
void CustomContainerSandbox::describe(Handler<nlohmann::json> onDone) { onDone({kNoInterpreter, {}, ""}); }

}  // namespace sessiond
