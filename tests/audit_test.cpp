// The audit log on its own: what a line holds and where it goes. The
// daemon's own lines (a request with a key, a session's lifecycle) are
// checked end to end in daemon_test.cpp.

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sessiond/api/execute_request.hpp"
#include "sessiond/audit/audit_log.hpp"

using namespace sessiond;
namespace fs = std::filesystem;

namespace {

std::vector<nlohmann::json> linesOf(const fs::path& file) {
    std::ifstream in(file);
    std::vector<nlohmann::json> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
}

class AuditLogTest : public ::testing::Test {
protected:
    fs::path dir;
    void SetUp() override {
        char name[] = "/tmp/sessiond-audit-test-XXXXXX";
        dir = ::mkdtemp(name);
    }
    void TearDown() override { fs::remove_all(dir); }
    AuditConfig config(bool includeCode = false) { return {true, dir / "audit.log", includeCode}; }
};

audit::RequestRecord executeRecord() {
    audit::RequestRecord r;
    r.key = "app";
    r.remote = "192.0.2.7";
    r.method = "POST";
    r.route = "/pools/{pool}/code/execute";
    r.pool = "default";
    r.identifier = "user-1";
    r.status = 200;
    r.duration = std::chrono::microseconds(2500);
    r.code = api::submittedCode(R"j({"properties":{"code":"print(\"hi\")","codeInputType":"inline"}})j");
    return r;
}

}  // namespace

TEST_F(AuditLogTest, ARequestIsOneLineThatLeavesTheCodeOutUnlessAskedTo) {
    {
        audit::AuditLog log(config());
        log.record(executeRecord());
    }
    struct stat st {};
    ASSERT_EQ(::stat((dir / "audit.log").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    auto lines = linesOf(dir / "audit.log");
    ASSERT_EQ(lines.size(), 1u);
    const auto& line = lines[0];
    EXPECT_EQ(line["type"], "request");
    EXPECT_EQ(line["key"], "app");
    EXPECT_EQ(line["remote"], "192.0.2.7");
    EXPECT_EQ(line["method"], "POST");
    EXPECT_EQ(line["route"], "/pools/{pool}/code/execute");
    EXPECT_EQ(line["pool"], "default");
    EXPECT_EQ(line["identifier"], "user-1");
    EXPECT_EQ(line["status"], 200);
    EXPECT_DOUBLE_EQ(line["durationMs"].get<double>(), 2.5);
    EXPECT_TRUE(line["time"].get<std::string>().ends_with("Z")) << line;
    EXPECT_FALSE(line.contains("code")) << line;

    audit::AuditLog withCode(config(true));
    withCode.record(executeRecord());
    lines = linesOf(dir / "audit.log");
    ASSERT_EQ(lines.size(), 2u);  // appended
    EXPECT_EQ(lines[1]["code"], (nlohmann::json{{"code", "print(\"hi\")"}})) << lines[1];
}

TEST_F(AuditLogTest, SessionEventsAndUnmatchedRoutesSayOnlyWhatIsKnown) {
    audit::AuditLog log(config());
    log.record(audit::SessionEvent{"allocated", "default", "user-1", "default-4", ""});
    log.record(audit::SessionEvent{"startFailed", "default", "", "default-5", "no agent"});
    audit::RequestRecord unmatched;
    unmatched.method = "GET";
    unmatched.status = 404;
    log.record(unmatched);
    auto lines = linesOf(dir / "audit.log");
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[0], (nlohmann::json{{"time", lines[0]["time"]}, {"type", "session"}, {"event", "allocated"},
                                        {"pool", "default"}, {"identifier", "user-1"}, {"sandbox", "default-4"}}));
    EXPECT_EQ(lines[1]["detail"], "no agent");
    EXPECT_FALSE(lines[1].contains("identifier"));
    EXPECT_EQ(lines[2]["route"], "unmatched");
    EXPECT_FALSE(lines[2].contains("key"));
    EXPECT_FALSE(lines[2].contains("identifier"));
}

TEST_F(AuditLogTest, CodeThatIsNotUtf8IsStillAudited) {
    audit::AuditLog log(config(true));
    auto record = executeRecord();
    record.code = nlohmann::json{{"code", std::string("print('\xff')")}};
    log.record(record);
    auto lines = linesOf(dir / "audit.log");
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0]["code"]["code"], "print('\xEF\xBF\xBD')");  // U+FFFD
}

TEST_F(AuditLogTest, ReopenFollowsARotation) {
    audit::AuditLog log(config());
    log.record(audit::SessionEvent{"started", "default", "", "default-1", ""});
    fs::rename(dir / "audit.log", dir / "audit.log.1");
    log.record(audit::SessionEvent{"started", "default", "", "default-2", ""});  // still the old file
    log.reopen();
    log.record(audit::SessionEvent{"started", "default", "", "default-3", ""});
    EXPECT_EQ(linesOf(dir / "audit.log.1").size(), 2u);
    auto lines = linesOf(dir / "audit.log");
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0]["sandbox"], "default-3");

    // A file that cannot be opened: the constructor says which; a reopen keeps the old one.
    EXPECT_THROW(audit::AuditLog({true, dir / "missing" / "audit.log", false}), std::runtime_error);
    fs::rename(dir / "audit.log", dir / "audit.log.2");
    fs::create_directory(dir / "audit.log");  // cannot be opened for writing
    EXPECT_THROW(log.reopen(), std::runtime_error);
    log.record(audit::SessionEvent{"started", "default", "", "default-4", ""});
    lines = linesOf(dir / "audit.log.2");
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[1]["sandbox"], "default-4");
}

TEST(SubmittedCode, TakesWhatAnExecutionAskedToRunFromEitherShape) {
    EXPECT_EQ(api::submittedCode(R"({"code":"1+1","timeoutInSeconds":5})"), (nlohmann::json{{"code", "1+1"}}));
    EXPECT_EQ(api::submittedCode(R"({"properties":{"shellCommand":"ls","stdin":"x"}})"),
              (nlohmann::json{{"shellCommand", "ls"}, {"stdin", "x"}}));
    EXPECT_EQ(api::submittedCode(R"({"properties":{"execCommandAndArgs":["ls","-l"]}})"),
              (nlohmann::json{{"execCommandAndArgs", {"ls", "-l"}}}));
    EXPECT_TRUE(api::submittedCode("not json").is_null());
    EXPECT_TRUE(api::submittedCode(R"({"properties":7})").is_null());
    EXPECT_TRUE(api::submittedCode(R"({"identifier":"x"})").is_null());
}
