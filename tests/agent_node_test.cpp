// The real agent with its NodeLTS worker (src/agent/sessiond_worker.js under
// Debian's node) driven through AgentChannel over a socketpair.

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <cctype>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "support/agent_fixture.hpp"

namespace sessiond {
namespace {

using namespace std::chrono_literals;
using test_support::AgentTest;

constexpr const char* kTimeoutMessage = "Request timed out waiting for code execution to complete";

class NodeAgentTest : public AgentTest {
protected:
    void SetUp() override { startAgent({"--language", "node"}); }
};

TEST_F(NodeAgentTest, SaysHelloAsNode) {
    EXPECT_EQ(hello_["type"], "hello");
    EXPECT_EQ(hello_["runtime"]["name"], "node");
    const auto version = hello_["runtime"]["version"].get<std::string>();
    ASSERT_FALSE(version.empty());
    EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(version[0]))) << version;
}

TEST_F(NodeAgentTest, ReturnsOutputAndLastExpression) {
    auto r = run("const x = 6 * 7\nconsole.log(x)\nconsole.error('to stderr')\nx");
    EXPECT_TRUE(r.succeeded);
    EXPECT_EQ(r.stdoutText, "42\n");
    EXPECT_EQ(r.stderrText, "to stderr\n");
    ASSERT_TRUE(r.result.is_number_integer()) << r.result;
    EXPECT_EQ(r.result, 42);
    EXPECT_FALSE(r.stateLost);
    EXPECT_FALSE(r.timedOut);

    auto written = run("process.stdout.write('a'); process.stderr.write('b'); 1");
    EXPECT_EQ(written.stdoutText, "a");
    EXPECT_EQ(written.stderrText, "b");
}

TEST_F(NodeAgentTest, StatePersistsAcrossRequests) {
    run("var v = 1\nlet l = 2\nconst c = 3\nfunction f(n) { return n * 10 }\nglobalThis.g = 4\nclass K { get five() { return 5 } }");
    auto r = run("v + l + c + f(1) + g + new K().five");
    EXPECT_TRUE(r.succeeded) << r.stderrText;
    EXPECT_EQ(r.result, 25);

    run("l += 1");
    EXPECT_EQ(run("l").result, 3);
    auto required = run("const path = require('path')\npath.join('a', 'b')");
    EXPECT_EQ(required.result, "a/b");
    EXPECT_EQ(run("path.basename('/x/y.txt')").result, "y.txt");
}

TEST_F(NodeAgentTest, ResultValueTypes) {
    auto integer = run("40 + 2");
    ASSERT_TRUE(integer.result.is_number_integer()) << integer.result;
    EXPECT_EQ(integer.result, 42);
    auto real = run("1.5");
    ASSERT_TRUE(real.result.is_number_float()) << real.result;
    EXPECT_EQ(real.result, 1.5);

    auto s = run("'42'");
    ASSERT_TRUE(s.result.is_string());
    EXPECT_EQ(s.result, "42");

    auto b = run("3 > 2");
    ASSERT_TRUE(b.result.is_boolean());
    EXPECT_EQ(b.result, true);

    EXPECT_TRUE(run("null").result.is_null());
    EXPECT_EQ(run("undefined").result, "");
    EXPECT_EQ(run("console.log('only output')").result, "");
    EXPECT_EQ(run("let declared = 1").result, "");
    EXPECT_EQ(run("function declaredFn() {}").result, "");

    EXPECT_EQ(run("({ a: 1, b: [1, 2] })").result, "{ a: 1, b: [ 1, 2 ] }");
    EXPECT_EQ(run("{ a: 1 }").result, "{ a: 1 }");  // an object, as in the REPL
    EXPECT_EQ(run("[1, 2, 3]").result, "[ 1, 2, 3 ]");
    EXPECT_EQ(run("new Map([['k', 1]])").result, "Map(1) { 'k' => 1 }");
    EXPECT_EQ(run("10n ** 20n").result, "100000000000000000000n");
    EXPECT_EQ(run("NaN").result, "NaN");
    EXPECT_EQ(run("1 / 0").result, "Infinity");
    EXPECT_EQ(run("-1 / 0").result, "-Infinity");
}

