// LibvirtBackend against libvirt's test driver (test:///default, in-process,
// no daemon): sandbox start and teardown, lifecycle events reaching the
// io_context, and the cleanup of an earlier run's leftovers. The test driver
// starts no QEMU, so a fake agent listens on the sandbox's agent socket.

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include <boost/asio.hpp>
#include <gtest/gtest.h>

#include "../src/sandbox/libvirt/connection.hpp"
#include "../src/sandbox/libvirt/domain_xml.hpp"
#include "sessiond/sandbox/agent_channel.hpp"
#include "sessiond/sandbox/libvirt/libvirt_backend.hpp"

using namespace sessiond;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kUri = "test:///default";

class TempDir {
public:
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "sessiond-lv-XXXXXX").string();
        path_ = ::mkdtemp(pattern.data());
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

// Plays the guest agent: binds the sandbox's agent socket once the backend
// has made the sandbox's directory, accepts the daemon and says hello.
class FakeAgent {
public:
    explicit FakeAgent(fs::path directory) : thread_([this, directory] { run(directory); }) {}
    ~FakeAgent() {
        stop_ = true;
        thread_.join();
    }

private:
    void run(const fs::path& directory) {
        auto deadline = std::chrono::steady_clock::now() + 10s;
        while (!stop_ && !fs::exists(directory)) {
            if (std::chrono::steady_clock::now() > deadline) return;
            std::this_thread::sleep_for(1ms);
        }
        int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::string path = (directory / "agent.sock").string();
        std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
        if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(listener, 1) != 0) {
            ::close(listener);
            return;
        }
        int connection = -1;
        while (!stop_ && connection < 0) {
            pollfd ready{listener, POLLIN, 0};
            if (::poll(&ready, 1, 10) == 1) connection = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        }
        ::close(listener);
        if (connection < 0) return;
        std::string hello = encodeFrame({{"type", "hello"}, {"protocol", 1}, {"agentPid", 1}});
        [[maybe_unused]] auto written = ::write(connection, hello.data(), hello.size());
        while (!stop_) std::this_thread::sleep_for(5ms);
        ::close(connection);
    }

    std::atomic<bool> stop_{false};
    std::thread thread_;
};

bool domainExists(const libvirt::Connection& connection, const std::string& name) {
    return libvirt::DomainRef(virDomainLookupByName(connection.get(), name.c_str())) != nullptr;
}

// The backing file recorded in a qcow2 header (big-endian offset at 8, size at 16).
std::string qcow2BackingFile(const fs::path& image) {
    std::ifstream in(image, std::ios::binary);
    unsigned char header[20] = {};
    in.read(reinterpret_cast<char*>(header), sizeof header);
    std::uint64_t offset = 0;
    for (int i = 8; i < 16; ++i) offset = offset << 8 | header[i];
    std::uint32_t size = 0;
    for (int i = 16; i < 20; ++i) size = size << 8 | header[i];
    std::string name(size, '\0');
    in.seekg(static_cast<std::streamoff>(offset));
    in.read(name.data(), size);
    return name;
}

class LibvirtBackendTest : public ::testing::Test {
protected:
    void SetUp() override {
        static int serial = 0;
        config.cgroupName = "lvtest-" + std::to_string(getpid()) + "-" + std::to_string(++serial);
        config.libvirt.uri = kUri;
        config.libvirt.accelerator = "tcg";
        config.libvirt.imageDirectory = temp.path() / "images";
        config.libvirt.runtimeDirectory = temp.path() / "run";
        pool.name = "default";
        pool.backend = "libvirt";
        pool.preloadModules = {"numpy"};
        pool.sandboxStartTimeout = 10s;
    }

    void makeImage() {
        fs::path version = config.libvirt.imageDirectory / "v1";
        fs::create_directories(version);
        std::ofstream(version / "vmlinuz") << "not a kernel: the test driver never boots it";
        std::string command = "qemu-img create -q -f qcow2 '" + (version / "rootfs.qcow2").string() + "' 16M";
        ASSERT_EQ(std::system(command.c_str()), 0) << command;
        fs::create_directory_symlink("v1", config.libvirt.imageDirectory / "current");
    }

    fs::path sandboxDirectory(const std::string& id) const {
        return config.libvirt.runtimeDirectory / config.cgroupName / id;
    }
    std::string domain(const std::string& id) const { return libvirt::domainName(config.cgroupName, id); }

    template <typename Predicate>
    bool runUntil(Predicate done, std::chrono::milliseconds limit = 5s) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < deadline) io.run_for(5ms);
        return done();
    }

    TempDir temp;
    Config config;
    PoolConfig pool;
    boost::asio::io_context io;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
};

