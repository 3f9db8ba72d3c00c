#pragma once
// Waiting on a running daemon through its API, for tests that start one.

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "http_client.hpp"

namespace sessiond::testing {

using SteadyClock = std::chrono::steady_clock;

inline double secondsSince(SteadyClock::time_point start) {
    return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

// Polls `condition` every 50 ms; false once `limit` passed without it.
inline bool waitFor(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
    const auto deadline = SteadyClock::now() + limit;
    while (!condition()) {
        if (SteadyClock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
}

// Seconds until GET /healthz answers 200 (the daemon may not listen yet),
// or a negative number after `limit`.
inline double waitForHealth(std::uint16_t port, std::chrono::seconds limit) {
    const auto start = SteadyClock::now();
    while (SteadyClock::now() - start < limit) {
        try {
            if (HttpClient(port).get("/healthz").status == 200) return secondsSince(start);
        } catch (const std::exception&) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
}

// The pool's live session counts (GET /pools/{pool}), or null while the
// daemon does not answer.
inline nlohmann::json poolSessions(std::uint16_t port, const std::string& pool = "default") {
    try {
        return HttpClient(port).get("/pools/" + pool).json()["properties"]["sessions"];
    } catch (const std::exception&) {
        return nullptr;
    }
}

// Until the pool has at least `ready` sandboxes warm and waiting.
inline bool waitForReady(std::uint16_t port, std::size_t ready, std::chrono::seconds limit,
                         const std::string& pool = "default") {
    return waitFor(
        [&] {
            auto sessions = poolSessions(port, pool);
            return sessions.is_object() && sessions["unallocated"].get<std::size_t>() >= ready;
        },
        limit);
}

}  // namespace sessiond::testing
