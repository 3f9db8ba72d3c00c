// The pool's state machine and accounting, against a fake backend.

#include <thread>

#include <gtest/gtest.h>

#include "sessiond/pool/pool.hpp"
#include "support/fake_backend.hpp"

using namespace sessiond;
using sessiond::testing::FakeBackend;
using namespace std::chrono_literals;

namespace {

class PoolTest : public ::testing::Test {
protected:
    PoolTest() : backend(io) {
        config.name = "p";
        config.readySessionInstances = 2;
        config.maxConcurrentSessions = 3;
        config.cooldownPeriod = 1s;
    }

    std::unique_ptr<Pool> makePool() {
        auto pool = std::make_unique<Pool>(io, config, backend);
        pool->start();
        return pool;
    }

    // Runs the io_context until `done` holds or `limit` passes.
    template <typename Done>
    bool runUntil(Done done, std::chrono::milliseconds limit = 5s) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < deadline) {
            io.restart();
            io.run_for(10ms);
        }
        return done();
    }

    PoolExecuteOutcome execute(Pool& pool, const std::string& id, const std::string& code = "x") {
        std::optional<PoolExecuteOutcome> out;
        pool.execute(id, ExecuteRequest{code}, [&](PoolExecuteOutcome o) { out = std::move(o); });
        EXPECT_TRUE(runUntil([&] { return out.has_value(); }));
        return out.value_or(PoolExecuteOutcome{PoolError::ShuttingDown, "no answer", {}});
    }

    boost::asio::io_context io;
    FakeBackend backend;
    PoolConfig config;
};

}  // namespace

TEST_F(PoolTest, FillsTheWarmSetAndAllocatesFromIt) {
    backend.startDelay = 50ms;
    auto pool = makePool();
    EXPECT_EQ(pool->counts().pending, 2u);
    ASSERT_TRUE(runUntil([&] { return pool->counts().unallocated == 2; }));
    EXPECT_EQ(backend.created, 2u);

    // A new identifier takes a ready sandbox at once: no start in between.
    std::optional<PoolExecuteOutcome> out;
    pool->execute("session-a", ExecuteRequest{"1"}, [&](PoolExecuteOutcome o) { out = o; });
    EXPECT_EQ(pool->counts().allocated, 1u);
    EXPECT_EQ(pool->counts().unallocated, 1u);
    // The replacement starts once this request is answered, not in its time.
    EXPECT_EQ(pool->counts().pending, 0u);
    ASSERT_TRUE(runUntil([&] { return out.has_value(); }));
    EXPECT_EQ(out->error, PoolError::None);
    EXPECT_EQ(out->result.result["count"], 1);
    ASSERT_TRUE(runUntil([&] { return pool->counts().pending == 1; }));
    ASSERT_TRUE(runUntil([&] { return pool->counts().unallocated == 2; }));
    EXPECT_EQ(pool->counts().allocations, 1u);
}

TEST_F(PoolTest, ALongFirstRequestDoesNotHoldUpTheRefill) {
    auto pool = makePool();
    ASSERT_TRUE(runUntil([&] { return pool->counts().unallocated == 2; }));
    backend.executeDelay = 2s;
    std::optional<PoolExecuteOutcome> out;
    pool->execute("session-a", ExecuteRequest{"1"}, [&](PoolExecuteOutcome o) { out = o; });
    const auto started = std::chrono::steady_clock::now();
    ASSERT_TRUE(runUntil([&] { return pool->counts().pending + pool->counts().unallocated == 2; }));
    EXPECT_LT(std::chrono::steady_clock::now() - started, 1s);
    EXPECT_FALSE(out.has_value());
}

TEST_F(PoolTest, TheRefillWaitsForEveryNewSessionsFirstAnswer) {
    auto pool = makePool();
    ASSERT_TRUE(runUntil([&] { return pool->counts().unallocated == 2; }));
    std::optional<PoolExecuteOutcome> a, b;
    backend.executeDelay = 5ms;
    pool->execute("session-a", ExecuteRequest{"1"}, [&](PoolExecuteOutcome o) { a = o; });
    backend.executeDelay = 40ms;
    pool->execute("session-b", ExecuteRequest{"1"}, [&](PoolExecuteOutcome o) { b = o; });
    ASSERT_TRUE(runUntil([&] { return a.has_value(); }));
    // session-b still waits for its first answer: no start competes with it.
    ASSERT_FALSE(b.has_value());
    EXPECT_EQ(pool->counts().pending + pool->counts().unallocated, 0u);
    ASSERT_TRUE(runUntil([&] { return b.has_value(); }));
    ASSERT_TRUE(runUntil([&] { return pool->counts().unallocated == 2; }));
}