TEST_F(LibvirtBackendTest, ConnectionFailureNamesTheUri) {
    config.libvirt.uri = "test:///no/such/driver/file.xml";
    try {
        LibvirtBackend backend(io, config);
        FAIL() << "connecting must fail";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("'test:///no/such/driver/file.xml'"), std::string::npos) << e.what();
    }
}

TEST_F(LibvirtBackendTest, StartsAVmAndNoticesItStopping) {
    makeImage();
    auto backend = std::make_unique<LibvirtBackend>(io, config);
    EXPECT_EQ(backend->name(), "libvirt");
    EXPECT_EQ(backend->accelerator(), "tcg");
    libvirt::Connection outside(kUri);

    auto sandbox = backend->create(pool, "default-1");
    std::optional<std::string> ready, exited;
    std::thread::id exitThread;
    sandbox->setExitHandler([&](std::string reason) {
        exited = reason;
        exitThread = std::this_thread::get_id();
    });
    {
        FakeAgent agent(sandboxDirectory("default-1"));
        sandbox->start([&](std::string error) { ready = error; });
        ASSERT_TRUE(runUntil([&] { return ready.has_value(); }));
        ASSERT_EQ(*ready, "");

        libvirt::DomainRef vm(virDomainLookupByName(outside.get(), domain("default-1").c_str()));
        ASSERT_TRUE(vm);
        EXPECT_EQ(virDomainIsActive(vm.get()), 1);
        EXPECT_EQ(virDomainIsPersistent(vm.get()), 0);
        auto metadata = libvirt::readSandboxMetadata(vm.get());
        ASSERT_TRUE(metadata);
        EXPECT_EQ(metadata->instance, config.cgroupName);
        EXPECT_EQ(metadata->pool, "default");
        EXPECT_EQ(metadata->sandbox, "default-1");
        // The layer is bound to the image version, not to `current`.
        EXPECT_EQ(qcow2BackingFile(sandboxDirectory("default-1") / "disk.qcow2"),
                  fs::canonical(config.libvirt.imageDirectory / "v1" / "rootfs.qcow2").string());
        std::unique_ptr<char, decltype(&std::free)> xml(virDomainGetXMLDesc(vm.get(), 0), &std::free);
        EXPECT_NE(std::string(xml.get()).find("sessiond.preload=numpy"), std::string::npos);

        // Someone else stops the VM: the sandbox hears of it on the io_context.
        auto stoppedAt = std::chrono::steady_clock::now();
        ASSERT_EQ(virDomainDestroy(vm.get()), 0) << libvirt::lastError();
        ASSERT_TRUE(runUntil([&] { return exited.has_value(); }, 1s));
        EXPECT_LT(std::chrono::steady_clock::now() - stoppedAt, 1s);
        EXPECT_EQ(*exited, "the VM stopped: destroyed from outside sessiond");
        EXPECT_EQ(exitThread, std::this_thread::get_id());
    }

    sandbox.reset();
    backend.reset();
    EXPECT_FALSE(fs::exists(sandboxDirectory("default-1")));
    EXPECT_FALSE(domainExists(outside, domain("default-1")));
}

TEST_F(LibvirtBackendTest, DestroyingTheSandboxRemovesItsVmAndFiles) {
    makeImage();
    auto backend = std::make_unique<LibvirtBackend>(io, config);
    libvirt::Connection outside(kUri);
    std::vector<std::unique_ptr<Sandbox>> sandboxes;
    std::vector<std::optional<std::string>> ready(3);
    std::optional<std::string> exited;
    {
        std::vector<std::unique_ptr<FakeAgent>> agents;
        for (int i = 0; i < 3; ++i) {
            std::string id = "default-" + std::to_string(i + 1);
            agents.push_back(std::make_unique<FakeAgent>(sandboxDirectory(id)));
            sandboxes.push_back(backend->create(pool, id));
            sandboxes.back()->setExitHandler([&](std::string reason) { exited = reason; });
            sandboxes.back()->start([&ready, i](std::string error) { ready[i] = error; });
        }
        ASSERT_TRUE(runUntil([&] { return ready[0] && ready[1] && ready[2]; }));
        for (int i = 0; i < 3; ++i) EXPECT_EQ(*ready[i], "") << i;
        for (int i = 0; i < 3; ++i) EXPECT_TRUE(domainExists(outside, domain("default-" + std::to_string(i + 1))));
    }
    sandboxes.clear();
    backend.reset();  // waits for the teardowns
    runUntil([] { return false; }, 100ms);
    EXPECT_FALSE(exited) << *exited;  // stopping it ourselves is not an exit
    for (int i = 0; i < 3; ++i) EXPECT_FALSE(domainExists(outside, domain("default-" + std::to_string(i + 1))));
    EXPECT_FALSE(fs::exists(config.libvirt.runtimeDirectory / config.cgroupName));
}

