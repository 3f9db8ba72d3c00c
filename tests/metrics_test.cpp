// The metrics registry's exposition text, exactly; and GET /metrics on the
// real server with the fake backend: what it counts after a few requests, and
// that every line it sends parses as the Prometheus text format.

#include <cstdlib>
#include <limits>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

#include "sessiond/metrics/metrics.hpp"
#include "support/fake_backend.hpp"
#include "support/http_client.hpp"
#include "support/server_fixture.hpp"

using namespace sessiond;
using sessiond::testing::FakeBackend;
using sessiond::testing::HttpClient;
using namespace std::chrono_literals;

namespace {

bool isFloat(const std::string& text) {
    if (text == "+Inf" || text == "-Inf" || text == "NaN") return true;
    if (text.empty()) return false;
    char* end = nullptr;
    std::strtod(text.c_str(), &end);
    return end == text.c_str() + text.size();
}

// Checks the text format 0.0.4 line by line; returns the first problem, or
// "" if there is none. A sample must belong to the family the last TYPE
// line named (histograms add _bucket, _sum and _count), so families are not
// interleaved.
std::string formatProblem(const std::string& text) {
    if (text.empty() || text.back() != '\n') return "the text does not end with a newline";
    static const std::regex kComment(R"(# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*))");
    static const std::regex kType(R"(counter|gauge|histogram|summary|untyped)");
    static const std::string kLabelValue = R"("(?:[^"\\\n]|\\[\\"n])*")";
    static const std::string kLabel = "[a-zA-Z_][a-zA-Z0-9_]*=" + kLabelValue;
    static const std::regex kSample("([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{(?:" + kLabel + "(?:," + kLabel +
                                    ")*)?\\})? (\\S+)( -?[0-9]+)?");
    std::istringstream lines(text);
    std::string line, family;
    while (std::getline(lines, line)) {
        std::smatch m;
        if (line.rfind("#", 0) == 0) {
            if (!std::regex_match(line, m, kComment)) return "bad comment line: " + line;
            if (m[1] == "TYPE") {
                if (!std::regex_match(m[3].str(), kType)) return "bad type: " + line;
                family = m[2];
            }
            continue;
        }
        if (!std::regex_match(line, m, kSample)) return "bad sample line: " + line;
        if (!isFloat(m[3])) return "bad value: " + line;
        const std::string name = m[1];
        bool ofFamily = name == family;
        for (const char* suffix : {"_bucket", "_sum", "_count"})
            ofFamily = ofFamily || name == family + suffix;
        if (!ofFamily) return "sample outside its family (last TYPE " + family + "): " + line;
    }
    return "";
}

// The value of the series `series` (name and labels as rendered), or -1.
double sample(const std::string& text, const std::string& series) {
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line))
        if (line.rfind(series + " ", 0) == 0) return std::strtod(line.c_str() + series.size() + 1, nullptr);
    return -1;
}

}  // namespace

TEST(MetricsFormat, CheckerRefusesWhatIsNotTheTextFormat) {
    EXPECT_EQ(formatProblem("# TYPE a counter\na 1\n"), "");
    EXPECT_NE(formatProblem("# TYPE a counter\na 1"), "");
    EXPECT_NE(formatProblem("# TYPE a counter\nbad-name 1\n"), "");
    EXPECT_NE(formatProblem("# TYPE a counter\na{b=\"c} 1\n"), "");
    EXPECT_NE(formatProblem("# TYPE a counter\na{b=\"c\",} 1\n"), "");
    EXPECT_NE(formatProblem("# TYPE a counter\na 1.2.3\n"), "");
    EXPECT_NE(formatProblem("# TYPE a counter\nb 1\n"), "");
    EXPECT_NE(formatProblem("# TYPE a count\na 1\n"), "");
}

TEST(Metrics, RendersACounter) {
    metrics::Registry registry;
    registry.counter("jobs_total", "Jobs done.").inc(3);
    EXPECT_EQ(registry.render(),
              "# HELP jobs_total Jobs done.\n"
              "# TYPE jobs_total counter\n"
              "jobs_total 3\n");
}