TEST_F(PoolTest, AKnownIdentifierReachesItsOwnSandbox) {
    auto pool = makePool();
    ASSERT_TRUE(runUntil([&] { return pool->counts().unallocated == 2; }));
    auto first = execute(*pool, "session-a");
    auto second = execute(*pool, "session-a");
    auto other = execute(*pool, "session-b");
    EXPECT_EQ(first.result.result["sandbox"], second.result.result["sandbox"]);
    EXPECT_EQ(second.result.result["count"], 2);
    EXPECT_NE(other.result.result["sandbox"], first.result.result["sandbox"]);
    EXPECT_EQ(pool->counts().allocated, 2u);
}

TEST_F(PoolTest, CapsAllocatedSessions) {
    auto pool = makePool();
    for (auto id : {"s-0001", "s-0002", "s-0003"}) EXPECT_EQ(execute(*pool, id).error, PoolError::None);
    auto refused = execute(*pool, "s-0004");
    EXPECT_EQ(refused.error, PoolError::CapacityExceeded);
    EXPECT_NE(refused.message.find("maximum of 3"), std::string::npos);
    // Existing sessions still work at the cap.
    EXPECT_EQ(execute(*pool, "s-0002").error, PoolError::None);
}

TEST_F(PoolTest, WaitsForABootOnlyWhenNothingIsReady) {
    config.readySessionInstances = 0;
    backend.startDelay = 100ms;
    auto pool = makePool();
    EXPECT_EQ(backend.created, 0u);
    std::optional<PoolExecuteOutcome> a, a2;
    pool->execute("session-a", ExecuteRequest{"1"}, [&](PoolExecuteOutcome o) { a = o; });
    pool->execute("session-a", ExecuteRequest{"2"}, [&](PoolExecuteOutcome o) { a2 = o; });
    EXPECT_EQ(pool->counts().waitingForSandbox, 1u);
    EXPECT_EQ(backend.created, 1u);  // one sandbox for the session, not one per request
    ASSERT_TRUE(runUntil([&] { return a && a2; }));
    EXPECT_EQ(a->error, PoolError::None);
    EXPECT_EQ(a2->result.result["count"], 2);
}

TEST_F(PoolTest, ReapsIdleSessionsAfterTheCooldownAndRefills) {
    auto pool = makePool();
    execute(*pool, "session-a");
    execute(*pool, "session-b");
    ASSERT_TRUE(runUntil([&] { return pool->counts().unallocated == 2; }));
    auto start = std::chrono::steady_clock::now();
    // Keep session-b busy-ish: every request resets its timer.
    while (std::chrono::steady_clock::now() - start < 1500ms) {
        execute(*pool, "session-b");
        runUntil([] { return false; }, 200ms);
    }
    EXPECT_EQ(pool->counts().allocated, 1u) << "session-a should be reaped, session-b kept";
    auto b = execute(*pool, "session-b");
    EXPECT_GT(b.result.result["count"].get<int>(), 3);  // still the same sandbox
    EXPECT_GE(pool->counts().destroyed, 1u);
    ASSERT_TRUE(runUntil([&] { return pool->counts().allocated == 0; }, 3s));
    EXPECT_EQ(pool->counts().unallocated, 2u);
    // A reaped identifier starts over in a fresh sandbox.
    auto again = execute(*pool, "session-a");
    EXPECT_EQ(again.result.result["count"], 1);
    pool.reset();
    runUntil([&] { return backend.live.empty(); }, 1s);
    EXPECT_TRUE(backend.live.empty());
}

TEST_F(PoolTest, RetriesFailedStartsWithBackoffAndCountsThem) {
    backend.failNextStarts = 3;
    config.readySessionInstances = 1;
    auto pool = makePool();
    auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(runUntil([&] { return pool->counts().unallocated == 1; }, 10s));
    auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(pool->counts().startFailures, 3u);
    // 0.5 s + 1 s + 2 s of backoff between the four attempts.
    EXPECT_GE(elapsed, 3400ms);
    EXPECT_EQ(backend.created, 4u);
}

TEST_F(PoolTest, ANewSessionGetsAnErrorWhenItsSandboxCannotStart) {
    config.readySessionInstances = 0;
    backend.failNextStarts = 1;
    auto pool = makePool();
    auto out = execute(*pool, "session-a");
    EXPECT_EQ(out.error, PoolError::SandboxUnavailable);
    EXPECT_NE(out.message.find("fake start failure"), std::string::npos);
    EXPECT_EQ(pool->counts().allocated, 0u);
}