TEST_F(LibvirtBackendTest, DestroyedWhileStartingLeavesNothing) {
    makeImage();
    auto backend = std::make_unique<LibvirtBackend>(io, config);
    libvirt::Connection outside(kUri);
    std::optional<std::string> ready;
    auto sandbox = backend->create(pool, "default-1");
    sandbox->start([&](std::string error) { ready = error; });
    sandbox.reset();
    backend.reset();
    runUntil([&] { return ready.has_value(); }, 1s);
    EXPECT_FALSE(domainExists(outside, domain("default-1")));
    EXPECT_FALSE(fs::exists(sandboxDirectory("default-1")));
}

TEST_F(LibvirtBackendTest, StartFailsClearlyWithoutAGuestImage) {
    LibvirtBackend backend(io, config);
    std::optional<std::string> ready;
    auto sandbox = backend.create(pool, "default-1");
    sandbox->start([&](std::string error) { ready = error; });
    ASSERT_TRUE(runUntil([&] { return ready.has_value(); }));
    EXPECT_NE(ready->find("no guest image at " + (config.libvirt.imageDirectory / "current").string()),
              std::string::npos)
        << *ready;
}

TEST_F(LibvirtBackendTest, CleanupRemovesOnlyThisInstancesLeftovers) {
    libvirt::Connection outside(kUri);
    const std::string other = config.cgroupName + "-other";
    auto xmlFor = [&](const std::string& instance, const std::string& id) {
        libvirt::DomainSpec spec;
        spec.name = libvirt::domainName(instance, id);
        spec.metadata = {instance, "default", id};
        spec.kernel = "/nonexistent/vmlinuz";
        spec.cmdline = libvirt::kernelCommandLine("python", {});
        fs::path directory = config.libvirt.runtimeDirectory / instance / id;
        spec.disk = directory / "disk.qcow2";
        spec.agentSocket = directory / "agent.sock";
        spec.consoleLog = directory / "console.log";
        fs::create_directories(directory);
        std::ofstream(directory / "console.log") << "boot\n";
        return libvirt::buildDomainXml(spec);
    };
    auto start = [&](const std::string& xml) {
        libvirt::DomainRef d(virDomainCreateXML(outside.get(), xml.c_str(), 0));
        ASSERT_TRUE(d) << libvirt::lastError();
    };
    auto define = [&](const std::string& xml, bool run) {
        libvirt::DomainRef d(virDomainDefineXML(outside.get(), xml.c_str()));
        ASSERT_TRUE(d) << libvirt::lastError();
        if (run) {
            ASSERT_EQ(virDomainCreate(d.get()), 0) << libvirt::lastError();
        }
    };
    start(xmlFor(config.cgroupName, "default-1"));         // ours, transient
    define(xmlFor(config.cgroupName, "default-2"), true);  // ours, persistent and running
    define(xmlFor(config.cgroupName, "default-3"), false); // ours, defined only
    fs::create_directories(sandboxDirectory("default-9")); // ours, no domain any more
    start(xmlFor(other, "default-1"));                     // another instance's
    const std::string untagged = "lvtest-untagged-" + std::to_string(getpid());
    start("<domain type='test'><name>" + untagged + "</name><memory>65536</memory>"
          "<os><type>hvm</type></os></domain>");

    {
        LibvirtBackend backend(io, config);
        backend.cleanupLeftovers();
        EXPECT_TRUE(fs::is_empty(config.libvirt.runtimeDirectory / config.cgroupName));
    }

    for (const char* id : {"default-1", "default-2", "default-3"}) EXPECT_FALSE(domainExists(outside, domain(id))) << id;
    EXPECT_TRUE(domainExists(outside, libvirt::domainName(other, "default-1")));
    EXPECT_TRUE(fs::exists(config.libvirt.runtimeDirectory / other / "default-1" / "console.log"));
    EXPECT_TRUE(domainExists(outside, untagged));
    EXPECT_TRUE(domainExists(outside, "test"));

    for (const std::string& name : {libvirt::domainName(other, "default-1"), untagged}) {
        libvirt::DomainRef d(virDomainLookupByName(outside.get(), name.c_str()));
        if (d) libvirt::destroyDomain(d.get());
    }
}

TEST_F(LibvirtBackendTest, CleanupWithNothingLeftIsQuiet) {
    LibvirtBackend backend(io, config);
    EXPECT_NO_THROW(backend.cleanupLeftovers());
}

}  // namespace
