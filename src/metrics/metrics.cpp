#include "sessiond/metrics/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <charconv>
#include <stdexcept>

namespace sessiond::metrics {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
    // A value equal to a bound belongs to that bound's bucket ("le").
    auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
    ++counts_[static_cast<std::size_t>(bucket)];
    sum_ += value;
    ++count_;
}

const std::vector<double>& secondsBuckets() {
    static const std::vector<double> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                0.25,   0.5,   1,      2.5,   5,    10,    30,    60};
    return kBounds;
}

GaugeRegistration& GaugeRegistration::operator=(GaugeRegistration&& other) noexcept {
    if (this != &other) {
        reset();
        registry_ = std::exchange(other.registry_, nullptr);
        id_ = other.id_;
    }
    return *this;
}

void GaugeRegistration::reset() {
    if (registry_) std::exchange(registry_, nullptr)->removeGauge(id_);
}

Registry::Family& Registry::family(const std::string& name, const std::string& help, Type type) {
    auto [it, added] = families_.try_emplace(name);
    if (added) {
        it->second.type = type;
        it->second.help = help;
    } else if (it->second.type != type) {
        throw std::logic_error("metric " + name + " is registered with another type");
    }
    return it->second;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
    auto& slot = family(name, help, Type::Counter).counters[labels];
    if (!slot) slot = std::make_unique<Counter>();
    return *slot;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help, const Labels& labels,
                               const std::vector<double>& bounds) {
    auto& slot = family(name, help, Type::Histogram).histograms[labels];
    if (!slot) slot = std::make_unique<Histogram>(bounds);
    return *slot;
}

GaugeRegistration Registry::gauge(const std::string& name, const std::string& help, const Labels& labels,
                                  std::function<double()> read) {
    const std::uint64_t id = nextGaugeId_++;
    family(name, help, Type::Gauge).gauges.emplace(id, std::make_pair(labels, std::move(read)));
    gaugeFamilies_.emplace(id, name);
    return GaugeRegistration(this, id);
}

void Registry::removeGauge(std::uint64_t id) {
    auto it = gaugeFamilies_.find(id);
    if (it == gaugeFamilies_.end()) return;
    families_[it->second].gauges.erase(id);
    gaugeFamilies_.erase(it);
}

namespace {

// Backslash and newline escaped, and double quotes too where `quotes`:
// label values escape all three, HELP text only the first two.
std::string escape(const std::string& text, bool quotes) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else if (c == '"' && quotes)
            out += "\\\"";
        else
            out.push_back(c);
    }
    return out;
}

}  // namespace

std::string escapeLabelValue(const std::string& value) { return escape(value, true); }

std::string formatValue(double value) {
    if (std::isnan(value)) return "NaN";
    if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
    // The shortest text that reads back as the same double; plain decimals
    // ("0.0005", not "5e-04") while they stay short.
    char text[64];
    const double magnitude = std::fabs(value);
    auto format = value == 0 || (magnitude >= 1e-6 && magnitude < 1e15) ? std::chars_format::fixed
                                                                          : std::chars_format::general;
    auto end = std::to_chars(text, text + sizeof text, value, format).ptr;
    return std::string(text, end);
}

namespace {

std::string labelText(const Labels& labels, const std::string& extraName = "", const std::string& extraValue = "") {
    if (labels.empty() && extraName.empty()) return "";
    std::string out = "{";
    bool first = true;
    auto add = [&](const std::string& name, const std::string& value) {
        if (!first) out += ",";
        first = false;
        out += name + "=\"" + escapeLabelValue(value) + "\"";
    };
    for (const auto& [name, value] : labels) add(name, value);
    if (!extraName.empty()) add(extraName, extraValue);
    return out + "}";
}

}  // namespace

std::string Registry::render() const {
    std::string out;
    for (const auto& [name, family] : families_) {
        const char* type = family.type == Type::Counter ? "counter" : family.type == Type::Gauge ? "gauge" : "histogram";
        out += "# HELP " + name + " " + escape(family.help, false) + "\n";
        out += "# TYPE " + name + " " + type + "\n";
        for (const auto& [labels, counter] : family.counters)
            out += name + labelText(labels) + " " + std::to_string(counter->value()) + "\n";
        std::vector<std::pair<const Labels*, double>> gauges;
        for (const auto& [id, gauge] : family.gauges) gauges.emplace_back(&gauge.first, gauge.second());
        std::sort(gauges.begin(), gauges.end(), [](const auto& a, const auto& b) { return *a.first < *b.first; });
        for (const auto& [labels, value] : gauges) out += name + labelText(*labels) + " " + formatValue(value) + "\n";
        for (const auto& [labels, histogram] : family.histograms) {
            std::uint64_t cumulative = 0;
            const auto& counts = histogram->bucketCounts();
            for (std::size_t i = 0; i < counts.size(); ++i) {
                cumulative += counts[i];
                const std::string bound = i < histogram->bounds().size() ? formatValue(histogram->bounds()[i]) : "+Inf";
                out += name + "_bucket" + labelText(labels, "le", bound) + " " + std::to_string(cumulative) + "\n";
            }
            out += name + "_sum" + labelText(labels) + " " + formatValue(histogram->sum()) + "\n";
            out += name + "_count" + labelText(labels) + " " + std::to_string(histogram->count()) + "\n";
        }
    }
    return out;
}

}  // namespace sessiond::metrics
