// Code-interpreter fidelity through the HTTP API, against real sandboxes on
// both backends: results, images, errors, timeouts, memory exhaustion, output
// caps, the file API, and the NodeLTS and Shell session types. The same
// tests run on namespace jails and on microVMs (under TCG where KVM cannot
// run guests); each backend's daemon is started once for its suite (once
// per test under CTest, which runs every test in its own process).
//
// The microVM suite needs libvirtd and a built guest image, as
// libvirt_e2e_test.cpp does; scripts/test.sh provides both.

#include <unistd.h>

#include <filesystem>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "sessiond/base64.hpp"
#include "sessiond/sandbox/libvirt/libvirt_backend.hpp"
#include "sessiond/sandbox/namespace/namespace_backend.hpp"
#include "support/backend_daemon.hpp"
#include "support/http_client.hpp"
#include "support/leaks.hpp"
#include "support/server_fixture.hpp"
#include "support/vm_files.hpp"

using namespace sessiond;
using sessiond::testing::HttpClient;
using sessiond::testing::HttpResult;
using namespace std::chrono_literals;
namespace beast_http = boost::beast::http;

namespace {

constexpr std::size_t kUploadLimit = 8u << 20;
constexpr std::size_t kDownloadLimit = 12u << 20;

// One daemon with a PythonLTS, a NodeLTS and a Shell pool on one backend.
struct Daemon : sessiond::testing::BackendDaemon {
    explicit Daemon(bool useVm) : BackendDaemon(useVm) {
        config.cgroupName = "sessiond-interp-" + std::to_string(getpid());
        config.http.maxUploadBytes = kUploadLimit;
        config.http.maxDownloadBytes = kDownloadLimit;
        auto pool = [&](const char* name, const char* type, std::size_t ready) {
            PoolConfig p;
            p.name = name;
            p.containerType = type;
            p.backend = vm ? "libvirt" : "namespace";
            p.readySessionInstances = ready;
            p.maxConcurrentSessions = 20;
            p.sandboxStartTimeout = vm ? 240s : 60s;
            p.resources.memoryBytes = 512ull << 20;
            return p;
        };
        // CTest runs each test in its own process, so each starts this
        // daemon: VMs are kept ready only where most tests need them.
        PoolConfig python = pool("py", "PythonLTS", vm ? 1 : 2);
        python.preloadModules = {"numpy", "pandas", "matplotlib"};
        config.pools = {python, pool("node", "NodeLTS", vm ? 0 : 1), pool("sh", "Shell", vm ? 0 : 1)};
        start();
    }
};

using sessiond::testing::Backends;
using sessiond::testing::BackendNames;
using sessiond::testing::MicroVmKind;
using sessiond::testing::NamespaceKind;

template <typename Kind>
class InterpreterE2E : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (Kind::vm && !sessiond::testing::missingVmPrerequisite().empty())
            return;  // SetUp fails each test with the reason
        daemon_ = std::make_unique<Daemon>(Kind::vm);
    }
    static void TearDownTestSuite() { daemon_.reset(); }

    void SetUp() override {
        ASSERT_TRUE(daemon_) << sessiond::testing::missingVmPrerequisite();
        client_ = std::make_unique<HttpClient>(daemon_->server.port());
    }

    // A fresh session identifier per call.
    static std::string newSession() {
        static std::mt19937 random{std::random_device{}()};
        return "it-" + std::to_string(random());
    }

    static std::string query(const std::string& identifier, const std::string& apiVersion = "2024-02-02-preview") {
        return "identifier=" + identifier + "&api-version=" + apiVersion;
    }

    // POST code/execute; the response's `properties`.
    nlohmann::json run(const std::string& pool, const std::string& identifier, const std::string& code,
                       int timeoutSeconds = 0) {
        auto r = client_->execute(pool, identifier, code, timeoutSeconds);
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json()["properties"];
    }

    HttpResult executions(const std::string& pool, const std::string& identifier, const nlohmann::json& body) {
        return client_->post("/pools/" + pool + "/executions?" + query(identifier, "2025-02-02-preview"), body.dump());
    }

    HttpResult upload(const std::string& pool, const std::string& identifier, const std::string& filename,
                      const std::string& content, const std::string& route = "files/upload",
                      const std::string& extraQuery = "") {
        return client_->upload("/pools/" + pool + "/" + route + "?" + query(identifier) + extraQuery, filename, content);
    }

    static std::string text(const nlohmann::json& value) { return value.is_string() ? value.get<std::string>() : ""; }

    static inline std::unique_ptr<Daemon> daemon_;
    std::unique_ptr<HttpClient> client_;
};

