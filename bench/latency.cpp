// Latency figures for a running sessiond, on an existing pool:
//
// - allocation: a brand-new identifier's first `print(1)` served from the warm
//   pool, sequentially and from `--clients` concurrent clients. Before each
//   request (sequential) or each wave of one request per client (concurrent)
//   the pool is waited for, untimed, until every one of its
//   readySessionInstances has started and none is starting, so every request
//   finds a ready sandbox. The refill each allocation triggers starts at
//   once and runs beside the request, as it would in use. The sessions are
//   deleted (untimed) before the next request or wave.
// - the round trip of `1+1` on an allocated session, over a kept-alive
//   connection.
//
//   bench_latency [--port 8080] [--pool default] [--allocations 500]
//                 [--concurrent-allocations 500] [--clients 20] [--round-trips 1000] [--json FILE]
// A count of 0 skips that figure.

#include <string>
#include <vector>

#include "figures.hpp"

using namespace sessiond::bench;

namespace {

struct Timed {
    std::vector<double> ms;
    int failures = 0;
};

// One new identifier's first request; the identifier goes to `made`.
void allocateOnce(HttpClient& client, const std::string& pool, std::mt19937_64& rng, Timed& out,
                  std::vector<std::string>& made) {
    const std::string id = newIdentifier(rng);
    made.push_back(id);
    auto start = Clock::now();
    bool ok = false;
    try {
        ok = printedOne(client.execute(pool, id, "print(1)"));
    } catch (const std::exception& e) {
        std::cerr << "allocation request failed: " << e.what() << "\n";
        client.disconnect();
    }
    if (ok) out.ms.push_back(millisecondsSince(start));
    else ++out.failures;
}

void waitUntilFull(HttpClient& control, const std::string& pool) {
    if (!waitForPool(control, pool, poolFull))
        throw std::runtime_error("pool " + pool + " did not refill within 300 s");
}

Timed sequentialAllocations(std::uint16_t port, HttpClient& control, const std::string& pool, int count,
                            std::mt19937_64& rng) {
    HttpClient client(port);
    Timed out;
    for (int i = 0; i < count; ++i) {
        waitUntilFull(control, pool);
        std::vector<std::string> made;
        allocateOnce(client, pool, rng, out, made);
        deleteSession(control, pool, made.front());
    }
    return out;
}

Timed concurrentAllocations(std::uint16_t port, HttpClient& control, const std::string& pool, int count,
                            int clients, std::mt19937_64& rng) {
    if (poolState(control, pool).readyTarget < clients)
        throw std::invalid_argument("pool " + pool + " keeps fewer ready sandboxes than --clients " +
                                    std::to_string(clients));
    const int waves = (count + clients - 1) / clients;
    std::vector<Timed> perClient(clients);
    std::vector<std::vector<std::string>> made(clients);
    // Twice a wave: the main thread releases the clients, then waits for them.
    std::barrier sync(clients + 1);
    std::vector<std::uint64_t> seeds;
    for (int i = 0; i < clients; ++i) seeds.push_back(rng());
    std::thread driver([&] {
        for (int w = 0; w < waves; ++w) {
            waitUntilFull(control, pool);
            sync.arrive_and_wait();  // go
            sync.arrive_and_wait();  // all answered
            for (auto& ids : made)
                for (const auto& id : ids) deleteSession(control, pool, id);
            for (auto& ids : made) ids.clear();
        }
    });
    inParallel(clients, [&](int i) {
        HttpClient client(port);
        std::mt19937_64 own(seeds[i]);
        for (int w = 0; w < waves; ++w) {
            sync.arrive_and_wait();
            allocateOnce(client, pool, own, perClient[i], made[i]);
            sync.arrive_and_wait();
        }
    });
    driver.join();
    Timed all;
    for (const auto& t : perClient) {
        all.ms.insert(all.ms.end(), t.ms.begin(), t.ms.end());
        all.failures += t.failures;
    }
    return all;
}

}  // namespace

int main(int argc, char** argv) {
    return guardedMain([&] {
        Flags flags(argc, argv);
        const auto port = static_cast<std::uint16_t>(flags.integer("--port", 8080));
        HttpClient control(port);
        const std::string pool = flags.text("--pool", "default");
        const int allocations = flags.integer("--allocations", 500);
        const int concurrent = flags.integer("--concurrent-allocations", 500);
        const int clients = flags.integer("--clients", 20);
        const int roundTrips = flags.integer("--round-trips", 1000);
        Figures figures(flags.text("--json", ""));
        flags.finish();
        std::mt19937_64 rng(std::random_device{}());
        const int ready = poolState(control, pool).readyTarget;
        const std::string how = "pool refilled to its " + std::to_string(ready) + " ready sandboxes before each";

        if (allocations > 0) {
            auto t = sequentialAllocations(port, control, pool, allocations, rng);
            figures.latencies("allocation.sequential", "new identifier -> print(1), warm pool, sequential", t.ms,
                              how + " request", t.failures);
        }
        if (concurrent > 0) {
            auto t = concurrentAllocations(port, control, pool, concurrent, clients, rng);
            figures.latencies("allocation.concurrent",
                              "new identifier -> print(1), warm pool, " + std::to_string(clients) + " clients", t.ms,
                              how + " wave of one request per client", t.failures);
        }
        if (roundTrips > 0) {
            HttpClient client(port);
            const std::string session = newIdentifier(rng);
            waitUntilFull(control, pool);
            client.execute(pool, session, "0");
            std::vector<double> times;
            for (int i = 0; i < roundTrips; ++i) {
                auto start = Clock::now();
                auto r = client.execute(pool, session, "1+1");
                double ms = millisecondsSince(start);
                if (r.status != 200 || r.json()["properties"]["result"] != 2)
                    throw std::runtime_error("round trip failed: " + std::to_string(r.status) + " " + r.body);
                times.push_back(ms);
            }
            deleteSession(control, pool, session);
            figures.latencies("execute.round_trip", "1+1 on an allocated session", times);
        }
        return 0;
    });
}
