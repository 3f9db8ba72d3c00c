// Latency figures for a running sessiond: a brand-new identifier served from
// the warm pool, and the round trip of `1+1` on an allocated session.
//
//   bench_latency [--port 8080] [--pool default] [--allocations 50] [--round-trips 500]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "figures.hpp"
#include "support/http_client.hpp"

using sessiond::testing::HttpClient;
using sessiond::bench::Clock;
using sessiond::bench::millisecondsSince;
using sessiond::bench::newIdentifier;
using sessiond::bench::percentile;

namespace {

bool waitForReady(HttpClient& client, const std::string& pool, std::chrono::seconds limit) {
    auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
        auto r = client.get("/pools/" + pool);
        if (r.status == 200 && r.json()["properties"]["sessions"]["unallocated"].get<int>() > 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
}
}  // namespace

int main(int argc, char** argv) {
    std::uint16_t port = 8080;
    std::string pool = "default";
    int allocations = 50, roundTrips = 500;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string flag = argv[i];
        if (flag == "--port") port = static_cast<std::uint16_t>(std::stoi(argv[i + 1]));
        else if (flag == "--pool") pool = argv[i + 1];
        else if (flag == "--allocations") allocations = std::stoi(argv[i + 1]);
        else if (flag == "--round-trips") roundTrips = std::stoi(argv[i + 1]);
        else {
            std::cerr << "unknown flag " << flag << "\n";
            return 2;
        }
    }

    std::mt19937_64 rng(std::random_device{}());
    HttpClient control(port);
    HttpClient client(port);

    // 1. A new identifier while ready sandboxes exist (waiting, untimed, for
    //    the pool to have one before each request).
    std::vector<double> allocation;
    for (int i = 0; i < allocations; ++i) {
        if (!waitForReady(control, pool, std::chrono::seconds(120))) {
            std::cerr << "the pool has no ready sandbox after 120 s\n";
            return 1;
        }
        auto start = Clock::now();
        auto r = client.execute(pool, newIdentifier(rng), "print(1)");
        double ms = millisecondsSince(start);
        if (r.status != 200 || r.json()["properties"]["stdout"] != "1\n") {
            std::cerr << "allocation request failed: " << r.status << " " << r.body << "\n";
            return 1;
        }
        allocation.push_back(ms);
    }

    // 2. `1+1` on one allocated session, over a kept-alive connection.
    std::string session = newIdentifier(rng);
    waitForReady(control, pool, std::chrono::seconds(120));
    client.execute(pool, session, "0");
    std::vector<double> roundTrip;
    for (int i = 0; i < roundTrips; ++i) {
        auto start = Clock::now();
        auto r = client.execute(pool, session, "1+1");
        double ms = millisecondsSince(start);
        if (r.status != 200 || r.json()["properties"]["result"] != 2) {
            std::cerr << "round trip failed: " << r.status << " " << r.body << "\n";
            return 1;
        }
        roundTrip.push_back(ms);
    }

    std::printf("%-52s %8s %8s %8s\n", "measure", "n", "p50 ms", "p99 ms");
    std::printf("%-52s %8zu %8.2f %8.2f\n", "new identifier from the warm pool, print(1)", allocation.size(),
                percentile(allocation, 50), percentile(allocation, 99));
    std::printf("%-52s %8zu %8.2f %8.2f\n", "1+1 on an allocated session", roundTrip.size(), percentile(roundTrip, 50),
                percentile(roundTrip, 99));
    return 0;
}
