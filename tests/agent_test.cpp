// The real agent (src/agent/sessiond_agent.py under Debian's Python) driven
// through AgentChannel over a socketpair.

#include <sys/wait.h>
#include <signal.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "support/agent_fixture.hpp"

namespace sessiond {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using test_support::AgentTest;
using test_support::AgentProcess;

TEST_F(AgentTest, SaysHello) {
    EXPECT_EQ(hello_["type"], "hello");
    EXPECT_EQ(hello_["protocol"], kAgentProtocolVersion);
    EXPECT_EQ(hello_["runtime"]["name"], "python");
    EXPECT_EQ(hello_["runtime"]["version"].get<std::string>().rfind("3.", 0), 0u);
    EXPECT_EQ(hello_["agentPid"], agent_.pid());
}

TEST_F(AgentTest, ReturnsOutputAndLastExpression) {
    auto r = run("x = 6*7\nprint(x)\nx");
    EXPECT_TRUE(r.succeeded);
    EXPECT_EQ(r.stdoutText, "42\n");
    EXPECT_EQ(r.stderrText, "");
    ASSERT_TRUE(r.result.is_number_integer()) << r.result;
    EXPECT_EQ(r.result, 42);
    EXPECT_FALSE(r.stateLost);
    EXPECT_FALSE(r.timedOut);
}

TEST_F(AgentTest, StatePersistsAcrossRequests) {
    run("import math\nvalues = [1, 2, 3]");
    auto r = run("values.append(4)\nmath.prod(values)");
    EXPECT_TRUE(r.succeeded);
    EXPECT_EQ(r.result, 24);
}

TEST_F(AgentTest, ResultValueTypes) {
    EXPECT_EQ(run("print('only output')").result, "");
    EXPECT_EQ(run("y = 1").result, "");
    EXPECT_EQ(run("y;").result, "");

    auto s = run("'42'");
    ASSERT_TRUE(s.result.is_string());
    EXPECT_EQ(s.result, "42");

    EXPECT_TRUE(run("None").result.is_null());
    EXPECT_TRUE(run("z = None\nz").result.is_null());
    EXPECT_EQ(run("float('nan')").result, "nan");
    EXPECT_EQ(run("float('-inf')").result, "-inf");

    auto f = run("1.5");
    ASSERT_TRUE(f.result.is_number_float());
    EXPECT_EQ(f.result, 1.5);

    auto b = run("3 > 2");
    ASSERT_TRUE(b.result.is_boolean());
    EXPECT_EQ(b.result, true);

    EXPECT_EQ(run("{'a': 1}").result, "{'a': 1}");
    EXPECT_EQ(run("10**30").result, "1000000000000000000000000000000");
}

TEST_F(AgentTest, LongListUsesIpythonPrettyRepr) {
    auto r = run("list(range(30))");
    std::string expected = "[0,\n";
    for (int i = 1; i < 29; ++i) expected += " " + std::to_string(i) + ",\n";
    expected += " 29]";
    EXPECT_EQ(r.result, expected);
}

TEST_F(AgentTest, ExceptionReportsTracebackAndKeepsState) {
    run("kept = 'still here'");
    auto r = run("def f():\n    return 1/0\nf()");
    EXPECT_FALSE(r.succeeded);
    EXPECT_FALSE(r.timedOut);
    EXPECT_NE(r.stderrText.find("ZeroDivisionError"), std::string::npos) << r.stderrText;
    EXPECT_NE(r.stderrText.find("Traceback"), std::string::npos) << r.stderrText;
    EXPECT_EQ(r.stderrText.find('\x1b'), std::string::npos) << "ANSI colours in the traceback";
    EXPECT_EQ(r.stdoutText, "");
    EXPECT_EQ(r.result, "");
    EXPECT_EQ(run("kept").result, "still here");
}

TEST_F(AgentTest, SyntaxErrorIsAnError) {
    auto r = run("def broken(:\n    pass");
    EXPECT_FALSE(r.succeeded);
    EXPECT_NE(r.stderrText.find("SyntaxError"), std::string::npos) << r.stderrText;
    EXPECT_TRUE(run("1 + 1").succeeded);
}

TEST_F(AgentTest, CapturesSubprocessOutput) {
    auto r = run("import os\nos.system('echo hi; echo oops >&2')");
    EXPECT_TRUE(r.succeeded);
    EXPECT_EQ(r.stdoutText, "hi\n");
    EXPECT_EQ(r.stderrText, "oops\n");
    EXPECT_EQ(r.result, 0);
}

TEST_F(AgentTest, CapsLargeOutput) {
    auto r = run("print('x' * 100000)", 20s, 1000);
    EXPECT_TRUE(r.succeeded);
    EXPECT_EQ(r.stdoutText, std::string(1000, 'x') + "\n[output truncated: 99001 characters omitted]");
    // The stream stays in step: the next cell sees only its own output.
    EXPECT_EQ(run("print('next')").stdoutText, "next\n");
}

TEST_F(AgentTest, TimeoutInterruptsAndKeepsState) {
    run("before = 'kept'");
    auto r = run("while True:\n    pass", 1000ms);
    EXPECT_FALSE(r.succeeded);
    EXPECT_TRUE(r.timedOut);
    EXPECT_FALSE(r.stateLost);
    EXPECT_NE(r.stderrText.find("Request timed out waiting for code execution to complete"), std::string::npos)
        << r.stderrText;
    EXPECT_GE(r.durationMs, 1000);
    EXPECT_LT(r.durationMs, 3000);
    EXPECT_EQ(run("before").result, "kept");
}

TEST_F(AgentTest, IgnoredInterruptRestartsInterpreter) {
    run("before = 'lost'");
    auto r = run(
        "import time\n"
        "while True:\n"
        "    try:\n"
        "        time.sleep(0.1)\n"
        "    except KeyboardInterrupt:\n"
        "        pass",
        1000ms);
    EXPECT_TRUE(r.timedOut);
    EXPECT_TRUE(r.stateLost);
    EXPECT_NE(r.stderrText.find("Request timed out"), std::string::npos) << r.stderrText;

    auto next = run("'before' in dir(), 6 * 7");
    EXPECT_TRUE(next.succeeded);
    EXPECT_EQ(next.result, "(False, 42)");
    EXPECT_FALSE(next.stateLost);
}

TEST_F(AgentTest, InterpreterExitIsReportedAndRecovered) {
    auto r = run("print('bye', flush=True)\nimport os\nos._exit(3)");
    EXPECT_FALSE(r.succeeded);
    EXPECT_FALSE(r.timedOut);
    EXPECT_TRUE(r.stateLost);
    EXPECT_EQ(r.stdoutText, "bye\n");
    EXPECT_NE(r.stderrText.find("the interpreter exited (exit code 3)"), std::string::npos) << r.stderrText;

    auto killed = run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)");
    EXPECT_NE(killed.stderrText.find("(signal 9)"), std::string::npos) << killed.stderrText;