TYPED_TEST_SUITE(InterpreterE2E, Backends, BackendNames);

TYPED_TEST(InterpreterE2E, PythonResultsErrorsAndState) {
    const std::string id = this->newSession();
    auto r = this->run("py", id, "x = 6*7\nprint(x)\nx");
    EXPECT_EQ(r["status"], "Success");
    EXPECT_EQ(r["stdout"], "42\n");
    EXPECT_EQ(r["result"], 42);
    EXPECT_EQ(r["executionResult"], 42);
    EXPECT_EQ(this->run("py", id, "float('nan')")["result"], "nan");
    EXPECT_EQ(this->run("py", id, "'text'")["result"], "text");
    EXPECT_TRUE(this->run("py", id, "None")["result"].is_null());
    EXPECT_EQ(this->run("py", id, "print(7*9)")["result"], "");
    EXPECT_EQ(this->run("py", id, "import os\nos.getcwd()")["result"], "/mnt/data");

    // An exception: HTTP 200, Failure, the traceback in stderr, state kept.
    auto failed = this->run("py", id, "def f():\n    return {}['sales_amount']\nf()");
    EXPECT_EQ(failed["status"], "Failure");
    EXPECT_NE(this->text(failed["stderr"]).find("KeyError: 'sales_amount'"), std::string::npos) << failed;
    EXPECT_NE(this->text(failed["stderr"]).find("Traceback"), std::string::npos) << failed;
    EXPECT_EQ(this->run("py", id, "x")["result"], 42);

    // The newer route's shape for the same session.
    auto newer = this->executions("py", id, {{"code", "x + 1"}, {"executionType", "Synchronous"}, {"codeInputType", "Inline"}});
    ASSERT_EQ(newer.status, 200) << newer.body;
    EXPECT_EQ(newer.json()["status"], "Succeeded");
    EXPECT_EQ(newer.json()["result"]["executionResult"], 43);
    EXPECT_EQ(newer.json()["identifier"], id);
    EXPECT_FALSE(newer.header("operation-id").empty());
    auto newerFailed = this->executions("py", id, {{"code", "1/0"}});
    EXPECT_EQ(newerFailed.json()["status"], "Failed") << newerFailed.body;
}

TYPED_TEST(InterpreterE2E, PythonAutoGenBootstrapAndPackages) {
    const std::string id = this->newSession();
    // AutoGen's first execution, parsed the way AutoGen parses it.
    auto r = this->run("py", id, "import pkg_resources\n[d.project_name for d in pkg_resources.working_set]");
    ASSERT_EQ(r["status"], "Success") << r;
    std::string listed = this->text(r["result"]);
    ASSERT_GE(listed.size(), 2u) << r;
    listed = listed.substr(1, listed.size() - 2);
    std::vector<std::string> names;
    for (std::size_t start = 0;;) {
        auto end = listed.find(",\n", start);
        std::string name = listed.substr(start, end == std::string::npos ? std::string::npos : end - start);
        name.erase(0, name.find_first_not_of(' '));  // IPython indents every item but the first
        names.push_back(name);
        if (end == std::string::npos) break;
        start = end + 2;
    }
    EXPECT_GT(names.size(), 20u);
    EXPECT_NE(std::find(names.begin(), names.end(), "'numpy'"), names.end()) << listed;
    EXPECT_NE(std::find(names.begin(), names.end(), "'pandas'"), names.end()) << listed;

    auto imports = this->run("py", id,
                             "import numpy, pandas, matplotlib, scipy, sklearn, sympy, seaborn, statsmodels, networkx, "
                             "openpyxl, PIL, lxml, bs4, tabulate, requests\n'ok'",
                             220);
    EXPECT_EQ(imports["result"], "ok") << imports;

    auto metadata = this->client_->get("/pools/py/metadata?api-version=2025-02-02-preview");
    ASSERT_EQ(metadata.status, 200) << metadata.body;
    auto body = metadata.json();
    EXPECT_EQ(body["runtimes"][0]["name"], "python");
    EXPECT_EQ(this->text(body["runtimes"][0]["version"]).rfind("3.", 0), 0u) << body["runtimes"];
    bool hasPandas = false;
    for (const auto& package : body["preInstalledPackages"]) hasPandas |= package["name"] == "pandas";
    EXPECT_TRUE(hasPandas);
}