TEST_F(NodeAgentTest, AwaitsPromisesAndKeepsTopLevelAwaitDeclarations) {
    auto r = run("const r = await Promise.resolve(21)\nr * 2");
    EXPECT_TRUE(r.succeeded) << r.stderrText;
    EXPECT_EQ(r.result, 42);
    EXPECT_EQ(run("r").result, 21);

    auto destructured = run(
        "const { a, b: [c] } = await Promise.resolve({ a: 1, b: [2] })\n"
        "async function twice(n) { return 2 * n }\n"
        "a + c");
    EXPECT_EQ(destructured.result, 3) << destructured.stderrText;
    EXPECT_EQ(run("[a, c, typeof twice]").result, "[ 1, 2, 'function' ]");

    EXPECT_EQ(run("(async () => 'from an async IIFE')()").result, "from an async IIFE");
    EXPECT_EQ(run("twice(21)").result, 42);  // a promise as the last value is awaited

    auto slept = run("await new Promise(resolve => setTimeout(resolve, 50))\nconsole.log('woke')\n'slept'");
    EXPECT_EQ(slept.stdoutText, "woke\n");
    EXPECT_EQ(slept.result, "slept");
}

TEST_F(NodeAgentTest, ExceptionReportsStackAndKeepsState) {
    run("let kept = 'still here'");
    auto r = run("function f() {\n  throw new Error('boom')\n}\nf()");
    EXPECT_FALSE(r.succeeded);
    EXPECT_FALSE(r.timedOut);
    EXPECT_FALSE(r.stateLost);
    EXPECT_NE(r.stderrText.find("Uncaught Error: boom"), std::string::npos) << r.stderrText;
    EXPECT_NE(r.stderrText.find("at f (REPL"), std::string::npos) << r.stderrText;
    EXPECT_EQ(r.stderrText.find("sessiond_worker"), std::string::npos) << "worker frames in the stack";
    EXPECT_EQ(r.stderrText.find("node:vm"), std::string::npos) << "worker frames in the stack";
    EXPECT_EQ(r.stderrText.find('\x1b'), std::string::npos) << "ANSI colours in the stack";
    EXPECT_EQ(r.stdoutText, "");
    EXPECT_EQ(r.result, "");
    EXPECT_EQ(run("kept").result, "still here");

    auto rejected = run("await Promise.reject(new TypeError('nope'))");
    EXPECT_FALSE(rejected.succeeded);
    EXPECT_NE(rejected.stderrText.find("Uncaught TypeError: nope"), std::string::npos) << rejected.stderrText;

    auto thrown = run("throw { code: 7 }");
    EXPECT_FALSE(thrown.succeeded);
    EXPECT_NE(thrown.stderrText.find("Uncaught { code: 7 }"), std::string::npos) << thrown.stderrText;
}

TEST_F(NodeAgentTest, SyntaxErrorIsAnError) {
    auto r = run("let broken = ;");
    EXPECT_FALSE(r.succeeded);
    EXPECT_NE(r.stderrText.find("SyntaxError"), std::string::npos) << r.stderrText;
    EXPECT_EQ(run("1 + 1").result, 2);
}

TEST_F(NodeAgentTest, CapsLargeOutput) {
    auto r = run("console.log('x'.repeat(100000))", 20s, 1000);
    EXPECT_TRUE(r.succeeded);
    EXPECT_EQ(r.stdoutText, std::string(1000, 'x') + "\n[output truncated: 99001 characters omitted]");
    // The stream stays in step: the next cell sees only its own output.
    EXPECT_EQ(run("console.log('next')").stdoutText, "next\n");
}

TEST_F(NodeAgentTest, TimeoutInterruptsAndKeepsState) {
    run("let before = 'kept'");
    auto r = run("while (true) {}", 1000ms);
    EXPECT_FALSE(r.succeeded);
    EXPECT_TRUE(r.timedOut);
    EXPECT_FALSE(r.stateLost);
    EXPECT_NE(r.stderrText.find(kTimeoutMessage), std::string::npos) << r.stderrText;
    EXPECT_GE(r.durationMs, 1000);
    EXPECT_LT(r.durationMs, 3000);
    EXPECT_EQ(run("before").result, "kept");
}