TEST(Metrics, ACounterIsFoundAgainByItsLabels) {
    metrics::Registry registry;
    registry.counter("jobs_total", "Jobs.", {{"pool", "a"}}).inc();
    registry.counter("jobs_total", "Jobs.", {{"pool", "a"}}).inc();
    registry.counter("jobs_total", "Jobs.", {{"pool", "b"}}).inc();
    EXPECT_EQ(registry.render(),
              "# HELP jobs_total Jobs.\n"
              "# TYPE jobs_total counter\n"
              "jobs_total{pool=\"a\"} 2\n"
              "jobs_total{pool=\"b\"} 1\n");
    EXPECT_THROW(registry.histogram("jobs_total", "Jobs."), std::logic_error);
}

TEST(Metrics, RendersALabelledGaugeUntilItsRegistrationEnds) {
    metrics::Registry registry;
    double value = 2.5;
    auto registration = registry.gauge("queue_depth", "Waiting.\nNow.", {{"pool", "p"}, {"state", "ready"}},
                                       [&value] { return value; });
    value = 4;  // read at render time
    EXPECT_EQ(registry.render(),
              "# HELP queue_depth Waiting.\\nNow.\n"
              "# TYPE queue_depth gauge\n"
              "queue_depth{pool=\"p\",state=\"ready\"} 4\n");
    registration.reset();
    EXPECT_EQ(registry.render().find("queue_depth{"), std::string::npos);
}

TEST(Metrics, RendersAHistogramWithCumulativeBuckets) {
    metrics::Registry registry;
    auto& histogram = registry.histogram("wait_seconds", "Waits.", {{"pool", "p"}}, {0.5, 1});
    histogram.observe(0.25);
    histogram.observe(0.5);  // on the bound: in its bucket
    histogram.observe(std::chrono::seconds(2));
    EXPECT_EQ(registry.render(),
              "# HELP wait_seconds Waits.\n"
              "# TYPE wait_seconds histogram\n"
              "wait_seconds_bucket{pool=\"p\",le=\"0.5\"} 2\n"
              "wait_seconds_bucket{pool=\"p\",le=\"1\"} 2\n"
              "wait_seconds_bucket{pool=\"p\",le=\"+Inf\"} 3\n"
              "wait_seconds_sum{pool=\"p\"} 2.75\n"
              "wait_seconds_count{pool=\"p\"} 3\n");
}

TEST(Metrics, SecondsBucketsSpanHalfAMillisecondToAMinute) {
    metrics::Registry registry;
    registry.histogram("x_seconds", "X.").observe(0.0001);
    const std::string text = registry.render();
    EXPECT_NE(text.find("x_seconds_bucket{le=\"0.0005\"} 1\n"), std::string::npos) << text;
    EXPECT_NE(text.find("x_seconds_bucket{le=\"60\"} 1\n"), std::string::npos) << text;
    EXPECT_NE(text.find("x_seconds_sum 0.0001\n"), std::string::npos) << text;
    EXPECT_EQ(formatProblem(text), "");
}

