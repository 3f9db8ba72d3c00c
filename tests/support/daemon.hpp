#pragma once
// The sessiond binary run as a user runs it: its own configuration file and
// log in a temporary directory, killed and cleaned up with the object.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

extern char** environ;

namespace sessiond::testing {

using namespace std::chrono_literals;

inline std::uint16_t freePort() {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    return acceptor.local_endpoint().port();
}

class Daemon {
public:
    explicit Daemon(const nlohmann::json& config) {
        char dir[] = "/tmp/sessiond-daemon-test-XXXXXX";
        dir_ = mkdtemp(dir);
        configPath_ = dir_ + "/sessiond.json";
        logPath_ = dir_ + "/sessiond.log";
        writeConfig(config);
    }

    // For a restart with another configuration.
    void writeConfig(const nlohmann::json& config) { std::ofstream(configPath_) << config.dump(2); }

    // A directory that lives as long as this object, for state and key files.
    const std::string& directory() const { return dir_; }
    ~Daemon() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        // A sanitizer build's daemon reports on its stderr, which is this
        // log; whatever the test checked, such a report fails it.
        const std::string text = log();
        if (text.find("Sanitizer:") != std::string::npos || text.find("runtime error:") != std::string::npos)
            ADD_FAILURE() << "the daemon reported a sanitizer error:\n" << text;
        std::filesystem::remove_all(dir_);
    }

    // Starts the binary with `--config FILE` and any extra arguments.
    void start(const std::vector<std::string>& extraArgs = {}) {
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, logPath_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&actions, 1, 2);
        std::string binary = SESSIOND_BINARY_DIR "/sessiond";
        std::vector<std::string> args = {binary, "--config", configPath_};
        args.insert(args.end(), extraArgs.begin(), extraArgs.end());
        std::vector<char*> argv;
        for (auto& arg : args) argv.push_back(arg.data());
        argv.push_back(nullptr);
        ASSERT_EQ(posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ), 0);
        posix_spawn_file_actions_destroy(&actions);
    }

    // Waits for the process to exit; returns its exit code (-1 on timeout).
    int wait(std::chrono::seconds limit) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            std::this_thread::sleep_for(20ms);
        }
        return -1;
    }

    void signal(int sig) { ::kill(pid_, sig); }
    pid_t pid() const { return pid_; }
    const std::string& configPath() const { return configPath_; }

    std::string log() const {
        std::ifstream in(logPath_);
        return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }

private:
    std::string dir_, configPath_, logPath_;
    pid_t pid_ = -1;
};

}  // namespace sessiond::testing
