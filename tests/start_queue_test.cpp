// Sandbox starts taking turns: the queue itself, and a pool's burst through it.

#include <gtest/gtest.h>

#include "sessiond/pool/pool.hpp"
#include "sessiond/pool/start_queue.hpp"
#include "support/fake_backend.hpp"

using namespace sessiond;
using namespace std::chrono_literals;

using sessiond::testing::drain;

namespace {

PoolConfig poolConfig(std::size_t ready) {
    PoolConfig config;
    config.name = "p";
    config.readySessionInstances = ready;
    config.maxConcurrentSessions = 10;
    return config;
}

}  // namespace

TEST(StartQueue, RunsAtMostItsConcurrencyInArrivalOrder) {
    boost::asio::io_context io;
    StartQueue queue(io, 2);
    std::vector<int> begun;
    std::vector<std::unique_ptr<StartQueue::Turn>> turns;
    for (int i = 0; i < 5; ++i) turns.push_back(queue.enqueue([&begun, i] { begun.push_back(i); }));
    EXPECT_EQ(begun, (std::vector<int>{0, 1}));  // room: begun at once
    EXPECT_EQ(queue.running(), 2u);
    EXPECT_EQ(queue.queued(), 3u);

    turns[1].reset();
    EXPECT_EQ(begun.size(), 2u) << "the next start begins from the io_context, not inside the ending turn";
    drain(io);
    EXPECT_EQ(begun, (std::vector<int>{0, 1, 2}));
    EXPECT_EQ(queue.running(), 2u);

    turns[3].reset();  // left while waiting: never begins
    turns[0].reset();
    drain(io);
    EXPECT_EQ(begun, (std::vector<int>{0, 1, 2, 4}));
    EXPECT_EQ(queue.queued(), 0u);
    turns.clear();
    drain(io);
    EXPECT_EQ(queue.running(), 0u);
}

TEST(StartQueue, ZeroMeansNoLimit) {
    boost::asio::io_context io;
    StartQueue queue(io, 0);
    int begun = 0;
    std::vector<std::unique_ptr<StartQueue::Turn>> turns;
    for (int i = 0; i < 100; ++i) turns.push_back(queue.enqueue([&] { ++begun; }));
    EXPECT_EQ(begun, 100);
}

TEST(StartQueue, ATurnMayOutliveItsQueue) {
    boost::asio::io_context io;
    std::unique_ptr<StartQueue::Turn> running, waiting;
    int begun = 0;
    {
        StartQueue queue(io, 1);
        running = queue.enqueue([&] { ++begun; });
        waiting = queue.enqueue([&] { ++begun; });
    }
    running.reset();
    waiting.reset();
    drain(io);
    EXPECT_EQ(begun, 1);
}

// 6 new sessions at once on a pool with nothing ready, one start at a time:
// the first session is answered after one start, not after all six, and no
// two sandboxes ever start together.
TEST(StartQueue, APoolsBurstStartsOneSandboxAtATimeAndServesTheFirstSessionFirst) {
    boost::asio::io_context io;
    sessiond::testing::FakeBackend backend(io);
    backend.startDelay = 100ms;
    metrics::Registry registry;
    StartQueue starts(io, 1);
    Pool pool(io, poolConfig(0), backend, registry, &starts);
    pool.start();

    const auto began = std::chrono::steady_clock::now();
    std::vector<std::optional<std::chrono::steady_clock::duration>> answeredAfter(6);
    for (std::size_t i = 0; i < answeredAfter.size(); ++i)
        pool.execute("session-" + std::to_string(i), ExecuteRequest{"1"}, [&, i](PoolExecuteOutcome outcome) {
            EXPECT_EQ(outcome.error, PoolError::None);
            answeredAfter[i] = std::chrono::steady_clock::now() - began;
        });
    EXPECT_EQ(pool.counts().pending, 6u);
    EXPECT_EQ(backend.created, 1u);
    std::size_t mostStartingAtOnce = 0;
    const auto deadline = began + 10s;
    while (!answeredAfter.back() && std::chrono::steady_clock::now() < deadline) {
        io.restart();
        io.run_for(5ms);
        // Sandboxes created but not yet handed to a session are starting.
        mostStartingAtOnce = std::max(mostStartingAtOnce, backend.created - pool.counts().allocated);
    }
    ASSERT_TRUE(answeredAfter.back().has_value());
    EXPECT_EQ(mostStartingAtOnce, 1u);
    EXPECT_EQ(backend.created, 6u);
    EXPECT_LT(*answeredAfter.front(), 300ms);
    EXPECT_GE(*answeredAfter.back(), 600ms);
    for (std::size_t i = 1; i < answeredAfter.size(); ++i) EXPECT_LT(*answeredAfter[i - 1], *answeredAfter[i]);
}

// A pool deleted or reconfigured while its starts wait gives their turns back.
TEST(StartQueue, RetiredStartsLeaveTheQueue) {
    boost::asio::io_context io;
    sessiond::testing::FakeBackend backend(io);
    backend.startDelay = 50ms;
    metrics::Registry registry;
    StartQueue starts(io, 1);
    {
        Pool pool(io, poolConfig(4), backend, registry, &starts);
        pool.start();
        EXPECT_EQ(starts.queued(), 3u);
    }
    EXPECT_EQ(starts.queued(), 0u);
    drain(io);
    EXPECT_EQ(starts.running(), 0u);
    EXPECT_EQ(backend.created, 1u);
    EXPECT_TRUE(backend.live.empty());
}
