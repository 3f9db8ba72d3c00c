// Code-interpreter figures for a running sessiond: the `1+1` round trip on an
// allocated session of each session type, and a pandas workload end to end:
// upload a 10 MB CSV, then read_csv + describe() on it.
//
//   bench_interpreter [--port 8080] [--python default] [--node node] [--shell shell]
//                     [--round-trips 200] [--csv-runs 5] [--csv-mb 10]
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
#include "support/http_client.hpp"

using sessiond::testing::HttpClient;
using sessiond::bench::Clock;
using sessiond::bench::millisecondsSince;
using sessiond::bench::newIdentifier;
using sessiond::bench::percentile;

namespace {

void row(const std::string& measure, const std::vector<double>& values) {
    std::printf("%-56s %6zu %9.2f %9.2f\n", measure.c_str(), values.size(), percentile(values, 50),
                percentile(values, 99));
}

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
    std::uint16_t port = 8080;
    std::string python = "default", node = "node", shell = "shell";
    int rounds = 200, csvRuns = 5, csvMegabytes = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string flag = argv[i], value = argv[i + 1];
        if (flag == "--port") port = static_cast<std::uint16_t>(std::stoi(value));
        else if (flag == "--python") python = value;
        else if (flag == "--node") node = value;
        else if (flag == "--shell") shell = value;
        else if (flag == "--round-trips") rounds = std::stoi(value);
        else if (flag == "--csv-runs") csvRuns = std::stoi(value);
        else if (flag == "--csv-mb") csvMegabytes = std::stoi(value);
        else {
            std::cerr << "unknown flag " << flag << "\n";
            return 2;
        }
    }
    std::mt19937_64 rng(std::random_device{}());
    HttpClient client(port);

    std::printf("%-56s %6s %9s %9s\n", "measure", "n", "p50 ms", "p99 ms");
    for (auto [pool, type] : {std::pair{python, "PythonLTS"}, std::pair{node, "NodeLTS"}, std::pair{shell, "Shell"}}) {
        if (pool.empty()) continue;
        auto times = roundTrips(client, pool, std::string(type) == "Shell", rounds, rng);
        if (times.empty()) return 1;
        row(std::string(type) + ": " + (std::string(type) == "Shell" ? "echo 2" : "1+1") + " round trip", times);
    }

    if (!python.empty() && csvRuns > 0) {
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
            if (up.status != 200) {
                std::cerr << "upload failed: " << up.status << " " << up.body << "\n";
                return 1;
            }
            auto middle = Clock::now();
            auto r = client.execute(python, id,
                                    "import pandas as pd\n"
                                    "df = pd.read_csv('/mnt/data/bench.csv')\n"
                                    "df.describe()",
                                    120);
            double analysisMs = millisecondsSince(middle);
            if (r.status != 200 || r.json()["properties"]["status"] != "Success") {
                std::cerr << "read_csv failed: " << r.status << " " << r.body << "\n";
                return 1;
            }
            upload.push_back(uploadMs);
            analysis.push_back(analysisMs);
            total.push_back(millisecondsSince(start));
        }
        const std::string size = std::to_string(csv.size() / 1000) + " kB CSV";
        row("upload of a " + size + " (multipart, files/upload)", upload);
        row("pd.read_csv + describe() of it", analysis);
        row("upload + read_csv + describe(), end to end", total);
    }
    return 0;
}
