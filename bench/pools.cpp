// Pool figures for a running sessiond. Each one creates its own pool through
// PUT /pools/{name} and deletes it afterwards.
//
//   bench_pools settle
//       waits until every pool has started its ready sandboxes.
//   bench_pools burst      [--sessions 200] [--ready 10]
//       `--sessions` new identifiers at once (one client each, connected
//       beforehand) on a pool keeping `--ready` sandboxes: the time until all
//       are answered, p50 and p99 of each, and the failures.
//   bench_pools refill     [--sessions 50] [--daemon-pid PID]
//       PUT a pool with readySessionInstances `--sessions`, poll it every 20 ms
//       until that many are ready: sessions per second (and, given the
//       daemon, the CPU time one start costs).
//   bench_pools throughput [--sessions 64] [--clients 64] [--seconds 10]
//       `--sessions` sessions (allocated one by one beforehand), shared
//       round robin by `--clients` concurrent clients running `1+1` for
//       `--seconds`: executions per second.
//   bench_pools density    [--sessions 200] [--ready 4] [--clients 2] [--min-available-mib 3072]
//                          --daemon-pid PID --cgroup-name NAME [--exclusive 1]
//       deletes every other pool (with --exclusive 1, so that every sandbox
//       process is this pool's), then allocates up to `--sessions` sessions of a
//       pool preloading pandas, each running `import pandas as pd; df = ...`,
//       stopping early when MemAvailable falls below the floor. Then it
//       checks every session still answers, measures the host's MemAvailable
//       drop per session, sets readySessionInstances to 0 and sums the PSS of
//       every sandbox process (the daemon's descendants) per session.
// Every one takes [--port 8080] [--backend namespace] [--json FILE].

#include <dirent.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "figures.hpp"

using namespace sessiond::bench;

namespace {

using namespace std::chrono_literals;

struct Context {
    std::uint16_t port;
    std::string backend;
    HttpClient control;
    Figures figures;
    std::mt19937_64 rng{std::random_device{}()};
};

double secondsSince(Clock::time_point start) { return millisecondsSince(start) / 1000; }

void waitUntil(Context& c, const std::string& pool, const std::function<bool(const PoolState&)>& done,
               const std::string& what, std::chrono::seconds limit = 600s) {
    if (!waitForPool(c.control, pool, done, limit))
        throw std::runtime_error("pool " + pool + ": " + what + " did not happen within " +
                                 std::to_string(limit.count()) + " s");
}

std::string startFailures(Context& c, const std::string& pool) {
    auto r = get(c.control, "/pools/" + pool);
    auto totals = r.json()["properties"]["totals"];
    int failed = totals.value("startFailures", 0), exits = totals.value("sandboxExits", 0);
    if (!failed && !exits) return "";
    return "; sandbox start failures " + std::to_string(failed) + ", unexpected exits " + std::to_string(exits);
}

// --- what /proc says ---

long long memAvailableKiB() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    long long value;
    std::string unit;
    while (in >> key >> value >> unit)
        if (key == "MemAvailable:") return value;
    throw std::runtime_error("no MemAvailable in /proc/meminfo");
}

std::vector<int> allPids() {
    std::vector<int> pids;
    DIR* dir = ::opendir("/proc");
    while (dirent* e = ::readdir(dir))
        if (e->d_name[0] >= '1' && e->d_name[0] <= '9') pids.push_back(std::atoi(e->d_name));
    ::closedir(dir);
    return pids;
}

