#pragma once
// What every custom container session does whichever backend runs it
// (docs/custom-containers.md): plan the launch from the pool's template and
// the image, have the backend start it, wait for its Startup probe (or its
// target port) within the pool's start timeout, then watch its Liveness
// probe; end when the backend says the container ended. A custom container
// runs no interpreter: the code-execution and file routes are refused.
//
// A backend derives from it, starts the container in `launch`, reaches its
// ports in `connect`, and calls `exited` when it ends.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio.hpp>

#include "sessiond/config.hpp"
#include "sessiond/sandbox/container_health.hpp"
#include "sessiond/sandbox/container_launch.hpp"
#include "sessiond/sandbox/sandbox.hpp"

namespace sessiond {

class CustomContainerSandbox : public Sandbox {
public:
    CustomContainerSandbox(boost::asio::io_context& io, const PoolConfig& pool, std::string id,
                           ContainerPlanner& planner);
    ~CustomContainerSandbox() override;

    const std::string& id() const override { return id_; }
    void start(ReadyHandler onReady) override;
    void setExitHandler(ExitHandler onExit) override { onExit_ = std::move(onExit); }

    void execute(ExecuteRequest, ExecuteHandler onDone) override;
    void listFiles(const std::string&, bool, Handler<std::vector<FileEntry>> onDone) override;
    void statFile(const std::string&, Handler<FileEntry> onDone) override;
    void readFile(const std::string&, std::uint64_t, Handler<FileContent> onDone) override;
    void writeFile(const std::string&, std::string, Handler<FileEntry> onDone) override;
    void deleteFile(const std::string&, Handler<Done> onDone) override;
    void describe(Handler<nlohmann::json> onDone) override;

protected:
    // Starts the planned container; `onRunning` gets "" once it runs (and
    // can be probed), or why it could not start.
    virtual void launch(const ContainerLaunch& launch, std::function<void(std::string error)> onRunning) = 0;
    // What the container said last, for the error of a failed start; "" if unknown.
    virtual std::string lastOutput() const { return ""; }

    // The container ended (or stopped being healthy): before it was ready
    // the start fails, after it the pool hears of the exit.
    void exited(const std::string& reason);

    std::weak_ptr<int> alive() const { return lifetime_; }

    boost::asio::io_context& io_;
    const PoolConfig pool_;

private:
    void failStart(const std::string& error);
    void becameReady();

    std::string id_;
    ContainerPlanner& planner_;
    boost::asio::steady_timer startDeadline_;
    ReadyHandler onReady_;
    ExitHandler onExit_;
    bool started_ = false;
    std::unique_ptr<ContainerHealth> health_;
    std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);
};

}  // namespace sessiond