TEST(Metrics, EscapesLabelValues) {
    EXPECT_EQ(metrics::escapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    metrics::Registry registry;
    registry.counter("c_total", "C.", {{"path", "x\"y\\z\n"}}).inc();
    EXPECT_EQ(registry.render(),
              "# HELP c_total C.\n"
              "# TYPE c_total counter\n"
              "c_total{path=\"x\\\"y\\\\z\\n\"} 1\n");
    EXPECT_EQ(formatProblem(registry.render()), "");
}

TEST(Metrics, FormatsValues) {
    EXPECT_EQ(metrics::formatValue(0), "0");
    EXPECT_EQ(metrics::formatValue(42), "42");
    EXPECT_EQ(metrics::formatValue(0.0005), "0.0005");
    EXPECT_EQ(metrics::formatValue(1e300), "1e+300");
    EXPECT_EQ(metrics::formatValue(std::numeric_limits<double>::infinity()), "+Inf");
}

namespace {

class MetricsApiTest : public ::testing::Test {
protected:
    void SetUp() override {
        PoolConfig pool;
        pool.name = "default";
        pool.readySessionInstances = 1;
        pool.maxConcurrentSessions = 2;
        config.pools = {pool};
        server.start(config, [](boost::asio::io_context& io) { return std::make_unique<FakeBackend>(io); });
    }

    Config config;
    sessiond::testing::ServerFixture server;
};

}  // namespace

TEST_F(MetricsApiTest, CountsSessionsExecutionsAndRequests) {
    HttpClient client(server.port());
    ASSERT_TRUE(server.waitFor([&] { return server.counts("default").unallocated == 1; }, 5s));
    ASSERT_EQ(client.execute("default", "metrics-1", "1").status, 200);
    ASSERT_EQ(client.execute("default", "metrics-1", "2").status, 200);
    ASSERT_EQ(client.get("/no/such/route").status, 404);

    auto scrape = client.get("/metrics");
    ASSERT_EQ(scrape.status, 200) << scrape.body;
    EXPECT_EQ(scrape.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    const std::string& text = scrape.body;
    EXPECT_EQ(formatProblem(text), "") << text;
    EXPECT_EQ(sample(text, R"(sessiond_allocations_total{pool="default"})"), 1) << text;
    EXPECT_EQ(sample(text, R"(sessiond_allocation_seconds_count{pool="default"})"), 1) << text;
    EXPECT_EQ(sample(text, R"(sessiond_execution_seconds_count{pool="default"})"), 2) << text;
    EXPECT_EQ(sample(text, R"(sessiond_execution_seconds_bucket{pool="default",le="+Inf"})"), 2) << text;
    EXPECT_GE(sample(text, R"(sessiond_sandbox_start_seconds_count{pool="default"})"), 1) << text;
    EXPECT_EQ(sample(text, R"(sessiond_sessions{pool="default",state="allocated"})"), 1) << text;
    EXPECT_EQ(sample(text, R"(sessiond_sessions{pool="default",state="waiting_for_sandbox"})"), 0) << text;
    EXPECT_EQ(sample(text, R"(sessiond_capacity_refusals_total{pool="default"})"), 0) << text;
    EXPECT_GE(sample(text, R"(sessiond_sandbox_starts{backend="fake",state="running"})"), 0) << text;
    EXPECT_EQ(sample(text, R"(sessiond_sandbox_starts{backend="fake",state="queued"})"), 0) << text;
    EXPECT_EQ(sample(text, R"(sessiond_http_requests_total{method="POST",route="/pools/{pool}/code/execute",status="200"})"),
              2)
        << text;
    EXPECT_EQ(sample(text, R"(sessiond_http_requests_total{method="GET",route="unmatched",status="404"})"), 1) << text;
    EXPECT_EQ(sample(text, R"(sessiond_http_request_seconds_count{route="/pools/{pool}/code/execute"})"), 2) << text;
    EXPECT_EQ(text.find("metrics-1"), std::string::npos) << "an identifier became a label value";
    EXPECT_EQ(text.find("/no/such/route"), std::string::npos) << "a raw path became a label value";
    EXPECT_TRUE(std::regex_search(text, std::regex(R"(\nsessiond_build_info\{version="[0-9]+\.[0-9]+\.[0-9]+"\} 1\n)")))
        << text;
    EXPECT_GT(sample(text, "process_start_time_seconds"), 1.7e9) << text;

    ASSERT_EQ(client.request(boost::beast::http::verb::delete_,
                             "/pools/default/session?identifier=metrics-1&api-version=2025-02-02-preview")
                  .status,
              204);
    auto after = client.get("/metrics").body;
    EXPECT_EQ(formatProblem(after), "") << after;
    EXPECT_EQ(sample(after, R"(sessiond_sessions{pool="default",state="allocated"})"), 0) << after;
    EXPECT_EQ(sample(after, R"(sessiond_sessions_destroyed_total{pool="default",reason="deleted"})"), 1) << after;
    EXPECT_EQ(sample(after, R"(sessiond_sessions_destroyed_total{pool="default",reason="cooldown"})"), 0) << after;
    EXPECT_EQ(sample(after, R"(sessiond_http_requests_total{method="GET",route="/metrics",status="200"})"), 1) << after;
    EXPECT_EQ(sample(after, R"(sessiond_http_requests_total{method="DELETE",route="/pools/{pool}/session",status="204"})"),
              1)
        << after;
}

TEST_F(MetricsApiTest, CountsCapacityRefusals) {
    HttpClient client(server.port());
    ASSERT_EQ(client.execute("default", "sess-1", "1").status, 200);
    ASSERT_EQ(client.execute("default", "sess-2", "1").status, 200);
    ASSERT_EQ(client.execute("default", "sess-3", "1").status, 404);
    auto text = client.get("/metrics").body;
    EXPECT_EQ(sample(text, R"(sessiond_capacity_refusals_total{pool="default"})"), 1) << text;
    EXPECT_EQ(sample(text, R"(sessiond_allocations_total{pool="default"})"), 2) << text;
    EXPECT_EQ(sample(text, R"(sessiond_sessions{pool="default",state="allocated"})"), 2) << text;
}

// A pool counts into the registry it is given, each destruction under its reason.
TEST(PoolMetrics, CountStartsExitsAndDestructionsByReason) {
    boost::asio::io_context io;
    FakeBackend backend(io);
    PoolConfig config;
    config.name = "p";
    config.readySessionInstances = 1;
    config.maxConcurrentSessions = 3;
    config.cooldownPeriod = 1s;
    metrics::Registry registry;
    auto runUntil = [&](auto done) {
        auto deadline = std::chrono::steady_clock::now() + 5s;
        while (!done() && std::chrono::steady_clock::now() < deadline) {
            io.restart();
            io.run_for(10ms);
        }
        return done();
    };
    auto execute = [&](Pool& pool, const std::string& identifier) {
        bool answered = false;
        pool.execute(identifier, ExecuteRequest{"x"}, [&](PoolExecuteOutcome) { answered = true; });
        return runUntil([&] { return answered; });
    };

    backend.failNextStarts = 1;
    auto pool = std::make_unique<Pool>(io, config, backend, registry);
    pool->start();
    ASSERT_TRUE(runUntil([&] { return pool->counts().unallocated == 1; }));
    ASSERT_TRUE(execute(*pool, "sess-a"));
    ASSERT_TRUE(execute(*pool, "sess-b"));
    backend.kill(pool->session("sess-b")->etag);
    ASSERT_TRUE(runUntil([&] { return pool->counts().allocated == 1; }));
    ASSERT_TRUE(runUntil([&] { return pool->counts().allocated == 0; }));  // sess-a's cooldown

    std::string text = registry.render();
    EXPECT_EQ(formatProblem(text), "") << text;
    EXPECT_EQ(sample(text, R"(sessiond_sandbox_start_failures_total{pool="p"})"), 1) << text;
    EXPECT_EQ(sample(text, R"(sessiond_sandbox_exits_total{pool="p"})"), 1) << text;
    EXPECT_EQ(sample(text, R"(sessiond_allocations_total{pool="p"})"), 2) << text;
    EXPECT_EQ(sample(text, R"(sessiond_allocation_seconds_count{pool="p"})"), 2) << text;
    EXPECT_EQ(sample(text, R"(sessiond_execution_seconds_count{pool="p"})"), 2) << text;
    EXPECT_GE(sample(text, R"(sessiond_sandbox_start_seconds_count{pool="p"})"), 2) << text;
    EXPECT_EQ(sample(text, R"(sessiond_sessions_destroyed_total{pool="p",reason="sandbox_exit"})"), 1) << text;
    EXPECT_EQ(sample(text, R"(sessiond_sessions_destroyed_total{pool="p",reason="cooldown"})"), 1) << text;
    EXPECT_EQ(sample(text, R"(sessiond_sessions_destroyed_total{pool="p",reason="deleted"})"), 0) << text;
    EXPECT_EQ(sample(text, R"(sessiond_sessions{pool="p",state="unallocated"})"), 1) << text;

    const auto live = pool->counts().pending + pool->counts().unallocated;
    pool.reset();
    sessiond::testing::drain(io);  // the retired sandboxes go before the backend
    text = registry.render();
    EXPECT_EQ(sample(text, R"(sessiond_sessions_destroyed_total{pool="p",reason="shutdown"})"), live) << text;
    EXPECT_EQ(text.find("sessiond_sessions{"), std::string::npos) << "a destroyed pool's gauges stay: " << text;
}