TYPED_TEST(InterpreterE2E, PythonPlotComesBackAsPng) {
    const std::string id = this->newSession();
    auto r = this->run("py", id,
                       "import matplotlib.pyplot as plt\n"
                       "plt.plot([1, 4, 9, 16])\n"
                       "plt.title('squares')\n"
                       "plt.show()");
    ASSERT_EQ(r["status"], "Success") << r;
    const auto& image = r["result"];
    ASSERT_TRUE(image.is_object()) << r;
    EXPECT_EQ(image["type"], "image");
    EXPECT_EQ(image["format"], "png");
    auto png = decodeBase64(this->text(image["base64_data"]));
    ASSERT_TRUE(png);
    ASSERT_GT(png->size(), 1000u);
    EXPECT_EQ(png->substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
    EXPECT_EQ(png->substr(12, 4), "IHDR");

    // The figure was shown once; a cell that draws nothing returns no image.
    EXPECT_EQ(this->run("py", id, "1 + 1")["result"], 2);
}

TYPED_TEST(InterpreterE2E, PythonTimeoutInterruptsAndSessionStaysUsable) {
    const std::string id = this->newSession();
    this->run("py", id, "kept = 'still here'");
    auto started = std::chrono::steady_clock::now();
    auto r = this->run("py", id, "while True:\n    pass", 3);
    auto elapsed = std::chrono::steady_clock::now() - started;
    EXPECT_EQ(r["status"], "Failure");
    EXPECT_NE(this->text(r["stderr"]).find("Request timed out waiting for code execution to complete"),
              std::string::npos)
        << r;
    EXPECT_GE(elapsed, 3s);
    EXPECT_LT(elapsed, 15s);
    auto after = this->run("py", id, "kept");
    EXPECT_EQ(after["status"], "Success") << after;
    EXPECT_EQ(after["result"], "still here");
}

TYPED_TEST(InterpreterE2E, PythonMemoryExhaustionFailsCleanly) {
    const std::string id = this->newSession();
    const std::string other = this->newSession();
    this->run("py", other, "neighbour = 'unharmed'");
    this->run("py", id, "before = 1");
    // 2 GB, touched, under a 512 MB limit.
    auto r = this->run("py", id, "b = b'x' * (2 << 30)\nlen(b)", 120);
    EXPECT_EQ(r["status"], "Failure") << r;
    EXPECT_NE(this->text(r["stderr"]).find("Execution aborted"), std::string::npos) << r;
    auto after = this->run("py", id, "6 * 7");
    EXPECT_EQ(after["status"], "Success") << after;
    EXPECT_EQ(after["result"], 42);
    EXPECT_EQ(this->run("py", other, "neighbour")["result"], "unharmed");
}

TYPED_TEST(InterpreterE2E, PythonOutputIsCapped) {
    const std::string id = this->newSession();
    auto r = this->run("py", id, "print('x' * 10000)");
    const std::string out = this->text(r["stdout"]);
    EXPECT_EQ(out.substr(0, 4096), std::string(4096, 'x'));
    EXPECT_NE(out.find("[output truncated: 5905 characters omitted]"), std::string::npos) << out.size();
    EXPECT_LT(out.size(), 4200u);

    auto custom = this->executions("py", id, {{"code", "print('y' * 300)"}, {"outputStreamsMaxLength", 100}});
    EXPECT_EQ(this->text(custom.json()["result"]["stdout"]).substr(0, 101), std::string(100, 'y') + "\n");
}

TYPED_TEST(InterpreterE2E, FilesUploadListDownloadDelete) {
    const std::string id = this->newSession();
    std::string csv = "name,value\n";
    for (int i = 0; i < 100; ++i) csv += "row" + std::to_string(i) + "," + std::to_string(i) + "\n";

    auto uploaded = this->upload("py", id, "data.csv", csv);
    ASSERT_EQ(uploaded.status, 200) << uploaded.body;
    EXPECT_EQ(uploaded.json()["value"][0]["properties"]["filename"], "data.csv");
    EXPECT_EQ(uploaded.json()["value"][0]["properties"]["size"], csv.size());

    // Absolute /mnt/data names (Semantic Kernel, LlamaIndex) and nested paths.
    ASSERT_EQ(this->upload("py", id, "/mnt/data/abs.txt", "absolute").status, 200);
    auto nested = this->upload("py", id, "deep/er/nested.bin", std::string("\0\r\n\xff", 4), "files");
    ASSERT_EQ(nested.status, 200) << nested.body;
    EXPECT_EQ(nested.json()["name"], "nested.bin");
    EXPECT_EQ(nested.json()["sizeInBytes"], 4);

    // Uploads are visible to code, and code's files to the file API.
    auto read = this->run("py", id, "import pandas as pd\nint(pd.read_csv('/mnt/data/data.csv')['value'].sum())");
    EXPECT_EQ(read["result"], 4950) << read;
    this->run("py", id, "open('from_code.txt', 'w').write('written by code')");

    auto listed = this->client_->get("/pools/py/files?" + this->query(id));
    ASSERT_EQ(listed.status, 200) << listed.body;
    std::set<std::string> names;
    const auto listedBody = listed.json();
    for (const auto& item : listedBody["value"]) names.insert(this->text(item["properties"]["filename"]));
    EXPECT_EQ(names, (std::set<std::string>{"abs.txt", "data.csv", "deep", "from_code.txt"})) << listed.body;

    auto recursive = this->client_->get("/pools/py/files?" + this->query(id, "2025-10-02-preview") + "&recursive=true");
    bool sawNested = false;
    const auto recursiveBody = recursive.json();
    for (const auto& item : recursiveBody["value"])
        sawNested |= item["name"] == "nested.bin" && item["directory"] == "deep/er";
    EXPECT_TRUE(sawNested) << recursive.body;

    auto content = this->client_->get("/pools/py/files/content/from_code.txt?" + this->query(id));
    EXPECT_EQ(content.status, 200);
    EXPECT_EQ(content.body, "written by code");
    auto newer = this->client_->get("/pools/py/files/deep/er/nested.bin/content?" + this->query(id, "2024-10-02-preview"));
    EXPECT_EQ(newer.body, std::string("\0\r\n\xff", 4));
    auto encoded = this->client_->get("/pools/py/files/content/deep%2Fer%2Fnested.bin?" + this->query(id));
    EXPECT_EQ(encoded.body, std::string("\0\r\n\xff", 4));

    auto metadata = this->client_->get("/pools/py/files/data.csv?" + this->query(id, "2024-10-02-preview"));
    EXPECT_EQ(metadata.json()["name"], "data.csv");
    EXPECT_EQ(metadata.json()["type"], "File");
    EXPECT_EQ(metadata.json()["contentType"], "text/csv");

    auto deleted = this->client_->request(beast_http::verb::delete_,
                                          "/pools/py/files/data.csv?" + this->query(id, "2024-10-02-preview"));
    EXPECT_EQ(deleted.status, 204);
    EXPECT_EQ(this->client_->get("/pools/py/files/content/data.csv?" + this->query(id)).status, 404);
    EXPECT_EQ(this->run("py", id, "import os\nos.path.exists('data.csv')")["result"], false);

    // Another session sees none of it.
    EXPECT_EQ(this->client_->get("/pools/py/files/content/from_code.txt?" + this->query(this->newSession())).status, 404);
}

TYPED_TEST(InterpreterE2E, FilePathsCannotLeaveTheDataDirectory) {
    const std::string id = this->newSession();
    // The session's code plants a symbolic link out of /mnt/data.
    this->run("py", id, "import os\nos.symlink('/etc', 'evil')\nos.makedirs('real', exist_ok=True)");

    for (const std::string name : {"../escape.txt", "/etc/escape.txt", "real/../../escape.txt", "./x.txt",
                                   "evil/escape.txt", "/mnt/database/x.txt"}) {
        auto r = this->upload("py", id, name, "attack");
        EXPECT_EQ(r.status, 400) << name << ": " << r.body;
        EXPECT_EQ(r.header("x-ms-error-code"), "SessionRequestValidationFailed") << name;
    }
    EXPECT_EQ(this->client_->get("/pools/py/files/content/evil/passwd?" + this->query(id)).status, 400);
    EXPECT_EQ(this->client_->get("/pools/py/files/content/..%2F..%2Fetc%2Fpasswd?" + this->query(id)).status, 400);
    EXPECT_EQ(this->client_->get("/pools/py/files?path=..&" + this->query(id)).status, 400);
    EXPECT_EQ(this->client_->request(beast_http::verb::delete_, "/pools/py/files/evil%2Fhostname?" + this->query(id)).status,
              400);

    auto check = this->run("py", id,
                           "import os\n[p for p in ('/etc/escape.txt', '/escape.txt', '/mnt/escape.txt', "
                           "'/mnt/data/escape.txt', '/etc/hostname') if os.path.exists(p)]");
    EXPECT_EQ(check["result"], "['/etc/hostname']") << check;
    if (!TypeParam::vm) {
        EXPECT_FALSE(std::filesystem::exists("/etc/escape.txt"));
    }

    // Over the upload limit: 413, and nothing written.
    auto big = this->upload("py", id, "big.bin", std::string(kUploadLimit + 1024, 'b'));
    EXPECT_EQ(big.status, 413) << big.body;
    HttpClient fresh(this->daemon_->server.port());
    auto listing = fresh.get("/pools/py/files?" + this->query(id));
    EXPECT_EQ(listing.body.find("big.bin"), std::string::npos) << listing.body;
}

// A sparse file takes almost no room in the session but would be read whole
// into the daemon's memory: downloads stop one byte past the limit.
TYPED_TEST(InterpreterE2E, AFileOverTheDownloadLimitIsRefusedUnread) {
    const std::string id = this->newSession();
    this->run("py", id,
              "with open('sparse.bin', 'wb') as f: f.truncate(1 << 40)\n"
              "with open('limit.bin', 'wb') as f: f.write(b'z' * " + std::to_string(kDownloadLimit) + ")");
    auto sparse = this->client_->get("/pools/py/files/content/sparse.bin?" + this->query(id));
    EXPECT_EQ(sparse.status, 413) << sparse.body.substr(0, 200);
    EXPECT_EQ(sparse.header("x-ms-error-code"), "FileTooLarge");
    EXPECT_NE(sparse.body.find("http.maxDownloadBytes"), std::string::npos) << sparse.body.substr(0, 200);

    auto atLimit = this->client_->get("/pools/py/files/limit.bin/content?" + this->query(id, "2024-10-02-preview"));
    EXPECT_EQ(atLimit.status, 200);
    EXPECT_EQ(atLimit.body.size(), kDownloadLimit);
    // The session is unharmed.
    EXPECT_EQ(this->run("py", id, "1 + 1")["result"], 2);
}

TYPED_TEST(InterpreterE2E, NodeSessionsKeepState) {
    const std::string id = this->newSession();
    auto first = this->run("node", id, "let total = 40;\nconsole.log('hello-world');\ntotal + 2");
    EXPECT_EQ(first["status"], "Success") << first;
    EXPECT_EQ(first["stdout"], "hello-world\n");
    EXPECT_EQ(first["result"], 42);
    EXPECT_EQ(first["executionResult"], 42);
    EXPECT_EQ(this->run("node", id, "total * 2")["result"], 80);
    EXPECT_EQ(this->run("node", id, "process.cwd()")["result"], "/mnt/data");

    auto failed = this->run("node", id, "null.property");
    EXPECT_EQ(failed["status"], "Failure");
    EXPECT_NE(this->text(failed["stderr"]).find("TypeError"), std::string::npos) << failed;

    auto timedOut = this->run("node", id, "while (true) {}", 2);
    EXPECT_EQ(timedOut["status"], "Failure");
    EXPECT_NE(this->text(timedOut["stderr"]).find("Request timed out"), std::string::npos) << timedOut;
    EXPECT_EQ(this->run("node", id, "total")["result"], 40);

    auto metadata = this->client_->get("/pools/node/metadata");
    EXPECT_EQ(metadata.json()["runtimes"][0]["name"], "node") << metadata.body;
}

TYPED_TEST(InterpreterE2E, ShellCommandsReportExitCodes) {
    const std::string id = this->newSession();
    auto r = this->executions("sh", id, {{"shellCommand", "echo hello; echo oops >&2; exit 3"}});
    ASSERT_EQ(r.status, 200) << r.body;
    auto body = r.json();
    EXPECT_EQ(body["status"], "3");
    EXPECT_EQ(body["result"]["stdout"], "hello\n");
    EXPECT_EQ(body["result"]["stderr"], "oops\n");

    auto argv = this->executions("sh", id, {{"execCommandAndArgs", {"tr", "a-z", "A-Z"}}, {"stdin", "shout"}});
    EXPECT_EQ(argv.json()["status"], "0") << argv.body;
    EXPECT_EQ(argv.json()["result"]["stdout"], "SHOUT");

    // Files persist between commands and reach the file API.
    this->executions("sh", id, {{"shellCommand", "pwd > where.txt"}});
    EXPECT_EQ(this->client_->get("/pools/sh/files/content/where.txt?" + this->query(id)).body, "/mnt/data\n");

    auto slow = this->executions("sh", id, {{"shellCommand", "sleep 30"}, {"timeoutInSeconds", 2}});
    EXPECT_EQ(slow.json()["status"], "124") << slow.body;
    EXPECT_NE(this->text(slow.json()["result"]["stderr"]).find("Request timed out"), std::string::npos);

    auto missing = this->executions("sh", id, {{"code", "print(1)"}, {"codeInputType", "inline"}});
    EXPECT_EQ(missing.status, 200) << "a Shell pool runs `code` as a command";
    EXPECT_NE(missing.json()["status"], "0");
    EXPECT_EQ(this->executions("py", id, {{"shellCommand", "ls"}}).status, 400);
}

}  // namespace