    auto next = run("6 * 7");
    EXPECT_TRUE(next.succeeded);
    EXPECT_EQ(next.result, 42);
}

TEST_F(AgentTest, ExitEndsInterpreterAfterTheCell) {
    run("before = 1");
    auto r = run("print('leaving')\nexit()");
    EXPECT_TRUE(r.succeeded);
    EXPECT_EQ(r.stdoutText, "leaving\n");
    EXPECT_TRUE(r.stateLost);
    EXPECT_EQ(run("'before' in dir()").result, false);
}

TEST_F(AgentTest, AnswersPingAndRejectsUnknownTypes) {
    auto pong = request({{"type", "ping"}});
    EXPECT_EQ(pong["type"], "pong");

    auto rejected = request({{"type", "uploadFile"}});
    EXPECT_EQ(rejected["type"], "error");
    EXPECT_FALSE(parseExecuteReply(rejected).ok());
    EXPECT_TRUE(run("1").succeeded);
}

TEST_F(AgentTest, ExitsWithItsWorkerWhenChannelCloses) {
    auto r = run("import os\nos.getpid()");
    ASSERT_TRUE(r.result.is_number_integer());
    const pid_t worker = r.result.get<pid_t>();
    ASSERT_EQ(::kill(worker, 0), 0);

    channel_->close();
    const int status = agent_.waitExit(10s);
    ASSERT_NE(status, -1) << "the agent did not exit";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    EXPECT_EQ(::kill(worker, 0), -1) << "the worker outlived the agent";
}

class PreloadedAgentTest : public AgentTest {
protected:
    void SetUp() override {
        workdir_ = std::filesystem::temp_directory_path() / ("sessiond-agent-test-" + std::to_string(::getpid()));
        std::filesystem::create_directories(workdir_);
        startAgent({"--preload", "numpy,pandas,matplotlib", "--workdir", workdir_.string()});
    }
    void TearDown() override {
        AgentTest::TearDown();
        std::filesystem::remove_all(workdir_);
    }
    std::filesystem::path workdir_;
};

TEST_F(PreloadedAgentTest, ImportsModulesAndUsesWorkdirAndAgg) {
    EXPECT_EQ(run("import sys\n'numpy' in sys.modules and 'pandas' in sys.modules").result, true);
    EXPECT_EQ(run("import os\nos.getcwd()").result, workdir_.string());
    EXPECT_EQ(run("import matplotlib\nmatplotlib.get_backend()").result, "agg");

    auto plot = run(
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3])\n"
        "plt.savefig('plot.png')\n"
        "os.path.getsize('plot.png') > 0");
    EXPECT_EQ(plot.result, true) << plot.stderrText;
}

}  // namespace
}  // namespace sessiond
