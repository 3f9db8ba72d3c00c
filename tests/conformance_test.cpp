// One test per real client of Azure's dynamic sessions: the sessiond binary
// with a PythonLTS pool and a Shell pool on namespace sandboxes, and the
// client's requests replayed by tests/conformance/* exactly as that client
// sends them (its HTTP library, URLs, headers, bodies), its reads of the
// answers done as it does them. A script exits non-zero on the first answer
// the client would choke on; its output is printed.
//
// The clients always send a bearer token; the scripts take it from
// SESSIOND_TEST_TOKEN, an API key the daemon is configured with, so every
// request also passes the key check as that client sends it.

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <gtest/gtest.h>

#include "sessiond/auth/api_keys.hpp"
#include "support/daemon.hpp"
#include "support/http_client.hpp"
#include "support/leaks.hpp"

using sessiond::testing::Daemon;
using sessiond::testing::freePort;
using sessiond::testing::HttpClient;
using namespace std::chrono_literals;

namespace {

// Debian's interpreter, which has the clients' HTTP libraries
// (python3-requests, python3-httpx, python3-aiohttp).
constexpr const char* kPython = "/usr/bin/python3";
// Within CTest's 300 s per test, so a hung client fails with its output.
constexpr auto kClientLimit = 200s;

struct ClientRun {
    int exitCode = -1;  // -1: killed at the time limit
    std::string output;
    double seconds = 0;
};

bool onPath(const std::string& program) {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path ? path : "");
    for (std::string dir; std::getline(dirs, dir, ':');)
        if (!dir.empty() && ::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
    return false;
}

// Runs `argv` with `extraEnv` added to this process's environment, less any
// proxy settings (the clients' libraries would send 127.0.0.1 through them)
// and SESSIOND_* variables (the test sets those), with stdout and stderr into
// `logPath`, in its own process group so a hung client is killed whole.
ClientRun runClient(const std::vector<std::string>& argv, const std::vector<std::string>& extraEnv,
                    const std::string& logPath) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
        std::string entry(*e);
        std::string name = entry.substr(0, entry.find('='));
        std::string lower = name;
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (lower.find("proxy") != std::string::npos || name.rfind("SESSIOND_", 0) == 0) continue;
        env.push_back(entry);
    }
    env.insert(env.end(), extraEnv.begin(), extraEnv.end());
    std::vector<char*> envp, args;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> argvCopy = argv;
    for (auto& a : argvCopy) args.push_back(a.data());
    args.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attributes, 0);

    ClientRun run;
    auto started = std::chrono::steady_clock::now();
    pid_t pid = -1;
    int spawned = posix_spawnp(&pid, args[0], &actions, &attributes, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    if (spawned != 0) {
        run.output = "could not start " + argv[0] + ": " + std::strerror(spawned);
        return run;
    }
    auto deadline = started + kClientLimit;
    int status = 0;
    while (true) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid) {
            run.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        std::this_thread::sleep_for(50ms);
    }
    run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::ifstream in(logPath);
    run.output.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return run;
}

class Conformance : public ::testing::Test {
protected:
    void SetUp() override {
        static int count = 0;
        port_ = freePort();
        cgroup_ = "sessiond-test-conformance-" + std::to_string(getpid()) + "-" + std::to_string(++count);
        auto pool = [](const char* name, const char* type) {
            return nlohmann::json{{"name", name},
                                  {"containerType", type},
                                  {"scaleConfiguration", {{"maxConcurrentSessions", 6}, {"readySessionInstances", 1}}},
                                  {"resources", {{"memoryMiB", 768}}}};
        };
        auto python = pool("default", "PythonLTS");
        python["execution"] = {{"preloadModules", {"numpy", "pandas", "matplotlib"}}};
        apiKey_ = sessiond::newApiKey();
        nlohmann::json config = {{"listen", {{"address", "127.0.0.1"}, {"port", port_}}},
                                 {"auth",
                                  {{"keys",
                                    {{{"name", "conformance"},
                                      {"role", "SessionExecutor"},
                                      {"sha256", sessiond::toHex(sessiond::sha256(apiKey_))}}}}}},
                                 {"cgroupName", cgroup_},
                                 {"pools", {python, pool("shell", "Shell")}}};
        daemon_ = std::make_unique<Daemon>(config);
        if (overHttps()) {
            // A self-signed certificate for 127.0.0.1; the client is given it
            // (SESSIOND_TEST_CA_FILE) as a user gives it their CA.
            certificate_ = daemon_->directory() + "/certificate.pem";
            const std::string key = daemon_->directory() + "/key.pem";
            const std::string command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                                        "-days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
                                        key + " -out " + certificate_ + " 2>/dev/null";
            ASSERT_EQ(std::system(command.c_str()), 0) << "openssl could not make a certificate";
            config["listen"]["tls"] = {{"certificateFile", certificate_}, {"privateKeyFile", key}};
            daemon_->writeConfig(config);
        }
        clientTmp_ = daemon_->directory() + "/client-tmp";
        std::filesystem::create_directory(clientTmp_);
        daemon_->start();
        ASSERT_TRUE(waitForReady("default", 60s)) << daemon_->log();
        ASSERT_TRUE(waitForReady("shell", 60s)) << daemon_->log();
    }

