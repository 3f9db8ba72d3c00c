// MicroVMs restored from a saved template VM instead of booting, nothing
// faked: libvirtd, the guest image, QEMU (under TCG where KVM cannot run
// guests). Restored VMs must run code and keep state, and must not share
// entropy, interpreter seeds, machine ids or a stale clock; a corrupt saved
// state falls back to booting; nothing is left behind. Also measures boot
// against restore (SESSIOND_VM_SAMPLES samples each, 3 by default, of a
// pool preloading SESSIOND_VM_PRELOAD, none by default).
//
// Skipped without libvirtd or a built guest image (scripts/test.sh provides
// both; SESSIOND_IMAGE_DIR overrides the image directory).

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include <boost/asio.hpp>
#include <gtest/gtest.h>

#include "sessiond/sandbox/libvirt/libvirt_backend.hpp"
#include "support/http_client.hpp"
#include "support/server_fixture.hpp"
#include "support/vm_files.hpp"
#include "support/vm_pool_fixture.hpp"

using namespace sessiond;
using sessiond::testing::domainsNamed;
using sessiond::testing::filesUnder;
using sessiond::testing::HttpClient;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::vector<fs::path> stateFilesUnder(const fs::path& root) {
    std::vector<fs::path> found;
    for (const auto& file : filesUnder(root.string()))
        if (file.filename() == "state") found.push_back(file);
    return found;
}

class LibvirtRestore : public sessiond::testing::VmPoolTest {
protected:
    void SetUp() override {
        prepare("rstest");
        config.libvirt.start = "restore";
        config.pools[0].readySessionInstances = 2;
        // Imported in the template, so its generator is in the saved state.
        config.pools[0].preloadModules = {"numpy"};
    }

    // The execution's result; it must have succeeded.
    nlohmann::json result(HttpClient& client, const std::string& id, const std::string& code) {
        auto properties = run(client, id, code);
        EXPECT_EQ(properties["status"], "Success") << properties;
        return properties["result"];
    }
};

TEST_F(LibvirtRestore, RestoredVmsRunCodeKeepStateAndShareNothing) {
    start();
    ASSERT_TRUE(waitReady(2)) << "the pool did not fill";
    auto counts = backend->counts();
    EXPECT_EQ(counts.templatesSaved, 1u);
    EXPECT_EQ(counts.restored, 2u) << "both ready VMs should have been restored, not booted";
    EXPECT_EQ(counts.booted, 0u);
    EXPECT_EQ(stateFilesUnder(runtime_).size(), 1u) << "one saved state, the template's";

    HttpClient client(server.port());
    const std::string probe =
        "import json, os, random, time, numpy\n"
        "json.dumps([os.urandom(16).hex(), random.random(), float(numpy.random.rand()),"
        " open('/etc/machine-id').read().strip(), open('/proc/sys/kernel/random/boot_id').read().strip(), time.time()])";
    std::vector<nlohmann::json> seen;
    for (const char* id : {"restored-1", "restored-2"}) {
        result(client, id, "x = 21");
        EXPECT_EQ(result(client, id, "x * 2"), 42) << "state is kept between requests";
        auto text = result(client, id, probe);
        ASSERT_TRUE(text.is_string()) << text;
        seen.push_back(nlohmann::json::parse(text.get<std::string>(), nullptr, false));
        ASSERT_TRUE(seen.back().is_array()) << text;
    }
    const double host = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    for (std::size_t i = 0; i < 5; ++i) EXPECT_NE(seen[0][i], seen[1][i]) << "value " << i << " is shared";
    for (const auto& values : seen) {
        EXPECT_EQ(values[3].get<std::string>().size(), 32u) << values;
        EXPECT_NEAR(values[5].get<double>(), host, 5.0) << "the guest clock was not set after the restore";
    }
    std::cout << "restored VMs: " << seen[0].dump() << " / " << seen[1].dump() << "\n";

    // Ending a session removes its VM and files at once.
    auto ended = client.request(boost::beast::http::verb::delete_, "/pools/vm/session?identifier=restored-1");
    EXPECT_LT(ended.status, 300) << ended.body;
    // The oldest ready VM went to the first session.
    const std::string first = "sessiond-" + config.cgroupName + "-vm-1";
    EXPECT_TRUE(server.waitFor(
        [&] {
            auto names = domainsNamed(config.cgroupName);
            return std::find(names.begin(), names.end(), first) == names.end() &&
                   !fs::exists(fs::path(runtime_) / config.cgroupName / "vm-1");
        },
        30s))
        << "the ended session's VM or files are still there";
}

