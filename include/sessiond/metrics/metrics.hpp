#pragma once
// A small metrics registry rendered in the Prometheus text exposition format
// (0.0.4): counters, gauges read at scrape time, and histograms with fixed
// buckets. Like everything in the daemon it is used from the io_context
// thread only, so nothing here locks.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sessiond::metrics {

// Label names and values, in the order they are rendered.
using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
public:
    void inc(std::uint64_t by = 1) { value_ += by; }
    std::uint64_t value() const { return value_; }

private:
    std::uint64_t value_ = 0;
};

class Histogram {
public:
    // Upper bounds, ascending; +Inf is implied.
    explicit Histogram(std::vector<double> bounds);
    void observe(double value);
    void observe(std::chrono::nanoseconds elapsed) { observe(std::chrono::duration<double>(elapsed).count()); }

    const std::vector<double>& bounds() const { return bounds_; }
    // Per bucket, not cumulative; one more than bounds() (the +Inf bucket).
    const std::vector<std::uint64_t>& bucketCounts() const { return counts_; }
    double sum() const { return sum_; }
    std::uint64_t count() const { return count_; }

private:
    std::vector<double> bounds_;
    std::vector<std::uint64_t> counts_;
    double sum_ = 0;
    std::uint64_t count_ = 0;
};

// Durations in seconds, from a warm-pool allocation (well under a
// millisecond) to a microVM boot or a long execution (tens of seconds).
const std::vector<double>& secondsBuckets();

class Registry;

// A gauge's callback stays registered while this lives: whatever the
// callback reads must outlive it.
class GaugeRegistration {
public:
    GaugeRegistration() = default;
    GaugeRegistration(Registry* registry, std::uint64_t id) : registry_(registry), id_(id) {}
    GaugeRegistration(GaugeRegistration&& other) noexcept
        : registry_(std::exchange(other.registry_, nullptr)), id_(other.id_) {}
    GaugeRegistration& operator=(GaugeRegistration&& other) noexcept;
    ~GaugeRegistration() { reset(); }
    void reset();

private:
    Registry* registry_ = nullptr;
    std::uint64_t id_ = 0;
};

class Registry {
public:
    Registry() = default;
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;

    // The series of `name` with these labels, made on first use; the
    // reference stays valid as long as the registry. Series are never
    // removed: a counter of a deleted pool keeps its last value, so a pool
    // made again under the same name goes on counting instead of resetting.
    // Throws std::logic_error if `name` was registered as another type.
    Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
    Histogram& histogram(const std::string& name, const std::string& help, const Labels& labels = {},
                         const std::vector<double>& bounds = secondsBuckets());
    // `read` is called at every scrape, until the registration is dropped.
    [[nodiscard]] GaugeRegistration gauge(const std::string& name, const std::string& help, const Labels& labels,
                                          std::function<double()> read);

    // The exposition text: families in name order, each with its HELP and
    // TYPE lines and its series in label order.
    std::string render() const;

private:
    friend class GaugeRegistration;
    enum class Type { Counter, Gauge, Histogram };
    struct Family {
        Type type;
        std::string help;
        std::map<Labels, std::unique_ptr<Counter>> counters;
        std::map<Labels, std::unique_ptr<Histogram>> histograms;
        std::map<std::uint64_t, std::pair<Labels, std::function<double()>>> gauges;  // by registration id
    };
    Family& family(const std::string& name, const std::string& help, Type type);
    void removeGauge(std::uint64_t id);

    std::map<std::string, Family> families_;
    std::map<std::uint64_t, std::string> gaugeFamilies_;  // registration id -> family name
    std::uint64_t nextGaugeId_ = 1;
};

// Label values escaped as the text format requires: backslash, double quote
// and newline.
std::string escapeLabelValue(const std::string& value);
// A sample value: integers without a fraction, +Inf, -Inf and NaN by name.
std::string formatValue(double value);

}  // namespace sessiond::metrics