    void TearDown() override {
        if (!daemon_) return;
        daemon_->signal(SIGTERM);
        EXPECT_EQ(daemon_->wait(60s), 0) << daemon_->log();
        EXPECT_TRUE(sessiond::testing::processesMatching("/" + cgroup_ + "/").empty()) << "sandbox processes left";
        EXPECT_TRUE(sessiond::testing::cgroupsNamed(cgroup_).empty()) << "cgroups left";
        std::error_code ec;
        for (const auto& left : std::filesystem::directory_iterator(clientTmp_, ec))
            ADD_FAILURE() << "the client left a temporary file: " << left.path();
        daemon_.reset();
    }

    // Polls GET /pools/{name} until a sandbox is ready (the daemon may not be
    // listening yet).
    bool waitForReady(const std::string& name, std::chrono::seconds limit) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < deadline) {
            try {
                nlohmann::json pool;
                if (overHttps()) {
                    pool = nlohmann::json::parse(
                        readCommand("curl -sf --cacert " + certificate_ + " -H 'Authorization: Bearer " + apiKey_ +
                                    "' " + endpoint(name)),
                        nullptr, false);
                } else {
                    auto r = HttpClient(port_).withKey(apiKey_).get("/pools/" + name);
                    if (r.status == 200) pool = r.json();
                }
                if (pool.is_object() && pool["properties"]["sessions"]["unallocated"].get<int>() >= 1) return true;
            } catch (const std::exception&) {
            }
            std::this_thread::sleep_for(100ms);
        }
        return false;
    }

    std::string endpoint(const std::string& pool) const {
        return std::string(overHttps() ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + "/pools/" + pool;
    }

    // Clients that accept only https:// endpoints are tested over TLS.
    virtual bool overHttps() const { return false; }

    static std::string readCommand(const std::string& command) {
        std::string out;
        if (FILE* pipe = ::popen(command.c_str(), "r")) {
            char buffer[4096];
            for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
            ::pclose(pipe);
        }
        return out;
    }

    // Runs one client script and fails the test with its output unless it exits 0.
    void expectClientWorks(const std::vector<std::string>& command) {
        std::vector<std::string> env = {"SESSIOND_POOL_ENDPOINT=" + endpoint("default"),
                                        "SESSIOND_SHELL_POOL_ENDPOINT=" + endpoint("shell"),
                                        "TMPDIR=" + clientTmp_, "PYTHONDONTWRITEBYTECODE=1"};
        env.push_back("SESSIOND_TEST_TOKEN=" + apiKey_);
        if (overHttps()) env.push_back("SESSIOND_TEST_CA_FILE=" + certificate_);
        auto run = runClient(command, env, daemon_->directory() + "/client.log");
        std::cout << run.output << "[client ran " << run.seconds << " s]" << std::endl;
        if (run.exitCode == -1) ADD_FAILURE() << "the client did not finish within " << kClientLimit.count() << " s";
        EXPECT_EQ(run.exitCode, 0) << "the client failed against sessiond:\n" << run.output << "\n--- sessiond log ---\n"
                                   << daemon_->log();
    }

    void expectPythonClientWorks(const std::string& script) {
        ASSERT_EQ(::access(kPython, X_OK), 0) << kPython << " is missing: scripts/install-deps.sh installs it";
        expectClientWorks({kPython, SESSIOND_SOURCE_DIR "/tests/conformance/" + script});
    }

    void expectNodeClientWorks(const std::string& script) {
        ASSERT_TRUE(onPath("node")) << "node is not on PATH: scripts/install-deps.sh installs nodejs";
        expectClientWorks({"node", SESSIOND_SOURCE_DIR "/tests/conformance/js/" + script});
    }

    std::uint16_t port_ = 0;
    std::string cgroup_, clientTmp_, certificate_;
    // In the daemon's configuration; every client sends it as its token.
    std::string apiKey_;
    std::unique_ptr<Daemon> daemon_;
};

}  // namespace

TEST_F(Conformance, LangChainPythonSessionsPythonREPLTool) { expectPythonClientWorks("langchain_python.py"); }

TEST_F(Conformance, LangChainPythonSessionsBashToolAndBackend) { expectPythonClientWorks("langchain_bash.py"); }

TEST_F(Conformance, LangChainJsSessionsPythonREPLTool) { expectNodeClientWorks("langchain_js.mjs"); }

class ConformanceOverHttps : public Conformance {
protected:
    bool overHttps() const override { return true; }
};

// Its endpoint setting is a pydantic HttpsUrl: it takes https:// only.
TEST_F(ConformanceOverHttps, SemanticKernelPython) { expectPythonClientWorks("semantic_kernel_python.py"); }

TEST_F(Conformance, SemanticKernelDotNet) { expectPythonClientWorks("semantic_kernel_dotnet.py"); }

TEST_F(Conformance, AutoGenACADynamicSessionsCodeExecutor) { expectPythonClientWorks("autogen.py"); }

TEST_F(Conformance, LlamaIndexPythonAzureCodeInterpreterToolSpec) { expectPythonClientWorks("llamaindex_python.py"); }

TEST_F(Conformance, LlamaIndexTsAzureDynamicSessionTool) { expectNodeClientWorks("llamaindex_ts.mjs"); }

TEST_F(Conformance, AzureCliSessionCodeInterpreter) { expectPythonClientWorks("azure_cli.py"); }