TEST_F(PoolTest, ASandboxThatDiesIsDestroyedAndItsIdentifierStartsOver) {
    auto pool = makePool();
    auto first = execute(*pool, "session-a");
    std::string sandbox = first.result.result["sandbox"];
    backend.kill(sandbox);
    ASSERT_TRUE(runUntil([&] { return !backend.live.count(sandbox); }));
    EXPECT_EQ(pool->counts().sandboxExits, 1u);
    // It ended between two requests: the next execution is told, not run.
    auto told = execute(*pool, "session-a");
    EXPECT_EQ(told.error, PoolError::None);
    EXPECT_FALSE(told.result.succeeded);
    EXPECT_TRUE(told.result.stateLost);
    EXPECT_NE(told.result.stderrText.find("ended after its previous request"), std::string::npos)
        << told.result.stderrText;
    auto again = execute(*pool, "session-a");
    EXPECT_TRUE(again.result.succeeded);
    EXPECT_NE(again.result.result["sandbox"], sandbox);
    EXPECT_EQ(again.result.result["count"], 1);
    EXPECT_TRUE(execute(*pool, "session-a").result.succeeded);
}

TEST_F(PoolTest, ShutdownDestroysEverySandbox) {
    config.readySessionInstances = 2;
    auto pool = makePool();
    execute(*pool, "session-a");
    ASSERT_TRUE(runUntil([&] { return pool->counts().unallocated == 2; }));
    EXPECT_EQ(backend.live.size(), 3u);
    pool->shutdown();
    EXPECT_TRUE(backend.live.empty());
    EXPECT_EQ(execute(*pool, "session-a").error, PoolError::ShuttingDown);
}

TEST_F(PoolTest, FileWorkReachesTheSessionsOwnSandboxAndKeepsItBusy) {
    auto pool = makePool();
    ASSERT_TRUE(runUntil([&] { return pool->counts().unallocated == 2; }));
    std::optional<Outcome<FileEntry>> written;
    std::function<void()> finishLater;
    pool->withSession("session-a", {[&](Sandbox& sandbox, std::function<void()> finished) {
                                        sandbox.writeFile("a.txt", "hello", [&, finished](Outcome<FileEntry> o) {
                                            written = o;
                                            finishLater = finished;  // the work is still running
                                        });
                                    },
                                    [](PoolError, const std::string&) { FAIL() << "no sandbox"; }});
    ASSERT_TRUE(runUntil([&] { return written.has_value(); }));
    EXPECT_TRUE(written->ok());
    EXPECT_EQ(pool->counts().allocated, 1u);

    // Busy work holds off the reaper, however long the cooldown has passed.
    std::this_thread::sleep_for(1200ms);
    runUntil([] { return false; }, 300ms);
    EXPECT_EQ(pool->counts().allocated, 1u);
    finishLater();
    ASSERT_TRUE(runUntil([&] { return pool->counts().allocated == 0; }, 3s));

    // Another identifier is another sandbox: the file is not there.
    std::optional<Outcome<FileContent>> read;
    pool->withSession("session-b", {[&](Sandbox& sandbox, std::function<void()> finished) {
                                        sandbox.readFile("a.txt", 1024, [&, finished](Outcome<FileContent> o) {
                                            read = o;
                                            finished();
                                        });
                                    },
                                    [](PoolError, const std::string&) { FAIL() << "no sandbox"; }});
    ASSERT_TRUE(runUntil([&] { return read.has_value(); }));
    EXPECT_EQ(read->code, "notFound");
}

TEST_F(PoolTest, MetadataIsAskedOnceAndNeedsARunningSandbox) {
    backend.startsHang = true;
    auto hung = makePool();
    std::optional<std::string> error;
    hung->metadata([&](std::string e, const nlohmann::json&) { error = e; });
    ASSERT_TRUE(error.has_value());
    EXPECT_NE(error->find("no sandbox"), std::string::npos);
    hung->shutdown();

    backend.startsHang = false;
    auto pool = makePool();
    ASSERT_TRUE(runUntil([&] { return pool->counts().unallocated == 2; }));
    int answers = 0;
    for (int i = 1; i <= 2; ++i) {
        pool->metadata([&](std::string e, const nlohmann::json& m) {
            EXPECT_EQ(e, "");
            EXPECT_EQ(m["runtimes"][0]["name"], "fake");
            ++answers;
        });
        ASSERT_TRUE(runUntil([&] { return answers == i; }));
    }
    EXPECT_EQ(backend.describes, 1u);
}