TEST_F(LibvirtRestore, ACorruptSavedStateFallsBackToBooting) {
    config.pools[0].readySessionInstances = 1;
    start();
    ASSERT_TRUE(waitReady(1));
    auto states = stateFilesUnder(runtime_);
    ASSERT_EQ(states.size(), 1u);
    fs::resize_file(states[0], fs::file_size(states[0]) / 2);

    // Taking the ready VM starts a replacement, which cannot be restored.
    HttpClient client(server.port());
    EXPECT_EQ(result(client, "corrupt-1", "6 * 7"), 42);
    ASSERT_TRUE(waitReady(1)) << "the replacement did not boot";
    auto counts = backend->counts();
    EXPECT_EQ(counts.restoreFailures, 1u);
    EXPECT_EQ(counts.booted, 1u);
    EXPECT_EQ(result(client, "corrupt-2", "6 * 7"), 42) << "the booted VM works";
    EXPECT_TRUE(stateFilesUnder(runtime_).empty()) << "the corrupt template should be gone";
}

TEST_F(LibvirtRestore, ATemplateThatNeverSaysHelloLeavesNothingAndItsVmsBoot) {
    // Far shorter than any boot here: the template and every VM time out.
    config.pools[0].sandboxStartTimeout = 2s;
    config.pools[0].readySessionInstances = 1;
    start();
    ASSERT_TRUE(server.waitFor([&] { return server.counts("vm").startFailures >= 2; }, 60s));
    EXPECT_EQ(backend->counts().templatesSaved, 0u);
    EXPECT_GE(backend->counts().booted, 1u) << "without a template the VMs boot";
    EXPECT_TRUE(filesUnder((fs::path(runtime_) / config.cgroupName / "_templates").string()).empty())
        << "the failed template left files";
    for (const auto& name : domainsNamed(config.cgroupName))
        EXPECT_EQ(name.find("_template"), std::string::npos) << "the failed template's domain is still there";
}

// start() to ready of `samples` sandboxes made one after another, in ms.
std::vector<double> timeStarts(const Config& config, const PoolConfig& pool, int samples, int warmUps) {
    boost::asio::io_context io;
    auto work = boost::asio::make_work_guard(io);  // run_for() must wait for the backend's posts
    LibvirtBackend backend(io, config);
    backend.cleanupLeftovers();
    std::vector<double> times;
    for (int i = 0; i < samples + warmUps; ++i) {
        auto sandbox = backend.create(pool, pool.name + "-" + std::to_string(i + 1));
        std::optional<std::string> ready;
        const auto started = std::chrono::steady_clock::now();
        sandbox->start([&](std::string error) { ready = error; });
        while (!ready) io.run_for(5ms);
        EXPECT_EQ(*ready, "") << "sandbox " << i + 1;
        if (i >= warmUps)
            times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
        // The next start must not wait behind this VM's teardown.
        sandbox.reset();
        const fs::path directory = config.libvirt.runtimeDirectory / config.cgroupName / (pool.name + "-" + std::to_string(i + 1));
        while (fs::exists(directory)) io.run_for(10ms);
    }
    return times;
}

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
}

TEST_F(LibvirtRestore, RestoringIsFasterThanBooting) {
    const char* samplesVariable = std::getenv("SESSIOND_VM_SAMPLES");
    const int samples = samplesVariable ? std::max(1, std::atoi(samplesVariable)) : 3;
    PoolConfig pool = config.pools[0];
    // SESSIOND_VM_PRELOAD=numpy,pandas: the pool imports these before its VMs are ready.
    pool.preloadModules = {};
    if (const char* preload = std::getenv("SESSIOND_VM_PRELOAD")) {
        std::stringstream modules(preload);
        for (std::string module; std::getline(modules, module, ',');)
            if (!module.empty()) pool.preloadModules.push_back(module);
    }
    config.libvirt.start = "boot";
    auto booted = timeStarts(config, pool, samples, 0);
    config.libvirt.start = "restore";
    // The first start makes the template (a boot and a save): not a sample.
    auto restored = timeStarts(config, pool, samples, 1);
    const double boot = median(booted), restore = median(restored);
    std::cout << "boot to ready, ms:";
    for (double t : booted) std::cout << ' ' << t;
    std::cout << "\nrestore to ready, ms:";
    for (double t : restored) std::cout << ' ' << t;
    std::cout << "\np50 boot " << boot << " ms, p50 restore " << restore << " ms, ratio " << boot / restore << "\n";
    EXPECT_LT(restore * 2, boot) << "restoring should be far faster than booting";
}

}  // namespace
