// Soak: create-execute-destroy cycles from concurrent clients against the
// real daemon. No request may fail, and the daemon's memory, descriptors and
// threads must stay flat. SESSIOND_SOAK_CYCLES and SESSIOND_SOAK_CLIENTS set
// the size (bench/soak.sh runs 10,000 cycles); the default takes about two
// minutes on a 2-core machine.

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "support/daemon.hpp"
#include "support/daemon_wait.hpp"
#include "support/http_client.hpp"
#include "support/leaks.hpp"

using sessiond::testing::Daemon;
using sessiond::testing::Footprint;
using sessiond::testing::HttpClient;
using namespace std::chrono_literals;

namespace {

int fromEnvironment(const char* name, int fallback) {
    const char* value = std::getenv(name);
    return value && *value ? std::atoi(value) : fallback;
}

// The bounds the daemon must hold after warm-up. Descriptors and threads
// are compared when the pool is idle (only its ready sandboxes), so the
// sessions alive at one moment do not count.
constexpr long kRssGrowthKiB = 4 * 1024;
constexpr long kFdGrowth = 0;
constexpr long kThreadGrowth = 0;

}  // namespace

TEST(Soak, CreateExecuteDestroyCyclesFailNothingAndLeaveTheDaemonFlat) {
    const int cycles = fromEnvironment("SESSIOND_SOAK_CYCLES", 600);
    const int clients = fromEnvironment("SESSIOND_SOAK_CLIENTS", 4);
    ASSERT_GT(cycles, 0);
    ASSERT_GT(clients, 0);
    const int warmUp = std::max(clients * 5, cycles / 20);
    const std::uint16_t port = sessiond::testing::freePort();
    const std::string cgroup = "sessiond-test-soak-" + std::to_string(getpid());
    const int ready = clients;
    // In an ASan build the allocator keeps freed blocks in a quarantine of up
    // to 256 MiB, which would read as growth; without it, what stays is what
    // the daemon holds. Other builds ignore the variable.
    const char* asanOptions = std::getenv("ASAN_OPTIONS");
    ::setenv("ASAN_OPTIONS",
             ((asanOptions && *asanOptions ? std::string(asanOptions) + ":" : "") + "quarantine_size_mb=0").c_str(), 1);
    Daemon daemon({{"listen", {{"address", "127.0.0.1"}, {"port", port}}},
                   {"cgroupName", cgroup},
                   {"logLevel", "warn"},
                   {"audit", {{"enabled", false}}},
                   {"pools",
                    {{{"name", "default"},
                      {"scaleConfiguration",
                       {{"maxConcurrentSessions", clients * 2}, {"readySessionInstances", ready}}}}}}});
    daemon.start();
    ASSERT_TRUE(sessiond::testing::waitForReady(port, ready, 120s)) << daemon.log();

    std::atomic<int> next{0}, done{0}, failures{0};
    std::mutex errorsMutex;
    std::vector<std::string> errors;
    auto fail = [&](const std::string& what) {
        ++failures;
        std::lock_guard lock(errorsMutex);
        if (errors.size() < 10) errors.push_back(what);
    };
    // Runs cycles until `until` have been handed out.
    auto runCycles = [&](int until) {
        std::vector<std::thread> threads;
        for (int c = 0; c < clients; ++c)
            threads.emplace_back([&] {
                HttpClient client(port);
                for (int cycle; (cycle = next++) < until;) {
                    const std::string identifier = "soak-" + std::to_string(cycle);
                    try {
                        auto r = client.execute("default", identifier, "n = " + std::to_string(cycle) + "\nn + 1");
                        if (r.status != 200 || r.json()["properties"]["status"] != "Success" ||
                            r.json()["properties"]["result"] != cycle + 1)
                            fail(identifier + ": execute answered " + std::to_string(r.status) + " " + r.body);
                        auto d = client.request(boost::beast::http::verb::delete_,
                                                "/pools/default/session?identifier=" + identifier);
                        if (d.status != 204) fail(identifier + ": delete answered " + std::to_string(d.status) + " " + d.body);
                    } catch (const std::exception& e) {
                        fail(identifier + ": " + e.what());
                        client.disconnect();
                    }
                    ++done;
                }
            });
        for (auto& t : threads) t.join();
        next = until;
    };
    // The daemon at rest: its ready sandboxes started, no session.
    auto idleFootprint = [&] {
        EXPECT_TRUE(sessiond::testing::waitFor(
            [&] {
                auto sessions = sessiond::testing::poolSessions(port);
                return sessions.is_object() && sessions["unallocated"] == ready && sessions["allocated"] == 0 &&
                       sessions["pending"] == 0;
            },
            60s))
            << sessiond::testing::poolSessions(port).dump();
        std::this_thread::sleep_for(200ms);
        return sessiond::testing::footprintOf(daemon.pid());
    };

    runCycles(warmUp);
    const Footprint first = idleFootprint();
    Footprint peak = first;
    std::atomic<bool> sampling{true};
    std::thread sampler([&] {
        while (sampling) {
            std::this_thread::sleep_for(1s);
            auto f = sessiond::testing::footprintOf(daemon.pid());
            peak.rssKiB = std::max(peak.rssKiB, f.rssKiB);
            peak.fds = std::max(peak.fds, f.fds);
            peak.threads = std::max(peak.threads, f.threads);
        }
    });
    const auto started = std::chrono::steady_clock::now();
    runCycles(cycles);
    const double seconds = sessiond::testing::secondsSince(started);
    sampling = false;
    sampler.join();
    const Footprint last = idleFootprint();

    const int measured = cycles - warmUp;
    std::printf("[ soak     ] %d cycles (%d measured after %d of warm-up) by %d clients: %.1f cycles/s, %d failed\n",
                done.load(), measured, warmUp, clients, measured / seconds, failures.load());
    std::printf("[ soak     ] daemon at rest, first -> last: RSS %ld -> %ld KiB, fds %ld -> %ld, threads %ld -> %ld; "
                "peak under load: RSS %ld KiB, fds %ld, threads %ld\n",
                first.rssKiB, last.rssKiB, first.fds, last.fds, first.threads, last.threads, peak.rssKiB, peak.fds,
                peak.threads);
    EXPECT_EQ(done.load(), cycles);
    EXPECT_EQ(failures.load(), 0);
    for (const auto& error : errors) ADD_FAILURE() << error;
    EXPECT_LE(last.rssKiB - first.rssKiB, kRssGrowthKiB);
    EXPECT_LE(last.fds - first.fds, kFdGrowth);
    EXPECT_LE(last.threads - first.threads, kThreadGrowth);
    // Under load a session holds a few descriptors; never more than the
    // sessions and starts that can be alive at once account for.
    EXPECT_LE(peak.fds - first.fds, 8L * clients * 3);

    daemon.signal(SIGTERM);
    EXPECT_EQ(daemon.wait(60s), 0) << daemon.log();
    EXPECT_TRUE(sessiond::testing::processesMatching("/" + cgroup + "/").empty());
    EXPECT_TRUE(sessiond::testing::cgroupsNamed(cgroup).empty());
}
