#include "vm_template.hpp"

#include <optional>
#include <stdexcept>
#include <thread>

#include <boost/asio.hpp>
#include <spdlog/spdlog.h>

#include "connection.hpp"
#include "sessiond/sandbox/agent_protocol.hpp"

namespace sessiond::libvirt {

namespace fs = std::filesystem;

namespace {

// The agent's preparation (syncing, dropping caches, compacting memory).
constexpr auto kPrepareTimeout = std::chrono::seconds(60);
constexpr auto kConnectTimeout = std::chrono::seconds(2);
constexpr auto kPollInterval = std::chrono::milliseconds(50);

// Runs `io` until `done()`; throws once `deadline` passes or the backend stops.
template <typename Done>
void runUntil(boost::asio::io_context& io, Done done, std::chrono::steady_clock::time_point deadline,
              const std::atomic<bool>* abandon, const char* what) {
    while (!done()) {
        if (abandon && *abandon) throw std::runtime_error(std::string("abandoned while waiting for ") + what);
        if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error(std::string("no ") + what + " in time");
        io.run_for(kPollInterval);
    }
}

}  // namespace

AgentChannel::Socket connectAgentSocket(boost::asio::io_context& io, const fs::path& path) {
    // QEMU makes the socket before virDomainCreateXML returns; the retries
    // cover a hypervisor that is slower.
    const auto deadline = std::chrono::steady_clock::now() + kConnectTimeout;
    for (;;) {
        AgentChannel::Socket socket(io);
        boost::system::error_code ec;
        socket.connect(boost::asio::local::stream_protocol::endpoint(path.string()), ec);
        if (!ec) return socket;
        if (std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error("cannot connect to the agent socket " + path.string() + ": " + ec.message());
        std::this_thread::sleep_for(kPollInterval);
    }
}

std::shared_ptr<const VmTemplate> buildTemplate(const TemplateBuild& build, const fs::path& directory) {
    const DomainSpec& spec = build.spec;
    checkSocketPath(spec.agentSocket);
    auto made = std::make_shared<VmTemplate>(directory);
    createOverlay(spec.diskBase, spec.disk);
    const std::string xml = buildDomainXml(spec);
    OwnedDomain domain(virDomainCreateXML(build.connection, xml.c_str(), build.startFlags));
    if (!domain) {
        const std::string error = lastError();
        removeDomainLog(build.connection, spec.name);
        throw std::runtime_error("libvirt could not start the template VM " + spec.name + ": " + error);
    }

    // Declared before the channel, whose handlers it holds.
    boost::asio::io_context io;
    auto channel = std::make_shared<AgentChannel>(connectAgentSocket(io, spec.agentSocket));
    std::optional<std::string> helloError;
    channel->waitForHello(build.helloTimeout, [&](std::string error, nlohmann::json) { helloError = std::move(error); });
    try {
        runUntil(io, [&] { return helloError.has_value(); }, std::chrono::steady_clock::now() + build.helloTimeout,
                 build.abandon, "hello from the template VM's agent");
        if (!helloError->empty()) throw std::runtime_error("no hello from the template VM's agent: " + *helloError);
    } catch (const std::runtime_error& e) {
        const std::string console = consoleTail(spec.consoleLog);
        throw std::runtime_error(std::string(e.what()) +
                                 (console.empty() ? "" : "; the end of its console:\n" + console));
    }

    std::optional<Outcome<std::string>> prepared;
    channel->request(makeSnapshotSaveMessage(), kPrepareTimeout, [&](std::string error, nlohmann::json reply) {
        prepared = error.empty() ? parseSnapshotReply(reply) : Outcome<std::string>{std::move(error), {}, {}};
    });
    runUntil(io, [&] { return prepared.has_value(); }, std::chrono::steady_clock::now() + kPrepareTimeout, build.abandon,
             "answer to the template VM's snapshot request");
    if (!prepared->ok()) throw std::runtime_error("the template VM's agent could not prepare: " + prepared->error);

    // Saved with the channel open: an agent whose host goes away ends its VM,
    // and each member's host end is connected before its vCPUs run again.
    const auto started = std::chrono::steady_clock::now();
    if (virDomainSaveFlags(domain.get(), made->stateFile().c_str(), nullptr, 0) < 0)
        throw std::runtime_error("libvirt could not save the template VM " + spec.name + ": " + lastError());
    channel->close();
    made->saved = readSavedState(made->stateFile());
    spdlog::info("template VM {} saved in {} ms: {} MiB of state", spec.name,
                 std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count(),
                 fs::file_size(made->stateFile()) >> 20);
    return made;
}

}  // namespace sessiond::libvirt
