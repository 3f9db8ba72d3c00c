#include "sessiond/host_tool.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "sessiond/unique_fd.hpp"

extern char** environ;

namespace sessiond {

namespace {

struct SpawnActions {
    posix_spawn_file_actions_t actions;
    SpawnActions() { posix_spawn_file_actions_init(&actions); }
    ~SpawnActions() { posix_spawn_file_actions_destroy(&actions); }
};

std::pair<UniqueFd, UniqueFd> makePipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace

void runHostTool(const std::vector<std::string>& args, const std::string& input) {
    auto [inRead, inWrite] = makePipe();
    auto [errRead, errWrite] = makePipe();
    SpawnActions fa;
    posix_spawn_file_actions_adddup2(&fa.actions, inRead.get(), STDIN_FILENO);
    posix_spawn_file_actions_addopen(&fa.actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa.actions, errWrite.get(), STDERR_FILENO);
    std::vector<char*> argv;
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    pid_t pid = -1;
    if (int error = ::posix_spawnp(&pid, argv[0], &fa.actions, nullptr, argv.data(), environ))
        throw std::runtime_error("cannot run " + args[0] + ": " + std::strerror(error));
    inRead.reset();
    errWrite.reset();
    // The tools here read all their input before they write much, so
    // writing it all first cannot deadlock on a full stderr pipe.
    for (std::size_t done = 0; done < input.size();) {
        ssize_t n = ::write(inWrite.get(), input.data() + done, input.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
    }
    inWrite.reset();
    std::string error;
    char buffer[4096];
    for (ssize_t n; (n = ::read(errRead.get(), buffer, sizeof buffer)) != 0;) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        error.append(buffer, static_cast<std::size_t>(n));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    while (!error.empty() && (error.back() == '\n' || error.back() == ' ')) error.pop_back();
    std::string command;
    for (const auto& arg : args) command += (command.empty() ? "" : " ") + arg;
    throw std::runtime_error(command + " failed: " + (error.empty() ? "status " + std::to_string(status) : error));
}

}  // namespace sessiond
