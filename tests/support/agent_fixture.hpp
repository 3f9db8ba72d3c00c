#pragma once
// Runs the real agent (src/agent/sessiond_agent.py under Debian's Python)
// over a socketpair and drives it through AgentChannel.

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sessiond/sandbox/agent_channel.hpp"
#include "sessiond/sandbox/agent_protocol.hpp"
#include "script_process.hpp"

extern char** environ;

namespace sessiond::test_support {

using namespace std::chrono_literals;
using nlohmann::json;

const std::string kAgentScript = SESSIOND_SOURCE_DIR "/src/agent/sessiond_agent.py";

using AgentProcess = ScriptProcess;

class AgentTest : public ::testing::Test {
protected:
    void SetUp() override { startAgent({}); }

    void TearDown() override {
        if (channel_) channel_->close();
        io_.run_for(10ms);
    }

    void startAgent(const std::vector<std::string>& extraArgs) {
        int fds[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        AgentChannel::Socket socket(io_);
        socket.assign(boost::asio::local::stream_protocol(), fds[0]);
        const bool spawned = agent_.spawn(kAgentScript, fds[1], extraArgs);
        ::close(fds[1]);
        ASSERT_TRUE(spawned);
        channel_ = std::make_shared<AgentChannel>(std::move(socket));

        bool done = false;
        channel_->waitForHello(30s, [&](std::string error, json message) {
            done = true;
            helloError_ = std::move(error);
            hello_ = std::move(message);
        });
        runUntil([&] { return done; });
        ASSERT_EQ(helloError_, "");
    }

    // Every wait here is bounded by a channel timer.
    template <typename Pred>
    void runUntil(Pred pred) {
        while (!pred()) {
            if (io_.stopped()) io_.restart();  // it stops whenever it runs out of work
            io_.run_one_for(100ms);
        }
    }

    json request(json message, std::chrono::milliseconds timeout = 30s) {
        bool done = false;
        std::string error;
        json reply;
        channel_->request(std::move(message), timeout, [&](std::string e, json r) {
            done = true;
            error = std::move(e);
            reply = std::move(r);
        });
        runUntil([&] { return done; });
        EXPECT_EQ(error, "");
        return reply;
    }

    ExecuteResult run(const std::string& code, std::chrono::milliseconds timeout = 20s,
                      std::size_t maxOutputChars = 4096) {
        json message = makeExecuteMessage({code, std::chrono::seconds(1), maxOutputChars});
        message["timeoutMs"] = timeout.count();
        auto outcome = parseExecuteReply(request(std::move(message), timeout + 15s));
        EXPECT_TRUE(outcome.ok()) << outcome.error;
        return outcome.value;
    }

    // Closes the channel: the agent must exit cleanly, taking its worker
    // (whose pid `pidCode` returns) with it.
    void expectExitWithWorkerOnClose(const std::string& pidCode) {
        auto r = run(pidCode);
        ASSERT_TRUE(r.result.is_number_integer());
        const pid_t worker = r.result.get<pid_t>();
        ASSERT_EQ(::kill(worker, 0), 0);

        channel_->close();
        const int status = agent_.waitExit(10s);
        ASSERT_NE(status, -1) << "the agent did not exit";
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
        EXPECT_EQ(::kill(worker, 0), -1) << "the worker outlived the agent";
    }

    boost::asio::io_context io_;
    AgentProcess agent_;
    std::shared_ptr<AgentChannel> channel_;
    std::string helloError_;
    json hello_;
};

}  // namespace sessiond::test_support
