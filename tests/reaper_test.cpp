// sessiond-reap, what a zygote session's pid 1 execs once it has forked the
// agent, on its own: the test's child plays pid 1 (a child subreaper, so
// orphans come to it as they would to pid 1), forks an "agent" and an orphan,
// and execs the reaper as the zygote's session does.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

using namespace std::chrono_literals;

namespace {

const std::string kReaper = SESSIOND_BINARY_DIR "/sessiond-reap";

std::string readProc(pid_t pid, const std::string& file) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The state letter of /proc/PID/stat, or 0 once the process is reaped.
char stateOf(pid_t pid) {
    const std::string stat = readProc(pid, "stat");
    const auto paren = stat.rfind(')');
    return paren == std::string::npos || paren + 2 >= stat.size() ? 0 : stat[paren + 2];
}

struct Reaper {
    pid_t pid = -1;     // the reaper, once exec'd
    pid_t agent = -1;
    pid_t orphan = -1;  // left to it by a child that exited at once

    // An agent that lives `agentMs` and exits with `agentCode`; an orphan
    // that lives 100 ms.
    Reaper(int agentMs, int agentCode) {
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
        pid = ::fork();
        if (pid == 0) {
            ::prctl(PR_SET_CHILD_SUBREAPER, 1);
            agent = ::fork();
            if (agent == 0) {
                ::usleep(agentMs * 1000);
                _exit(agentCode);
            }
            (void)!::write(fds[1], &agent, sizeof agent);
            if (::fork() == 0) {
                orphan = ::fork();
                if (orphan == 0) {
                    ::usleep(100 * 1000);
                    _exit(0);
                }
                (void)!::write(fds[1], &orphan, sizeof orphan);
                _exit(0);
            }
            const std::string agentPid = std::to_string(agent);
            ::execl(kReaper.c_str(), "sessiond-init", agentPid.c_str(), nullptr);
            _exit(99);
        }
        ::close(fds[1]);
        EXPECT_EQ(::read(fds[0], &agent, sizeof agent), static_cast<ssize_t>(sizeof agent));
        EXPECT_EQ(::read(fds[0], &orphan, sizeof orphan), static_cast<ssize_t>(sizeof orphan));
        ::close(fds[0]);
    }

    int exitCode() {
        int status = 0;
        EXPECT_EQ(::waitpid(pid, &status, 0), pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
};

}  // namespace

TEST(ZygoteReaper, ReapsOrphansAndExitsWithTheAgentsCode) {
    Reaper reaper(1500, 7);
    // The orphan exits after 100 ms, while the agent still runs: reaped, not
    // left a zombie.
    const auto deadline = std::chrono::steady_clock::now() + 1s;
    while (stateOf(reaper.orphan) != 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(stateOf(reaper.orphan), 0) << "the orphan was not reaped";
    EXPECT_EQ(readProc(reaper.pid, "comm"), "sessiond-init\n");
    char exe[4096] = {};
    ASSERT_GT(::readlink(("/proc/" + std::to_string(reaper.pid) + "/exe").c_str(), exe, sizeof exe - 1), 0);
    EXPECT_EQ(std::string(exe), std::filesystem::canonical(kReaper).string());
    EXPECT_EQ(reaper.exitCode(), 7);
}

TEST(ZygoteReaper, AnAgentKilledBySignalGives128PlusTheSignal) {
    Reaper reaper(60'000, 0);
    std::this_thread::sleep_for(200ms);
    ASSERT_EQ(::kill(reaper.agent, SIGKILL), 0);
    EXPECT_EQ(reaper.exitCode(), 128 + SIGKILL);
}
