#include "sessiond/host_tool.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "sessiond/unique_fd.hpp"
#include "spawn_actions.hpp"

extern char** environ;

namespace sessiond {

namespace {

std::pair<UniqueFd, UniqueFd> makePipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Appends what each pipe delivers to its string until every pipe is at its
// end. The pipes are drained together so a tool that fills one while we
// wait on the other cannot stall.
void readAll(std::vector<std::pair<int, std::string*>> pipes) {
    char buffer[16384];
    while (!pipes.empty()) {
        std::vector<pollfd> fds;
        for (const auto& [fd, _] : pipes) fds.push_back({fd, POLLIN, 0});
        if (::poll(fds.data(), fds.size(), -1) < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
        }
        for (std::size_t i = fds.size(); i-- > 0;) {
            if (fds[i].revents == 0) continue;
            ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
            if (n > 0)
                pipes[i].second->append(buffer, static_cast<std::size_t>(n));
            else if (n == 0 || errno != EINTR)
                pipes.erase(pipes.begin() + static_cast<std::ptrdiff_t>(i));
        }
    }
}

// Starts argv[0], looked up on PATH, with these file actions; its pid.
pid_t spawnTool(const std::vector<std::string>& args, const SpawnActions& fa) {
    std::vector<char*> argv;
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    pid_t pid = -1;
    if (int error = ::posix_spawnp(&pid, argv[0], &fa.actions, nullptr, argv.data(), environ))
        throw std::runtime_error("cannot run " + args[0] + ": " + std::strerror(error));
    return pid;
}

// A spawned tool that is reaped whatever the path out: wait() waits for it
// to exit, and if nothing did by the time this goes, it is killed first.
class SpawnedTool {
public:
    explicit SpawnedTool(pid_t pid) : pid_(pid) {}
    SpawnedTool(const SpawnedTool&) = delete;
    SpawnedTool& operator=(const SpawnedTool&) = delete;
    ~SpawnedTool() {
        if (pid_ < 0) return;
        ::kill(pid_, SIGKILL);
        reap();
    }

    // Its wait status.
    int wait() {
        const int status = reap();
        pid_ = -1;
        return status;
    }

private:
    int reap() const {
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        return status;
    }

    pid_t pid_;
};

// Runs the tool; with `output`, collects its standard output there,
// otherwise sends it to /dev/null.
void run(const std::vector<std::string>& args, const std::string& input, std::string* output) {
    auto [inRead, inWrite] = makePipe();
    auto [errRead, errWrite] = makePipe();
    UniqueFd outRead, outWrite;
    if (output) std::tie(outRead, outWrite) = makePipe();
    SpawnActions fa;
    posix_spawn_file_actions_adddup2(&fa.actions, inRead.get(), STDIN_FILENO);
    if (output)
        posix_spawn_file_actions_adddup2(&fa.actions, outWrite.get(), STDOUT_FILENO);
    else
        posix_spawn_file_actions_addopen(&fa.actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa.actions, errWrite.get(), STDERR_FILENO);
    SpawnedTool tool(spawnTool(args, fa));
    inRead.reset();
    errWrite.reset();
    outWrite.reset();
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
    if (output)
        readAll({{outRead.get(), output}, {errRead.get(), &error}});
    else
        readAll({{errRead.get(), &error}});
    const int status = tool.wait();
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    while (!error.empty() && (error.back() == '\n' || error.back() == ' ')) error.pop_back();
    std::string command;
    for (const auto& arg : args) command += (command.empty() ? "" : " ") + arg;
    throw std::runtime_error(command + " failed: " + (error.empty() ? "status " + std::to_string(status) : error));
}

}  // namespace

void runHostTool(const std::vector<std::string>& args, const std::string& input) { run(args, input, nullptr); }

std::string runHostToolOutput(const std::vector<std::string>& args, const std::string& input) {
    std::string output;
    run(args, input, &output);
    return output;
}

std::string runHostToolUntil(const std::vector<std::string>& args, const std::string& wanted,
                             std::chrono::milliseconds limit) {
    auto [outRead, outWrite] = makePipe();
    SpawnActions fa;
    posix_spawn_file_actions_addopen(&fa.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa.actions, outWrite.get(), STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&fa.actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    SpawnedTool tool(spawnTool(args, fa));  // killed once its line came, or the limit passed
    outWrite.reset();
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::string output;
    char buffer[4096];
    while (output.find(wanted) == std::string::npos) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        pollfd fd{outRead.get(), POLLIN, 0};
        const int ready = ::poll(&fd, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) break;
        const ssize_t n = ::read(outRead.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // it exited, or closed its output
        output.append(buffer, static_cast<std::size_t>(n));
    }
    return output;
}

}  // namespace sessiond
