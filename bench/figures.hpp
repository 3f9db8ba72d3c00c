#pragma once
// What the benchmarks share: timing and percentiles.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace sessiond::bench {

using Clock = std::chrono::steady_clock;

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

}  // namespace sessiond::bench
