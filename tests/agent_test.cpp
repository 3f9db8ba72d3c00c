// The real agent (src/agent/sessiond_agent.py under Debian's Python) driven
// through AgentChannel over a socketpair.

#include <sys/wait.h>
#include <signal.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sessiond/base64.hpp"
#include "support/agent_fixture.hpp"

namespace sessiond {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using test_support::AgentProcess;

struct Png {
    std::uint32_t width = 0;
    std::uint32_t height = 0;
};

// The PNG an image result carries; fails the test if the result is not one.
std::optional<Png> pngOf(const json& result) {
    EXPECT_TRUE(result.is_object()) << result.dump().substr(0, 300);
    if (!result.is_object()) return std::nullopt;
    EXPECT_EQ(result.value("type", ""), "image");
    EXPECT_EQ(result.value("format", ""), "png");
    if (!result.contains("base64_data") || !result["base64_data"].is_string()) {
        ADD_FAILURE() << "no base64_data in " << result.dump().substr(0, 300);
        return std::nullopt;
    }
    const auto bytes = decodeBase64(result["base64_data"].get<std::string>());
    EXPECT_TRUE(bytes) << "base64_data is not base64";
    if (!bytes) return std::nullopt;
    const std::string signature = "\x89PNG\r\n\x1a\n";
    EXPECT_EQ(bytes->substr(0, 8), signature) << "not a PNG";
    if (bytes->size() < 24 || bytes->compare(0, 8, signature) != 0) return std::nullopt;
    auto be32 = [&](std::size_t at) {
        std::uint32_t v = 0;
        for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>((*bytes)[at + i]);
        return v;
    };
    return Png{be32(16), be32(20)};  // the IHDR chunk comes first
}

std::string readFirstLine(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

// The agent's tests run with either kind of Python worker: one started
// fresh (a microVM's, or a pool's with namespaceSandbox.zygote off), and one
// forked from the agent's warm interpreter (a zygote's sessions), to which
// the agent lends the channel so that it answers executions itself.
std::vector<std::string> workerArgs(bool forked, std::vector<std::string> args = {}) {
    if (forked) args.push_back("--fork-workers");
    return args;
}

std::string workerKind(const ::testing::TestParamInfo<bool>& info) {
    return info.param ? "ForkedWorker" : "FreshWorker";
}

class AgentTest : public test_support::AgentTest, public ::testing::WithParamInterface<bool> {
protected:
    void SetUp() override { startAgent(workerArgs(GetParam())); }
};

INSTANTIATE_TEST_SUITE_P(Workers, AgentTest, ::testing::Bool(), workerKind);

TEST_P(AgentTest, SaysHello) {
    EXPECT_EQ(hello_["type"], "hello");
    EXPECT_EQ(hello_["protocol"], kAgentProtocolVersion);
    EXPECT_EQ(hello_["runtime"]["name"], "python");
    EXPECT_EQ(hello_["runtime"]["version"].get<std::string>().rfind("3.", 0), 0u);
    EXPECT_EQ(hello_["agentPid"], agent_.pid());
}

TEST_P(AgentTest, ReturnsOutputAndLastExpression) {
    auto r = run("x = 6*7\nprint(x)\nx");
    EXPECT_TRUE(r.succeeded);
    EXPECT_EQ(r.stdoutText, "42\n");
    EXPECT_EQ(r.stderrText, "");
    ASSERT_TRUE(r.result.is_number_integer()) << r.result;
    EXPECT_EQ(r.result, 42);
    EXPECT_FALSE(r.stateLost);
    EXPECT_FALSE(r.timedOut);
}

TEST_P(AgentTest, StatePersistsAcrossRequests) {
    run("import math\nvalues = [1, 2, 3]");
    auto r = run("values.append(4)\nmath.prod(values)");
    EXPECT_TRUE(r.succeeded);
    EXPECT_EQ(r.result, 24);
}

// The worker skips IPython's tokenizing passes for a cell that has none of
// the characters they act on, remembers each cell's transformed form, and
// asks IPython whether a cell is quiet or async only when it could be: each
// kind of cell those passes are for must still behave as in IPython.
TEST_P(AgentTest, IPythonSyntaxStillWorks) {
    const std::string cwd = run("import os\nos.getcwd()").result.get<std::string>();
    EXPECT_EQ(run("here = %pwd\nhere").result, cwd);
    EXPECT_EQ(run("pwd").result, cwd);  // automagic, a single-line cell
    // IPython runs a shell escape on a terminal of its own: its lines end in \r\n.
    EXPECT_EQ(run("!echo shell-escape").stdoutText, "shell-escape\r\n");
    EXPECT_EQ(run("lines = !echo captured\nlines[0]").result, "captured");
    EXPECT_NE(run("len?").stdoutText.find("Return the number of items"), std::string::npos);
    EXPECT_EQ(run("/abs -3").result, 3);
    EXPECT_EQ(run("import asyncio\nawait asyncio.sleep(0)\n5").result, 5);
    EXPECT_EQ(run("1 + 1;").result, "");
    EXPECT_EQ(run("1 + 1  # a; comment").result, 2);
    EXPECT_EQ(run("'a;b'").result, "a;b");
    // The same text twice runs twice; a bare call still reads as a statement.
    EXPECT_EQ(run("print(7)").stdoutText, "7\n");
    auto again = run("print(7)");
    EXPECT_EQ(again.stdoutText, "7\n");
    EXPECT_EQ(again.result, "");
}

// The worker returns most cells as they are instead of running IPython's
// transforms on them (sessiond_worker._PlainCells); each must come out as
// IPython's own transform_cell makes it.
TEST_P(AgentTest, TransformCellMatchesIPython) {
    auto r = run(R"PY(from IPython.core.interactiveshell import InteractiveShell
ip = get_ipython()
ip.user_ns["cd_shadow_test"] = 1
from IPython.core.macro import Macro
ip.user_ns["mac"] = Macro("1 + 1\n")
ip.user_ns["pwd_value"] = 2
cells = ["print(1)", "1 + 1", "x = 5", "x", "y", "pwd", "ls -l", "cd /tmp", "time 1", "who", "  1 + 1",
         "\n\n3", "\t2", "\x0c2", ">>> 1 + 1", ">>> a = 1\n>>> a", "a = (1,\n... 2)", "In [3]: 4",
         "x = 1\n   ...: 2", "%pwd", "%%time\n1", "!ls", "len?", "/abs -3", ",print a b", ";print a",
         "1 + 1;", "# -*- coding: utf-8 -*-\n1", "a = 1 # -*- x -*-", "def f():\n    return 1\nf()",
         "for i in range(3):\n    print(i)", "\u00e9 = 1", "_x = 2", "[i for i in range(3)]",
         "print(1)\n", "print(1)\n\n", "x\r\ny", "x\ry", "lambda: 1", "a != b", "cd_shadow_test",
         "get_ipython", "exit", "quit()", "help", "print (1)", "x.y", "ls.x", "pwd()", "1\n2\n3",
         "mac", "mac.x", "pwd_value", "*a, b = 1, 2", "x.y = 3", "\ufeff1"]
mismatched = [c for c in cells if ip.transform_cell(c) != InteractiveShell.transform_cell(ip, c)]
calls = []
real = ip.prefilter_manager.prefilter_lines
ip.prefilter_manager.prefilter_lines = lambda *a, **k: calls.append(a[0]) or real(*a, **k)
try:
    for c in ("print(1)", "pwd", "x = 5"):
        ip.transform_cell(c)
finally:
    del ip.prefilter_manager.prefilter_lines
(mismatched, calls))PY");
    ASSERT_TRUE(r.succeeded) << r.stderrText;
    // Only `pwd` (automagic) went through IPython's prefilter.
    EXPECT_EQ(r.result, "([], ['pwd\\n'])");
}

TEST_P(AgentTest, PlainCellValuesHaveNoObservers) {
    // The worker keeps what IPython sets on every cell as plain attributes
    // instead of traits (PlainHistory in sessiond_worker.py): right only
    // while nothing observes them, and worth it only while IPython's own
    // classes make them traits.
    auto r = run(R"PY(import traitlets
from IPython.core.displayhook import DisplayHook
from IPython.core.history import HistoryManager
from IPython.core.interactiveshell import InteractiveShell
ip = get_ipython()
owners = [(ip, InteractiveShell, ["execution_count", "last_execution_succeeded", "last_execution_result"]),
          (ip.history_manager, HistoryManager, ["_i00", "_i", "_ii", "_iii"]),
          (ip.displayhook, DisplayHook, ["exec_result"])]
observed = [n for obj, _, names in owners for n in names + [traitlets.All]
            if obj._trait_notifiers.get(n, {}).get("change")]
traits_in_ipython = all(n in cls.class_traits() for _, cls, names in owners for n in names)
plain = [n for obj, _, names in owners for n in names if n not in obj.traits()]
(observed, traits_in_ipython, len(plain)))PY");
    ASSERT_TRUE(r.succeeded) << r.stderrText;
    EXPECT_EQ(r.result, "([], True, 8)");

    // What a user reads of them still changes as in IPython.
    run("a = 1");
    run("a + 1");
    run("a + 2");
    auto h = run("(_i, _ii, _iii, get_ipython().execution_count, _, __, len(In), sorted(Out))");
    ASSERT_TRUE(h.succeeded) << h.stderrText;
    EXPECT_EQ(h.result, "('a + 2', 'a + 1', 'a = 1', 5, 3, 2, 6, [1, 3, 4])");
}

TEST_P(AgentTest, ResultValueTypes) {
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

TEST_P(AgentTest, LongListUsesIpythonPrettyRepr) {
    auto r = run("list(range(30))");
    std::string expected = "[0,\n";
    for (int i = 1; i < 29; ++i) expected += " " + std::to_string(i) + ",\n";
    expected += " 29]";
    EXPECT_EQ(r.result, expected);
}

TEST_P(AgentTest, ExceptionReportsTracebackAndKeepsState) {
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

TEST_P(AgentTest, SyntaxErrorIsAnError) {
    auto r = run("def broken(:\n    pass");
    EXPECT_FALSE(r.succeeded);
    EXPECT_NE(r.stderrText.find("SyntaxError"), std::string::npos) << r.stderrText;
    EXPECT_TRUE(run("1 + 1").succeeded);
}

TEST_P(AgentTest, CapturesSubprocessOutput) {
    auto r = run("import os\nos.system('echo hi; echo oops >&2')");
    EXPECT_TRUE(r.succeeded);
    EXPECT_EQ(r.stdoutText, "hi\n");
    EXPECT_EQ(r.stderrText, "oops\n");
    EXPECT_EQ(r.result, 0);
}

TEST_P(AgentTest, CapsLargeOutput) {
    auto r = run("print('x' * 100000)", 20s, 1000);
    EXPECT_TRUE(r.succeeded);
    EXPECT_EQ(r.stdoutText, std::string(1000, 'x') + "\n[output truncated: 99001 characters omitted]");
    // The stream stays in step: the next cell sees only its own output.
    EXPECT_EQ(run("print('next')").stdoutText, "next\n");
}

TEST_P(AgentTest, TimeoutInterruptsAndKeepsState) {
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

TEST_P(AgentTest, IgnoredInterruptRestartsInterpreter) {
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

TEST_P(AgentTest, InterpreterExitIsReportedAndRecovered) {
    auto r = run("print('bye', flush=True)\nimport os\nos._exit(3)");
    EXPECT_FALSE(r.succeeded);
    EXPECT_FALSE(r.timedOut);
    EXPECT_TRUE(r.stateLost);
    EXPECT_EQ(r.stdoutText, "bye\n");
    EXPECT_NE(r.stderrText.find("the interpreter exited (exit code 3)"), std::string::npos) << r.stderrText;

    auto killed = run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)");
    EXPECT_NE(killed.stderrText.find("(signal 9)"), std::string::npos) << killed.stderrText;
    EXPECT_EQ(killed.stdoutText, "") << "output of the interpreter before";

    auto next = run("6 * 7");
    EXPECT_TRUE(next.succeeded);
    EXPECT_EQ(next.result, 42);
}

TEST_P(AgentTest, ExitEndsInterpreterAfterTheCell) {
    run("before = 1");
    auto r = run("print('leaving')\nexit()");
    EXPECT_TRUE(r.succeeded);
    EXPECT_EQ(r.stdoutText, "leaving\n");
    EXPECT_TRUE(r.stateLost);
    EXPECT_EQ(run("'before' in dir()").result, false);
}

TEST_P(AgentTest, AnswersPingAndRejectsUnknownTypes) {
    auto pong = request({{"type", "ping"}});
    EXPECT_EQ(pong["type"], "pong");

    auto rejected = request({{"type", "uploadFile"}});
    EXPECT_EQ(rejected["type"], "error");
    EXPECT_FALSE(parseExecuteReply(rejected).ok());
    EXPECT_TRUE(run("1").succeeded);
}

// Only malformed snapshot requests here: a well-formed "restore" would set
// this host's clock (the VM tests send real ones, libvirt_restore_test.cpp).
TEST_P(AgentTest, RefusesMalformedSnapshotRestores) {
    const std::string entropy = std::string(32, 'e');
    for (auto message : {nlohmann::json{{"type", "snapshot"}, {"phase", "rewind"}},
                         nlohmann::json(makeSnapshotRestoreMessage(entropy.substr(1), std::chrono::system_clock::now(),
                                                                   std::string(32, 'a'))),
                         nlohmann::json(makeSnapshotRestoreMessage(entropy, std::chrono::system_clock::now(), "ABC")),
                         nlohmann::json{{"type", "snapshot"}, {"phase", "restore"}, {"entropy", "!!"}}}) {
        auto refused = request(message);
        EXPECT_EQ(refused["type"], "error") << message;
        EXPECT_EQ(refused["code"], "invalidRequest") << message;
        EXPECT_FALSE(parseSnapshotReply(refused).ok());
    }
    EXPECT_TRUE(run("1").succeeded);
}

// An agent on a socket from its host is never a VM's: it must not touch the
// interfaces of the machine it runs on, however well-formed the request.
TEST_P(AgentTest, RefusesToConfigureANetworkCardOutsideAMicroVm) {
    GuestNetwork network{"52:54:0a:d5:00:05", "10.213.0.5", 16, "10.213.0.1", "nameserver 10.213.0.1\n"};
    auto refused = request(makeNetworkMessage(network));
    EXPECT_EQ(refused["code"], "invalidRequest") << refused;
    EXPECT_NE(refused.value("message", "").find("microVM"), std::string::npos) << refused;
    EXPECT_FALSE(parseAcknowledgement(refused, "network").ok());
    EXPECT_TRUE(parseAcknowledgement({{"type", "network"}, {"id", 3}}, "network").ok());
    EXPECT_TRUE(run("1").succeeded);
}

// AutoGen's ACADynamicSessionsCodeExecutor lists packages this way and parses
// stderr + stdout + result as one text.
TEST_P(AgentTest, AutogenPackageListBootstrap) {
    auto r = run("\nimport pkg_resources\n[d.project_name for d in pkg_resources.working_set]\n");
    EXPECT_TRUE(r.succeeded) << r.stderrText;
    EXPECT_EQ(r.stdoutText, "");
    ASSERT_TRUE(r.result.is_string()) << r.result;
    const std::string output = r.stderrText + r.stdoutText + r.result.get<std::string>();
    std::string list = output;
    while (!list.empty() && (list.front() == '[' || list.front() == ']')) list.erase(0, 1);
    while (!list.empty() && (list.back() == '[' || list.back() == ']')) list.pop_back();
    std::set<std::string> names;
    for (std::size_t start = 0;;) {
        const auto end = list.find(",\n", start);
        std::string name = list.substr(start, end == std::string::npos ? std::string::npos : end - start);
        const auto first = name.find_first_not_of(" '");
        const auto last = name.find_last_not_of(" '");
        name = first == std::string::npos ? "" : name.substr(first, last - first + 1);
        EXPECT_FALSE(name.empty());
        EXPECT_EQ(name.find_first_of("\n[]'\""), std::string::npos) << name;
        names.insert(name);
        if (end == std::string::npos) break;
        start = end + 2;
    }
    EXPECT_GT(names.size(), 10u) << output.substr(0, 300);
    EXPECT_EQ(names.count("ipython"), 1u) << output.substr(0, 300);
}

TEST_P(AgentTest, MemoryErrorAbortsTheCellAndKeepsTheSession) {
    run("kept = 'still here'");
    auto r = run("big = bytearray(1 << 60)");
    EXPECT_FALSE(r.succeeded);
    EXPECT_FALSE(r.timedOut);
    EXPECT_FALSE(r.stateLost);
    EXPECT_NE(r.stderrText.find("MemoryError"), std::string::npos) << r.stderrText;
    EXPECT_NE(r.stderrText.find("Traceback"), std::string::npos) << r.stderrText;
    EXPECT_NE(r.stderrText.find("\nExecution aborted"), std::string::npos) << r.stderrText;
    EXPECT_EQ(r.result, "");
    EXPECT_EQ(run("kept").result, "still here");
    EXPECT_EQ(run("6 * 7").result, 42);
}

TEST_P(AgentTest, WorkerVolunteersForTheOomKiller) {
    auto r = run("open('/proc/self/oom_score_adj').read().strip()");
    EXPECT_EQ(r.result, "1000");
    // The agent keeps the score it inherited, so the kernel prefers the worker.
    EXPECT_EQ(readFirstLine("/proc/" + std::to_string(agent_.pid()) + "/oom_score_adj"),
              readFirstLine("/proc/self/oom_score_adj"));
}

TEST_P(AgentTest, DoesNotImportMatplotlibUnasked) {
    EXPECT_EQ(run("import sys\n'matplotlib' in sys.modules").result, false);
}

TEST_P(AgentTest, ExitsWithItsWorkerWhenChannelCloses) {
    expectExitWithWorkerOnClose("import os\nos.getpid()");
}

// A microVM guest's init runs the agent in a cgroup under the pool's process
// limit. Here the cgroup is a directory the test owns, and the cell moves its
// counter as refused forks would.
class LimitsCgroupAgentTest : public test_support::AgentTest {
protected:
    void SetUp() override {
        cgroup_ = std::filesystem::temp_directory_path() / ("sessiond-agent-cgroup-" + std::to_string(::getpid()));
        std::filesystem::create_directories(cgroup_);
        std::ofstream(cgroup_ / "pids.max") << "64\n";
        std::ofstream(cgroup_ / "pids.events") << "max 2\n";
        startAgent({"--limits-cgroup", cgroup_.string()});
    }
    void TearDown() override {
        test_support::AgentTest::TearDown();
        std::filesystem::remove_all(cgroup_);
    }
    json execute(const std::string& code) { return request(makeExecuteMessage({code, 20s, 4096})); }
    std::filesystem::path cgroup_;
};

TEST_F(LimitsCgroupAgentTest, ReportsTheForksRefusedDuringAnExecution) {
    EXPECT_FALSE(execute("1 + 1").contains("limits")) << "nothing was refused";
    const json reply = execute("open('" + (cgroup_ / "pids.events").string() + "', 'w').write('max 5\\n')");
    EXPECT_EQ(reply["status"], "ok") << reply;
    EXPECT_EQ(reply["limits"], json({{"pidsLimit", 64}, {"pidsRefused", 3}})) << reply;
    const GuestLimitHits hits = parseGuestLimitHits(reply);
    EXPECT_EQ(hits.pidsLimit, 64u);
    EXPECT_EQ(hits.pidsRefused, 3u);
    EXPECT_FALSE(execute("2 + 2").contains("limits")) << "a hit is reported once";
}

class PreloadedAgentTest : public test_support::AgentTest, public ::testing::WithParamInterface<bool> {
protected:
    void SetUp() override {
        workdir_ = std::filesystem::temp_directory_path() / ("sessiond-agent-test-" + std::to_string(::getpid()));
        std::filesystem::create_directories(workdir_);
        startAgent(workerArgs(GetParam(), {"--preload", "numpy,pandas,matplotlib", "--workdir", workdir_.string()}));
    }
    void TearDown() override {
        test_support::AgentTest::TearDown();
        std::filesystem::remove_all(workdir_);
    }
    std::filesystem::path workdir_;
};

INSTANTIATE_TEST_SUITE_P(Workers, PreloadedAgentTest, ::testing::Bool(), workerKind);

TEST_P(PreloadedAgentTest, ImportsModulesAndUsesWorkdirAndAgg) {
    EXPECT_EQ(run("import sys\n'numpy' in sys.modules and 'pandas' in sys.modules").result, true);
    EXPECT_EQ(run("import os\nos.getcwd()").result, workdir_.string());
    EXPECT_EQ(run("import matplotlib\nmatplotlib.get_backend()").result, "agg");

    // Closed, the figure is not shown, so the last expression is the result.
    auto plot = run(
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3])\n"
        "plt.savefig('plot.png')\n"
        "plt.close()\n"
        "os.path.getsize('plot.png') > 0");
    EXPECT_EQ(plot.result, true) << plot.stderrText;
}

TEST_P(PreloadedAgentTest, PltShowReturnsPngImage) {
    auto r = run(
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [4, 1, 9])\n"
        "plt.title('a line')\n"
        "plt.show()");
    EXPECT_TRUE(r.succeeded) << r.stderrText;
    EXPECT_EQ(r.stdoutText, "");
    EXPECT_EQ(r.stderrText, "");
    auto png = pngOf(r.result);
    ASSERT_TRUE(png);
    // Jupyter's inline rendering: 6.4 x 4.8 in at 100 dpi, cropped to the drawing.
    EXPECT_GT(png->width, 400u);
    EXPECT_LE(png->width, 640u);
    EXPECT_GT(png->height, 300u);
    EXPECT_LE(png->height, 480u);
}

TEST_P(PreloadedAgentTest, FigureAsLastExpressionIsImage) {
    auto r = run(
        "import matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots()\n"
        "ax.bar(['a', 'b'], [3, 5])\n"
        "fig");
    EXPECT_TRUE(r.succeeded) << r.stderrText;
    EXPECT_TRUE(pngOf(r.result));
    // A figure made without pyplot is shown only as an expression.
    auto plain = run(
        "from matplotlib.figure import Figure\n"
        "other = Figure()\n"
        "other.add_subplot().plot([1, 2])\n"
        "other");
    EXPECT_TRUE(pngOf(plain.result));
}

TEST_P(PreloadedAgentTest, OpenFigureIsShownWithoutShowAndWinsOverTheExpression) {
    auto r = run("import matplotlib.pyplot as plt\nplt.plot([1, 2])");
    EXPECT_TRUE(r.succeeded) << r.stderrText;
    EXPECT_TRUE(pngOf(r.result)) << "not the Line2D list repr";
}

TEST_P(PreloadedAgentTest, ShownFiguresAreClosedSoTheNextCellHasNoImage) {
    auto first = run("import matplotlib.pyplot as plt\nplt.hist([1, 2, 2, 3, 3, 3])\nplt.show()");
    EXPECT_TRUE(pngOf(first.result));
    auto second = run("x = 20\nx + 1");
    EXPECT_EQ(second.result, 21);
    EXPECT_EQ(run("plt.get_fignums()").result, "[]");
    auto third = run("plt.scatter([1], [2])\n'plotted'");
    EXPECT_TRUE(pngOf(third.result));
    EXPECT_EQ(run("print('no plot')").result, "");
}

TEST_P(PreloadedAgentTest, LastOfSeveralImagesIsTheResult) {
    auto r = run(
        "import matplotlib.pyplot as plt\n"
        "plt.figure(figsize=(2, 6))\n"
        "plt.plot([1, 2])\n"
        "plt.show()\n"
        "plt.figure(figsize=(8, 2))\n"
        "plt.plot([2, 1])");
    auto png = pngOf(r.result);
    ASSERT_TRUE(png);
    EXPECT_GT(png->width, png->height) << "the tall first figure was returned";
}

TEST_P(PreloadedAgentTest, DisplayedImagesAreResults) {
    auto fig = run(
        "import matplotlib.pyplot as plt\n"
        "from IPython.display import display, Image\n"
        "fig = plt.figure()\n"
        "fig.add_subplot().plot([3, 1])\n"
        "display(fig)\n"
        "plt.close(fig)\n"
        "print('shown')");
    EXPECT_EQ(fig.stdoutText, "shown\n");
    EXPECT_TRUE(pngOf(fig.result));

    // A 1x1 PNG.
    auto image = run(
        "import base64\n"
        "display(Image(data=base64.b64decode("
        "'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')))");
    auto png = pngOf(image.result);
    ASSERT_TRUE(png);
    EXPECT_EQ(png->width, 1u);
    EXPECT_EQ(png->height, 1u);
}

TEST_P(PreloadedAgentTest, FailedCellReturnsNoImageAndClosesFigures) {
    auto r = run("import matplotlib.pyplot as plt\nplt.plot([1])\n1 / 0");
    EXPECT_FALSE(r.succeeded);
    EXPECT_EQ(r.result, "");
    EXPECT_EQ(run("plt.get_fignums()").result, "[]");
}

}  // namespace
}  // namespace sessiond