TEST_F(NodeAgentTest, NeverResolvingPromiseTimesOutAndRecovers) {
    run("let before = 'kept'");
    auto r = run("await new Promise(() => {})", 1000ms);
    EXPECT_FALSE(r.succeeded);
    EXPECT_TRUE(r.timedOut);
    EXPECT_FALSE(r.stateLost);
    EXPECT_NE(r.stderrText.find(kTimeoutMessage), std::string::npos) << r.stderrText;
    EXPECT_LT(r.durationMs, 3000);

    auto next = run("before");
    EXPECT_TRUE(next.succeeded);
    EXPECT_EQ(next.result, "kept");
}

TEST_F(NodeAgentTest, BusyCallbackRestartsInterpreter) {
    // A loop in a promise continuation runs outside the interruptible part
    // of the cell: the agent kills the worker after the grace period.
    run("let before = 'lost'");
    auto r = run("await null\nwhile (true) {}", 1000ms);
    EXPECT_TRUE(r.timedOut);
    EXPECT_TRUE(r.stateLost);
    EXPECT_NE(r.stderrText.find(kTimeoutMessage), std::string::npos) << r.stderrText;

    auto next = run("[typeof before, 6 * 7]");
    EXPECT_TRUE(next.succeeded);
    EXPECT_EQ(next.result, "[ 'undefined', 42 ]");
    EXPECT_FALSE(next.stateLost);
}

TEST_F(NodeAgentTest, ProcessExitEndsInterpreterAfterTheCell) {
    run("let before = 1");
    auto r = run("console.log('leaving')\nprocess.exit()");
    EXPECT_TRUE(r.succeeded);
    EXPECT_EQ(r.stdoutText, "leaving\n");
    EXPECT_TRUE(r.stateLost);
    EXPECT_EQ(run("typeof before").result, "undefined");

    auto failed = run("process.exit(3)");
    EXPECT_FALSE(failed.succeeded);
    EXPECT_TRUE(failed.stateLost);

    auto killed = run("process.kill(process.pid, 'SIGKILL')");
    EXPECT_NE(killed.stderrText.find("(signal 9)"), std::string::npos) << killed.stderrText;
    EXPECT_TRUE(killed.stateLost);

    auto next = run("6 * 7");
    EXPECT_TRUE(next.succeeded);
    EXPECT_EQ(next.result, 42);
}

TEST_F(NodeAgentTest, ErrorInCallbackDoesNotEndSession) {
    auto r = run("setTimeout(() => { throw new Error('in a timer') }, 0)\n"
                 "await new Promise(resolve => setTimeout(resolve, 50))");
    EXPECT_FALSE(r.succeeded);
    EXPECT_NE(r.stderrText.find("Uncaught Error: in a timer"), std::string::npos) << r.stderrText;
    EXPECT_FALSE(r.stateLost);
    EXPECT_EQ(run("'alive'").result, "alive");
}

TEST_F(NodeAgentTest, ExitsWithItsWorkerWhenChannelCloses) {
    expectExitWithWorkerOnClose("process.pid");
}

class NodeWorkdirAgentTest : public AgentTest {
protected:
    void SetUp() override {
        workdir_ = std::filesystem::temp_directory_path() / ("sessiond-node-test-" + std::to_string(::getpid()));
        std::filesystem::create_directories(workdir_ / "node_modules" / "pkg");
        std::ofstream(workdir_ / "helper.js") << "module.exports = { value: 41 };\n";
        std::ofstream(workdir_ / "node_modules" / "pkg" / "index.js") << "module.exports = 'from pkg';\n";
        startAgent({"--language", "node", "--workdir", workdir_.string()});
    }
    void TearDown() override {
        AgentTest::TearDown();
        std::filesystem::remove_all(workdir_);
    }
    std::filesystem::path workdir_;
};

TEST_F(NodeWorkdirAgentTest, RequiresFromTheWorkingDirectory) {
    EXPECT_EQ(run("process.cwd()").result, workdir_.string());
    auto helper = run("require('./helper').value + 1");
    EXPECT_EQ(helper.result, 42) << helper.stderrText;
    EXPECT_EQ(run("require('pkg')").result, "from pkg");
    EXPECT_EQ(run("(await import('pkg')).default").result, "from pkg");

    auto written = run("require('fs').writeFileSync('out.txt', 'data')\nfs.readFileSync('out.txt', 'utf8')");
    EXPECT_EQ(written.result, "data") << written.stderrText;
    EXPECT_TRUE(std::filesystem::exists(workdir_ / "out.txt"));
}

}  // namespace
}  // namespace sessiond
