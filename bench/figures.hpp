#pragma once
// What the benchmarks share: flags, timing and percentiles, the figures they
// record (one JSON object a line, which bench/results.py turns into the
// results file and the table), and the pool routes they drive.

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/http_client.hpp"

namespace sessiond::bench {

using Clock = std::chrono::steady_clock;
using sessiond::testing::HttpClient;
using sessiond::testing::HttpResult;

inline double percentile(std::vector<double> values, double p) {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    std::size_t index = static_cast<std::size_t>(p / 100.0 * (values.size() - 1) + 0.5);
    return values[std::min(index, values.size() - 1)];
}

inline double millisecondsSince(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// A session identifier no earlier run used.
inline std::string newIdentifier(std::mt19937_64& rng) {
    char buffer[40];
    std::snprintf(buffer, sizeof buffer, "bench-%016llx", static_cast<unsigned long long>(rng()));
    return buffer;
}

// `--name value` pairs; asking for a flag marks it known, and finish() refuses
// any flag that no one asked for.
class Flags {
public:
    Flags(int argc, char** argv, int first = 1) {
        for (int i = first; i < argc; i += 2) {
            if (i + 1 >= argc) throw std::invalid_argument(std::string("flag ") + argv[i] + " has no value");
            values_[argv[i]] = argv[i + 1];
        }
    }
    std::string text(const std::string& name, const std::string& fallback) {
        asked_.push_back(name);
        auto it = values_.find(name);
        return it == values_.end() ? fallback : it->second;
    }
    int integer(const std::string& name, int fallback) { return std::stoi(text(name, std::to_string(fallback))); }
    void finish() const {
        for (const auto& [name, value] : values_)
            if (std::find(asked_.begin(), asked_.end(), name) == asked_.end())
                throw std::invalid_argument("unknown flag " + name);
    }

private:
    std::map<std::string, std::string> values_;
    std::vector<std::string> asked_;
};

// One measured figure. `stats` keeps its order (p50 before p99); the table
// shows them in that order.
struct Figure {
    std::string id;       // stable across runs: the key "previous" is matched by
    std::string measure;  // what the table calls it
    std::string unit;
    std::size_t n = 0;
    std::vector<std::pair<std::string, double>> stats;
    std::string notes;  // how it was measured, failures, anything odd
};

// Prints each figure as a row and, given a file, appends it there as JSON.
class Figures {
public:
    explicit Figures(std::string jsonPath) : jsonPath_(std::move(jsonPath)) {}

    void add(const Figure& f) {
        std::string stats;
        for (const auto& [name, value] : f.stats) stats += name + " " + format(value) + "  ";
        std::printf("%-58s %6zu  %-12s %s\n", f.measure.c_str(), f.n, f.unit.c_str(), stats.c_str());
        if (!f.notes.empty()) std::printf("%-58s %6s  (%s)\n", "", "", f.notes.c_str());
        std::fflush(stdout);
        if (jsonPath_.empty()) return;
        nlohmann::ordered_json statsJson = nlohmann::ordered_json::object();
        for (const auto& [name, value] : f.stats) statsJson[name] = value;
        nlohmann::ordered_json line = {{"id", f.id},     {"measure", f.measure}, {"unit", f.unit},
                                       {"n", f.n},       {"stats", statsJson},   {"notes", f.notes}};
        std::ofstream(jsonPath_, std::ios::app) << line.dump() << "\n";
    }

    // p50, p99 and max of latencies in milliseconds (of the requests that
    // succeeded), and the failed requests when they were counted (>= 0).
    void latencies(const std::string& id, const std::string& measure, const std::vector<double>& ms,
                   const std::string& notes = "", int failures = -1) {
        Figure f{id, measure, "ms", ms.size(),
                 {{"p50", percentile(ms, 50)}, {"p99", percentile(ms, 99)}, {"max", percentile(ms, 100)}}, notes};
        if (failures >= 0) f.stats.emplace_back("failures", failures);
        add(f);
    }

private:
    static std::string format(double v) {
        char buffer[32];
        std::snprintf(buffer, sizeof buffer, v >= 100 || v == static_cast<long long>(v) ? "%.0f" : "%.2f", v);
        return buffer;
    }
    std::string jsonPath_;
};

// Runs body(i) on `count` threads at once and waits for them all.
inline void inParallel(int count, const std::function<void(int)>& body) {
    std::vector<std::thread> threads;
    threads.reserve(count);
    for (int i = 0; i < count; ++i) threads.emplace_back(body, i);
    for (auto& t : threads) t.join();
}

// An idempotent request on a kept-alive connection, which the server closes
// after http.keepAliveTimeoutInSeconds idle: sent again once, on a new
// connection, if the old one turns out closed.
inline HttpResult send(HttpClient& client, boost::beast::http::verb method, const std::string& target,
                       const std::string& body = "") {
    try {
        return client.request(method, target, body);
    } catch (const boost::system::system_error&) {
        client.disconnect();
        return client.request(method, target, body);
    }
}

inline HttpResult get(HttpClient& client, const std::string& target) {
    return send(client, boost::beast::http::verb::get, target);
}

// The pool's live counts, as GET /pools/{pool} shows them.
struct PoolState {
    int pending = 0, unallocated = 0, allocated = 0, waiting = 0, readyTarget = 0;
    bool exists = false;
};

inline PoolState poolState(HttpClient& client, const std::string& pool) {
    auto r = get(client, "/pools/" + pool);
    PoolState s;
    if (r.status != 200) return s;
    auto p = r.json()["properties"];
    s.exists = true;
    s.pending = p["sessions"]["pending"];
    s.unallocated = p["sessions"]["unallocated"];
    s.allocated = p["sessions"]["allocated"];
    s.waiting = p["sessions"]["waitingForSandbox"];
    s.readyTarget = p["scaleConfiguration"]["readySessionInstances"];
    return s;
}

// Polls the pool every 20 ms until `done` holds; false after `limit`.
inline bool waitForPool(HttpClient& client, const std::string& pool, const std::function<bool(const PoolState&)>& done,
                        std::chrono::seconds limit = std::chrono::seconds(300)) {
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
        if (done(poolState(client, pool))) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
}

// Every ready sandbox the pool keeps has started, and none is starting.
inline bool poolFull(const PoolState& s) { return s.unallocated >= s.readyTarget && s.pending == 0; }

// PUT /pools/{name} with a PythonLTS (or `containerType`) definition.
inline void putPool(HttpClient& client, const std::string& name, const std::string& backend, int maxSessions,
                    int ready, int cooldownSeconds, const std::vector<std::string>& preload = {},
                    const std::string& containerType = "PythonLTS") {
    nlohmann::json properties = {
        {"containerType", containerType},
        {"backend", backend},
        {"scaleConfiguration", {{"maxConcurrentSessions", maxSessions}, {"readySessionInstances", ready}}},
        {"dynamicPoolConfiguration",
         {{"lifecycleConfiguration", {{"lifecycleType", "Timed"}, {"cooldownPeriodInSeconds", cooldownSeconds}}}}}};
    if (!preload.empty()) properties["execution"] = {{"preloadModules", preload}};
    auto r = send(client, boost::beast::http::verb::put, "/pools/" + name,
                  nlohmann::json{{"properties", properties}}.dump());
    if (r.status != 200 && r.status != 201)
        throw std::runtime_error("PUT /pools/" + name + ": " + std::to_string(r.status) + " " + r.body);
}

inline void deletePool(HttpClient& client, const std::string& name) {
    send(client, boost::beast::http::verb::delete_, "/pools/" + name);
}

inline void deleteSession(HttpClient& client, const std::string& pool, const std::string& identifier) {
    send(client, boost::beast::http::verb::delete_, "/pools/" + pool + "/session?identifier=" + identifier);
}

// A new session answered `print(1)` correctly.
inline bool printedOne(const HttpResult& r) {
    return r.status == 200 && r.json()["properties"]["stdout"] == "1\n";
}

// Runs main_body, turning a thrown error into a message and exit status 1
// (and a bad flag into status 2).
inline int guardedMain(const std::function<int()>& main_body) {
    try {
        return main_body();
    } catch (const std::invalid_argument& e) {
        std::cerr << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}

}  // namespace sessiond::bench