std::string readAll(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The daemon's descendants: every sandbox's nsinit and what it starts (the
// pid namespace's init reaps orphans inside, so nothing leaves the tree),
// and any helper process the daemon starts.
std::vector<int> descendants(int daemonPid) {
    std::map<int, int> parent;
    for (int pid : allPids()) {
        const std::string stat = readAll("/proc/" + std::to_string(pid) + "/stat");
        const auto close = stat.rfind(')');
        if (close == std::string::npos) continue;  // gone meanwhile
        std::istringstream rest(stat.substr(close + 2));
        char state;
        int ppid = 0;
        rest >> state >> ppid;
        parent[pid] = ppid;
    }
    std::vector<int> out;
    for (const auto& [pid, ppid] : parent) {
        int p = ppid;
        for (int depth = 0; p > 1 && p != daemonPid && depth < 64; ++depth) p = parent.count(p) ? parent[p] : 0;
        if (p == daemonPid) out.push_back(pid);
    }
    return out;
}

// Those in one of the daemon's sandbox cgroups: a line of /proc/PID/cgroup
// with ".../NAME/<sandbox>". (The cgroups alone would not find them: on
// cgroup v1 the pids and cpu hierarchies may be shared with another daemon
// of that name.)
int inSandboxCgroups(const std::vector<int>& pids, const std::string& cgroupName) {
    int n = 0;
    for (int pid : pids)
        n += readAll("/proc/" + std::to_string(pid) + "/cgroup").find("/" + cgroupName + "/") != std::string::npos;
    return n;
}

// CPU time a process has used, in seconds: its threads' run time from
// schedstat (nanoseconds: a forked sandbox process uses far less than the
// 10 ms tick of /proc/PID/stat), plus its reaped children's user and system
// time (ticks: all there is for them), such as a zygote's intermediates.
double cpuSeconds(int pid) {
    const std::string dir = "/proc/" + std::to_string(pid);
    double seconds = 0;
    if (DIR* tasks = ::opendir((dir + "/task").c_str())) {
        while (const dirent* task = ::readdir(tasks))
            if (task->d_name[0] != '.') {
                std::istringstream schedstat(readAll(dir + "/task/" + task->d_name + "/schedstat"));
                double ns = 0;
                if (schedstat >> ns) seconds += ns / 1e9;
            }
        ::closedir(tasks);
    }
    const std::string stat = readAll(dir + "/stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos) return seconds;
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 17 && rest >> field; ++i)  // fields 16 and 17: cutime cstime
        if (i >= 16) ticks += std::stod(field);
    return seconds + ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Pss (or another field) of smaps_rollup, in KiB; 0 for a process gone.
long long rollupKiB(int pid, const std::string& field) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(field + ":", 0) == 0) return std::atoll(line.c_str() + field.size() + 1);
    return 0;
}

// Waits until every pool has started all its ready sandboxes, so that no
// benchmark starts while the daemon is still warming up.
int settle(Context& c, Flags& flags) {
    flags.finish();
    const auto pools = get(c.control, "/pools").json();
    for (const auto& p : pools["value"]) waitUntil(c, p["name"], poolFull, "warming up");
    return 0;
}

int burst(Context& c, Flags& flags) {
    const int sessions = flags.integer("--sessions", 200), ready = flags.integer("--ready", 10);
    flags.finish();
    const std::string pool = "bench-burst";
    putPool(c.control, pool, c.backend, sessions + ready, ready, 600);
    waitUntil(c, pool, poolFull, "warming up");

    std::vector<double> ms(sessions, -1);
    std::vector<std::string> errors(sessions);
    std::barrier go(sessions);
    Clock::time_point start;
    std::once_flag started;
    std::vector<std::uint64_t> seeds;
    for (int i = 0; i < sessions; ++i) seeds.push_back(c.rng());
    inParallel(sessions, [&](int i) {
        HttpClient client(c.port);
        try {
            client.get("/healthz");  // connected before the clock starts
        } catch (const std::exception& e) {
            errors[i] = e.what();
        }
        std::mt19937_64 own(seeds[i]);
        go.arrive_and_wait();
        std::call_once(started, [&] { start = Clock::now(); });
        auto sent = Clock::now();
        try {
            auto r = client.execute(pool, newIdentifier(own), "print(1)");
            if (printedOne(r)) ms[i] = millisecondsSince(sent);
            else errors[i] = std::to_string(r.status) + " " + r.body.substr(0, 200);
        } catch (const std::exception& e) {
            errors[i] = e.what();
        }
    });
    const double allMs = millisecondsSince(start);
    std::vector<double> answered;
    std::map<std::string, int> failed;  // by error
    for (int i = 0; i < sessions; ++i) {
        if (ms[i] >= 0) answered.push_back(ms[i]);
        else ++failed[errors[i]];
    }
    std::string notes = std::to_string(sessions) + " clients at once on a pool keeping " + std::to_string(ready) +
                        " ready";
    for (const auto& [error, count] : failed) notes += "; " + std::to_string(count) + " failed: " + error;
    notes += startFailures(c, pool);
    const int failures = sessions - static_cast<int>(answered.size());
    deletePool(c.control, pool);
    c.figures.add({"burst", "burst: " + std::to_string(sessions) + " new identifiers at once, " +
                                std::to_string(ready) + " ready",
                   "ms",
                   answered.size(),
                   {{"all answered", allMs},
                    {"p50", percentile(answered, 50)},
                    {"p99", percentile(answered, 99)},
                    {"failures", failures}},
                   notes});
    return 0;
}

int refill(Context& c, Flags& flags) {
    const int sessions = flags.integer("--sessions", 50), daemonPid = flags.integer("--daemon-pid", 0);
    flags.finish();
    const std::string pool = "bench-refill";
    // The zygotes and other pools' sandboxes were there before: what they use
    // meanwhile (the zygote's forks) counts too.
    std::map<int, double> before;
    if (daemonPid > 0)
        for (int pid : descendants(daemonPid)) before[pid] = cpuSeconds(pid);
    const double daemonBefore = daemonPid > 0 ? cpuSeconds(daemonPid) : 0;
    auto start = Clock::now();
    putPool(c.control, pool, c.backend, sessions, sessions, 600);
    double firstReady = 0;
    waitUntil(c, pool, [&](const PoolState& s) {
        if (s.unallocated > 0 && firstReady == 0) firstReady = secondsSince(start);
        return s.unallocated >= sessions;
    }, "the refill");
    const double seconds = secondsSince(start);
    std::string notes = "PUT of a pool with readySessionInstances " + std::to_string(sessions) +
                        ", GET every 20 ms until all are ready; first ready after " +
                        std::to_string(static_cast<int>(firstReady * 1000)) + " ms" + startFailures(c, pool);
    if (daemonPid > 0) {
        double sandboxes = 0;
        for (int pid : descendants(daemonPid)) {
            const auto was = before.find(pid);
            sandboxes += cpuSeconds(pid) - (was == before.end() ? 0 : was->second);
        }
        char text[200];
        std::snprintf(text, sizeof text,
                      "; CPU per start: %.1f ms in the sandbox's processes and its zygote, %.1f ms in the daemon",
                      sandboxes * 1000 / sessions, (cpuSeconds(daemonPid) - daemonBefore) * 1000 / sessions);
        notes += text;
    }
    deletePool(c.control, pool);
    c.figures.add({"refill", "refill: empty to " + std::to_string(sessions) + " ready sandboxes", "sessions/s",
                   static_cast<std::size_t>(sessions), {{"rate", sessions / seconds}, {"seconds", seconds}}, notes});
    return 0;
}

int throughput(Context& c, Flags& flags) {
    const int sessions = flags.integer("--sessions", 64), clients = flags.integer("--clients", 64),
              seconds = flags.integer("--seconds", 10);
    flags.finish();
    const std::string pool = "bench-throughput";
    // The sessions are made one after the other (untimed), from a pool keeping
    // a few sandboxes ready: starting them all at once would only measure the
    // starts (see burst).
    putPool(c.control, pool, c.backend, sessions, std::min(sessions, 8), 600);
    std::vector<std::string> ids;
    for (int i = 0; i < sessions; ++i) {
        ids.push_back(newIdentifier(c.rng));
        auto r = c.control.execute(pool, ids.back(), "0", 120);
        if (r.status != 200) throw std::runtime_error("allocating a session failed: " + r.body);
    }
    std::vector<std::vector<double>> times(clients);
    std::vector<int> failures(clients, 0);
    std::barrier go(clients);
    Clock::time_point start, end;
    std::once_flag started;
    inParallel(clients, [&](int i) {
        HttpClient client(c.port);
        std::vector<std::string> own;  // this client's sessions
        for (int s = i; s < sessions; s += clients) own.push_back(ids[s]);
        if (own.empty()) own.push_back(ids[i % sessions]);  // more clients than sessions
        go.arrive_and_wait();
        std::call_once(started, [&] {
            start = Clock::now();
            end = start + std::chrono::seconds(seconds);
        });
        for (std::size_t k = 0; Clock::now() < end; k = (k + 1) % own.size()) {
            auto sent = Clock::now();
            auto r = client.execute(pool, own[k], "1+1");
            if (r.status == 200 && r.json()["properties"]["result"] == 2) times[i].push_back(millisecondsSince(sent));
            else ++failures[i];
        }
    });
    const double elapsed = secondsSince(start);
    std::vector<double> all;
    int failed = 0;
    for (int i = 0; i < clients; ++i) {
        all.insert(all.end(), times[i].begin(), times[i].end());
        failed += failures[i];
    }
    deletePool(c.control, pool);
    c.figures.add({"execute.throughput",
                   "1+1 throughput, " + std::to_string(sessions) + " sessions, " + std::to_string(clients) + " clients",
                   "exec/s; p50, p99: ms",
                   all.size(),
                   {{"rate", all.size() / elapsed},
                    {"p50", percentile(all, 50)},
                    {"p99", percentile(all, 99)},
                    {"failures", failed}},
                   std::to_string(seconds) + " s, each client round robin over its sessions"});
    return 0;
}

int density(Context& c, Flags& flags) {
    // A few sandboxes ready and a few clients: starting many pandas sandboxes
    // at once is the burst benchmark's subject, not this one's.
    const int sessions = flags.integer("--sessions", 200), ready = flags.integer("--ready", 4),
              clients = flags.integer("--clients", 2);
    const long long floorKiB = 1024LL * flags.integer("--min-available-mib", 3072);
    const int daemonPid = flags.integer("--daemon-pid", 0);
    const std::string cgroupName = flags.text("--cgroup-name", "");
    const bool exclusive = flags.integer("--exclusive", 1) != 0;
    flags.finish();
    if (daemonPid <= 0 || cgroupName.empty()) throw std::invalid_argument("density needs --daemon-pid and --cgroup-name");
    const std::string pool = "bench-density";
    const std::vector<std::string> preload = {"pandas"};
    if (exclusive) {
        const auto pools = get(c.control, "/pools").json();
        for (const auto& p : pools["value"])
            if (p["name"] != pool) deletePool(c.control, p["name"]);
    }
    putPool(c.control, pool, c.backend, sessions + ready, ready, 3600, preload);
    waitUntil(c, pool, poolFull, "warming up");
    std::this_thread::sleep_for(2s);
    const long long before = memAvailableKiB();

    // Allocate, `clients` at a time, until `sessions` or the memory floor.
    std::atomic<int> next{0};
    std::atomic<bool> lowMemory{false};
    std::mutex m;
    std::vector<std::string> made, errors;
    std::vector<std::uint64_t> seeds;
    for (int i = 0; i < clients; ++i) seeds.push_back(c.rng());
    auto start = Clock::now();
    inParallel(clients, [&](int i) {
        HttpClient client(c.port);
        std::mt19937_64 own(seeds[i]);
        while (!lowMemory) {
            if (memAvailableKiB() < floorKiB) {
                lowMemory = true;
                break;
            }
            if (next++ >= sessions) break;
            const std::string id = newIdentifier(own);
            std::string error;
            try {
                auto r = client.execute(pool, id, "import pandas as pd; df = pd.DataFrame({'a': range(10)})", 120);
                if (r.status != 200 || r.json()["properties"]["status"] != "Success")
                    error = std::to_string(r.status) + " " + r.body.substr(0, 200);
            } catch (const std::exception& e) {
                error = e.what();
                client.disconnect();
            }
            const std::lock_guard lock(m);
            (error.empty() ? made : errors).push_back(error.empty() ? id : error);
        }
    });
    const double allocating = secondsSince(start);
    const int allocated = static_cast<int>(made.size());
    if (allocated == 0) throw std::runtime_error("no session was allocated: " + (errors.empty() ? "" : errors[0]));

    // Still there, with their state.
    int alive = 0;
    c.control.disconnect();  // idle while the clients allocated
    for (const auto& id : made) {
        auto r = c.control.execute(pool, id, "len(df)");
        if (r.status == 200 && r.json()["properties"]["result"] == 10) ++alive;
    }
    waitUntil(c, pool, poolFull, "refilling");
    std::this_thread::sleep_for(2s);
    const long long after = memAvailableKiB();

    // Only the allocated sessions' sandboxes left (and any helper).
    putPool(c.control, pool, c.backend, sessions + ready, 0, 3600, preload);
    waitUntil(c, pool, [](const PoolState& s) { return s.unallocated == 0 && s.pending == 0; }, "emptying");
    std::this_thread::sleep_for(1s);
    long long pss = 0, rss = 0;
    const auto processes = descendants(daemonPid);
    const int inCgroups = inSandboxCgroups(processes, cgroupName);
    for (int pid : processes) {
        pss += rollupKiB(pid, "Pss");
        rss += rollupKiB(pid, "Rss");
    }
    const double daemonPssMiB = rollupKiB(daemonPid, "Pss") / 1024.0;
    const std::string failures = startFailures(c, pool);
    deletePool(c.control, pool);

    std::string notes = std::to_string(clients) + " clients, " + std::to_string(allocated) + " allocated in " +
                        std::to_string(static_cast<int>(allocating)) + " s";
    if (lowMemory)
        notes += "; STOPPED at the MemAvailable floor of " + std::to_string(floorKiB / 1024) + " MiB before " +
                 std::to_string(sessions);
    for (std::size_t i = 0; i < errors.size() && i < 3; ++i) notes += "; failed: " + errors[i];
    notes += failures;
    c.figures.add({"density.sessions", "density: idle pandas sessions (asked for " + std::to_string(sessions) + ")",
                   "sessions",
                   static_cast<std::size_t>(sessions),
                   {{"sessions", allocated}, {"failures", static_cast<double>(errors.size())}, {"alive", alive}},
                   notes});
    const double mib = 1024.0 * allocated;
    c.figures.add({"density.pss", "density: PSS per idle pandas session", "MiB", static_cast<std::size_t>(allocated),
                   {{"pss", pss / mib}, {"rss", rss / mib}},
                   "smaps_rollup of the daemon's " + std::to_string(processes.size()) + " descendant processes (" +
                       std::to_string(inCgroups) + " in sandbox cgroups), ready sandboxes removed first; the daemon itself: " +
                       std::to_string(static_cast<int>(daemonPssMiB)) + " MiB PSS"});
    c.figures.add({"density.mem_available", "density: host MemAvailable drop per idle pandas session", "MiB",
                   static_cast<std::size_t>(allocated), {{"drop", (before - after) / mib}},
                   "MemAvailable before and after, " + std::to_string(ready) + " ready sandboxes both times"});
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return guardedMain([&] {
        if (argc < 2) throw std::invalid_argument("usage: bench_pools settle|burst|refill|throughput|density [flags]");
        const std::string what = argv[1];
        Flags flags(argc, argv, 2);
        const auto port = static_cast<std::uint16_t>(flags.integer("--port", 8080));
        Context c{port, flags.text("--backend", "namespace"), HttpClient(port), Figures(flags.text("--json", ""))};
        if (what == "settle") return settle(c, flags);
        if (what == "burst") return burst(c, flags);
        if (what == "refill") return refill(c, flags);
        if (what == "throughput") return throughput(c, flags);
        if (what == "density") return density(c, flags);
        throw std::invalid_argument("unknown benchmark " + what);
    });
}
