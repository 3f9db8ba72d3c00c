#pragma once
// Runs one of the sandbox's Python programs (src/agent) under Debian's
// Python, over a channel the test holds the other end of.

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace sessiond::test_support {

using namespace std::chrono_literals;

constexpr const char* kPython = "/usr/bin/python3";

// A Python program of src/agent run over a channel fd (`--fd N`), as the
// agent and the streams program take one; killed and reaped on destruction
// unless it already exited.
class ScriptProcess {
public:
    ScriptProcess() = default;
    ScriptProcess(const ScriptProcess&) = delete;
    ScriptProcess& operator=(const ScriptProcess&) = delete;
    ~ScriptProcess() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }

    // Spawns `script` with `childFd` as its channel; false on failure.
    bool spawn(const std::string& script, int childFd, const std::vector<std::string>& extraArgs = {}) {
        const int target = childFd == 10 ? 11 : 10;  // dup2 clears close-on-exec only when numbers differ
        std::vector<std::string> args{kPython, script, "--fd", std::to_string(target)};
        args.insert(args.end(), extraArgs.begin(), extraArgs.end());
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);

        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, childFd, target);
        const int rc = posix_spawn(&pid_, kPython, &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0) pid_ = -1;
        return rc == 0;
    }

    pid_t pid() const { return pid_; }

    // Waits for it to exit by itself; its wait status, or -1 on timeout.
    int waitExit(std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return status;
            }
            std::this_thread::sleep_for(20ms);
        }
        return -1;
    }

private:
    pid_t pid_ = -1;
};

}  // namespace sessiond::test_support
