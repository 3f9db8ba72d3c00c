// The host tools the backends run (src/sandbox/host_tool.cpp), with real
// programs: what comes back, what a failure says, and that no tool is left
// running or unreaped whichever way a call ends.

#include "sessiond/host_tool.hpp"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

using namespace std::chrono_literals;

namespace {

// This process's children, zombies included (/proc/PID/task/TID/children).
std::set<std::string> children() {
    std::set<std::string> found;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream in(task.path() / "children");
        for (std::string pid; in >> pid;) found.insert(pid);
    }
    return found;
}

}  // namespace

TEST(HostTool, GivesTheToolItsInputAndReturnsItsOutput) {
    const auto before = children();
    EXPECT_EQ(sessiond::runHostToolOutput({"sh", "-c", "cat; echo done >&2"}, "given\n"), "given\n");
    EXPECT_EQ(children(), before);
}

TEST(HostTool, AFailingToolThrowsWithWhatItSaid) {
    const auto before = children();
    try {
        sessiond::runHostTool({"sh", "-c", "echo no such table >&2; exit 3"});
        FAIL() << "a tool that exits with 3 must throw";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()), "sh -c echo no such table >&2; exit 3 failed: no such table");
    }
    EXPECT_THROW(sessiond::runHostTool({"sessiond-no-such-tool"}), std::runtime_error);
    EXPECT_EQ(children(), before);
}

// The path out that kills: the tool still runs when its line has come.
TEST(HostTool, AToolStillRunningWhenItsLineCameIsKilledAndReaped) {
    const auto before = children();
    const auto start = std::chrono::steady_clock::now();
    const std::string output = sessiond::runHostToolUntil({"sh", "-c", "echo ready; exec sleep 60"}, "ready", 30s);
    EXPECT_EQ(output, "ready\n");
    EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
    EXPECT_EQ(children(), before);

    // And one that never says it, once the limit has passed.
    EXPECT_EQ(sessiond::runHostToolUntil({"sleep", "60"}, "ready", 200ms), "");
    EXPECT_EQ(children(), before);
}
