// Code-interpreter figures for a running sessiond: the `1+1` round trip on an
// allocated session of each session type, and a pandas workload end to end:
// upload a 10 MB CSV, then read_csv + describe() on it.
//
//   bench_interpreter [--port 8080] [--python default] [--node node] [--shell shell]
//                     [--round-trips 200] [--csv-runs 5] [--csv-mb 10] [--json FILE]
// A pool given as "" is skipped.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "figures.hpp"

using namespace sessiond::bench;

namespace {

// `1+1` (or, for Shell, `echo 2`) on one allocated session; empty on failure.
std::vector<double> roundTrips(HttpClient& client, const std::string& pool, bool shell, int count,
                               std::mt19937_64& rng) {
    const std::string id = newIdentifier(rng);
    const std::string code = shell ? "echo 2" : "1+1";
    client.execute(pool, id, shell ? "true" : "0", 120);  // allocates, waiting for a boot if needed
    std::vector<double> times;
    for (int i = 0; i < count; ++i) {
        auto start = Clock::now();
        auto r = client.execute(pool, id, code);
        double ms = millisecondsSince(start);
        auto properties = r.json()["properties"];
        bool ok = r.status == 200 && (shell ? properties["stdout"] == "2\n" : properties["result"] == 2);
        if (!ok) {
            std::cerr << pool << ": round trip failed: " << r.status << " " << r.body << "\n";
            return {};
        }
        times.push_back(ms);
    }
    deleteSession(client, pool, id);
    return times;
}

std::string csvOf(std::size_t bytes, std::mt19937_64& rng) {
    std::string csv = "id,category,value,score,label\n";
    std::uniform_real_distribution<double> value(0, 1000);
    char line[128];
    for (std::size_t i = 0; csv.size() < bytes; ++i) {
        std::snprintf(line, sizeof line, "%zu,c%zu,%.4f,%.6f,item-%zu\n", i, i % 17, value(rng), value(rng) / 1000,
                      i % 1013);
        csv += line;
    }
    return csv;
}

}  // namespace

int main(int argc, char** argv) {
    return guardedMain([&] {
        Flags flags(argc, argv);
        HttpClient client(static_cast<std::uint16_t>(flags.integer("--port", 8080)));
        const std::string python = flags.text("--python", "default"), node = flags.text("--node", "node"),
                          shell = flags.text("--shell", "shell");
        const int rounds = flags.integer("--round-trips", 200), csvRuns = flags.integer("--csv-runs", 5),
                  csvMegabytes = flags.integer("--csv-mb", 10);
        Figures figures(flags.text("--json", ""));
        flags.finish();
        std::mt19937_64 rng(std::random_device{}());

        for (auto [pool, type] : {std::pair{python, "python"}, std::pair{node, "node"}, std::pair{shell, "shell"}}) {
            if (pool.empty()) continue;
            const bool isShell = std::string(type) == "shell";
            auto times = roundTrips(client, pool, isShell, rounds, rng);
            if (times.empty()) return 1;
            const std::string name = isShell ? "Shell: echo 2" : std::string(type) == "node" ? "NodeLTS: 1+1" : "PythonLTS: 1+1";
            figures.latencies(std::string("interpreter.") + type + ".round_trip", name + " round trip", times);
        }
        if (python.empty() || csvRuns <= 0) return 0;

        const std::string csv = csvOf(static_cast<std::size_t>(csvMegabytes) << 20, rng);
        // Built once, outside the timed part.
        const std::string body = sessiond::testing::multipartForm("bench.csv", csv, sessiond::testing::kFormBoundary, "text/csv");
        std::vector<double> upload, analysis, total;
        for (int run = 0; run < csvRuns; ++run) {
            const std::string id = newIdentifier(rng);
            client.execute(python, id, "0", 120);  // the session exists before the clock starts
            auto start = Clock::now();
            auto up = client.post("/pools/" + python + "/files/upload?identifier=" + id + "&api-version=2024-02-02-preview",
                                  body, std::string("multipart/form-data; boundary=") + sessiond::testing::kFormBoundary);
            double uploadMs = millisecondsSince(start);
            if (up.status != 200) throw std::runtime_error("upload failed: " + std::to_string(up.status) + " " + up.body);
            auto middle = Clock::now();
            auto r = client.execute(python, id,
                                    "import pandas as pd\n"
                                    "df = pd.read_csv('/mnt/data/bench.csv')\n"
                                    "df.describe()",
                                    120);
            double analysisMs = millisecondsSince(middle);
            if (r.status != 200 || r.json()["properties"]["status"] != "Success")
                throw std::runtime_error("read_csv failed: " + std::to_string(r.status) + " " + r.body);
            upload.push_back(uploadMs);
            analysis.push_back(analysisMs);
            total.push_back(millisecondsSince(start));
            deleteSession(client, python, id);
        }
        const std::string size = std::to_string(csv.size() / 1000) + " kB CSV";
        figures.latencies("interpreter.csv.upload", "upload of a " + size + " (multipart, files/upload)", upload);
        figures.latencies("interpreter.csv.analysis", "pd.read_csv + describe() of it", analysis);
        figures.latencies("interpreter.csv.total", "upload + read_csv + describe(), end to end", total);
        return 0;
    });
}
