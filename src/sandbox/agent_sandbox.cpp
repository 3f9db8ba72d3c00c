#include "sessiond/sandbox/agent_sandbox.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "sessiond/sandbox/agent_protocol.hpp"

namespace sessiond {

namespace {
// The agent enforces the execution timeout itself and needs a moment to
// interrupt or restart the interpreter; the channel's own deadline only
// catches an agent that stopped answering.
constexpr auto kAgentGrace = std::chrono::seconds(15);
// File operations and descriptions are local work for the agent; one that
// takes longer means the agent is stuck.
constexpr auto kAgentRequestTimeout = std::chrono::seconds(60);

FileEntry entryFor(const std::string& path, std::uint64_t size, std::int64_t modifiedMs) {
    FileEntry entry;
    entry.path = path;
    auto slash = path.rfind('/');
    entry.name = slash == std::string::npos ? path : path.substr(slash + 1);
    entry.directory = slash == std::string::npos ? "" : path.substr(0, slash);
    entry.size = size;
    entry.modifiedMs = modifiedMs;
    return entry;
}

// What grew between two readings, as one line for the caller; "" if nothing did.
std::string limitHits(const AgentSandbox::LimitCounters& before, const AgentSandbox::LimitCounters& after) {
    std::string text;
    const auto add = [&text](const std::string& part) { text += (text.empty() ? "sessiond: " : "; ") + part; };
    if (after.memoryLimitBytes > 0 && after.oomKills > before.oomKills)
        add("the session reached its memory limit (" + std::to_string(after.memoryLimitBytes >> 20) +
            " MiB) and the kernel killed " + std::to_string(after.oomKills - before.oomKills) +
            " of its processes");
    if (after.pidsLimit > 0 && after.pidsLimitHits > before.pidsLimitHits)
        add("the session reached its process limit (" + std::to_string(after.pidsLimit) + ") and " +
            std::to_string(after.pidsLimitHits - before.pidsLimitHits) + " process creations were refused");
    return text;
}

}  // namespace

AgentSandbox::AgentSandbox(boost::asio::io_context& io, std::string id, std::chrono::milliseconds startTimeout)
    : io_(io), id_(std::move(id)), startTimeout_(startTimeout) {}

AgentSandbox::~AgentSandbox() {
    if (channel_) channel_->close();
}

void AgentSandbox::start(ReadyHandler onReady) {
    std::weak_ptr<bool> alive = alive_;
    auto onLaunched = [this, alive, onReady](std::string error, std::optional<AgentChannel::Socket> socket) {
        if (alive.expired()) return onReady(error.empty() ? "sandbox destroyed while starting" : error);
        if (!error.empty() || !socket) {
            // Never call back from inside launch(): the pool may destroy us.
            boost::asio::post(io_, [onReady, error] { onReady(error.empty() ? "no agent channel" : error); });
            return;
        }
        channel_ = std::make_shared<AgentChannel>(std::move(*socket));
        waitForAgent(std::move(onReady));
    };
    try {
        launch(std::move(onLaunched));
    } catch (const std::exception& e) {
        boost::asio::post(io_, [onReady, error = std::string(e.what())] { onReady(error); });
    }
}

void AgentSandbox::waitForAgent(ReadyHandler onReady) {
    std::weak_ptr<bool> alive = alive_;
    channel_->setClosedHandler([this, alive](std::string reason) {
        if (!alive.expired()) reportExit("agent channel closed: " + reason);
    });
    auto becomeReady = [this, alive, onReady](std::string error) {
        if (alive.expired()) return onReady(error.empty() ? "sandbox destroyed while starting" : error);
        if (!error.empty()) return onReady(error);
        ready_ = true;
        becameReady();
        spdlog::debug("sandbox {}: agent ready", id_);
        onReady("");
    };
    auto onHandshake = [this, alive, onReady, becomeReady](std::string error, nlohmann::json hello) {
        if (alive.expired()) return onReady(error.empty() ? "sandbox destroyed while starting" : error);
        if (!error.empty()) return onReady("no handshake from the agent: " + error);
        spdlog::debug("sandbox {}: agent handshake: {}", id_, hello.dump());
        runSetup(setupRequests(), 0, becomeReady);
    };
    if (auto request = handshakeRequest()) {
        channel_->request(std::move(*request), startTimeout_, [onHandshake](std::string error, nlohmann::json reply) {
            if (error.empty()) error = parseSnapshotReply(reply).error;
            onHandshake(std::move(error), std::move(reply));
        });
        return;
    }
    channel_->waitForHello(startTimeout_, onHandshake);
}

void AgentSandbox::runSetup(std::vector<nlohmann::json> requests, std::size_t next,
                            std::function<void(std::string error)> onDone) {
    if (next == requests.size()) return onDone("");
    const std::string type = requests[next]["type"];
    auto request = requests[next];
    channel_->request(std::move(request), startTimeout_,
                      [this, alive = std::weak_ptr<bool>(alive_), requests = std::move(requests), next, type,
                       onDone = std::move(onDone)](std::string error, nlohmann::json reply) mutable {
                          if (alive.expired()) return onDone("sandbox destroyed while starting");
                          if (error.empty()) error = parseAcknowledgement(reply, type).error;
                          if (!error.empty()) return onDone("the agent could not carry out its " + type + " request: " + error);
                          runSetup(std::move(requests), next + 1, std::move(onDone));
                      });
}

void AgentSandbox::execute(ExecuteRequest request, ExecuteHandler onDone) {
    if (!ready_ || !channel_ || !channel_->isOpen()) {
        boost::asio::post(io_, [onDone] { onDone({"the sandbox is not running", {}, ""}); });
        return;
    }
    auto deadline = std::chrono::duration_cast<std::chrono::milliseconds>(request.timeout + kAgentGrace);
    channel_->request(makeExecuteMessage(request), deadline,
                      [this, alive = std::weak_ptr<bool>(alive_), before = limitCounters(), onDone](
                          std::string error, nlohmann::json reply) {
                          std::string hits;
                          if (!alive.expired()) {
                              LimitCounters after = limitCounters();
                              // A guest that enforces the limit itself counts its hits.
                              if (const auto guest = parseGuestLimitHits(reply); guest.pidsRefused > 0) {
                                  after.pidsLimit = guest.pidsLimit;
                                  after.pidsLimitHits = before.pidsLimitHits + guest.pidsRefused;
                              }
                              hits = limitHits(before, after);
                          }
                          if (!error.empty()) return onDone({error + (hits.empty() ? "" : "; " + hits), {}, ""});
                          auto outcome = parseExecuteReply(reply);
                          if (!hits.empty()) {
                              if (outcome.ok()) {
                                  std::string& stderrText = outcome.value.stderrText;
                                  if (!stderrText.empty() && stderrText.back() != '\n') stderrText += '\n';
                                  stderrText += hits + "\n";
                              } else {
                                  outcome.error += "; " + hits;
                              }
                          }
                          onDone(std::move(outcome));
                      });
}

template <typename T>
void AgentSandbox::ask(nlohmann::json message, Outcome<T> (*parse)(const nlohmann::json&), Handler<T> onDone) {
    // Outcomes are built by field: GCC 12 warns, wrongly, about a braced one.
    auto failed = [](std::string error) {
        Outcome<T> outcome;
        outcome.error = std::move(error);
        return outcome;
    };
    if (!ready_ || !channel_ || !channel_->isOpen()) {
        boost::asio::post(io_, [onDone, failed] { onDone(failed("the sandbox is not running")); });
        return;
    }
    channel_->request(std::move(message), kAgentRequestTimeout,
                      [parse, onDone, failed](std::string error, nlohmann::json reply) {
                          if (!error.empty()) return onDone(failed(std::move(error)));
                          onDone(parse(reply));
                      });
}

void AgentSandbox::listFiles(const std::string& directory, bool recursive, Handler<std::vector<FileEntry>> onDone) {
    ask(makeListFilesMessage(directory, recursive), &parseListFilesReply, std::move(onDone));
}

void AgentSandbox::statFile(const std::string& path, Handler<FileEntry> onDone) {
    ask(makeStatFileMessage(path), &parseStatFileReply, std::move(onDone));
}

void AgentSandbox::deleteFile(const std::string& path, Handler<Done> onDone) {
    ask(makeDeleteFileMessage(path), &parseDeleteFileReply, std::move(onDone));
}

void AgentSandbox::describe(Handler<nlohmann::json> onDone) {
    ask(nlohmann::json{{"type", "describe"}}, &parseDescribeReply, std::move(onDone));
}

// Files travel in chunks so no frame nears the channel's limit.
void AgentSandbox::readFile(const std::string& path, std::uint64_t maxBytes, Handler<FileContent> onDone) {
    readFrom(path, maxBytes, std::make_shared<FileContent>(), std::move(onDone));
}

void AgentSandbox::readFrom(std::string path, std::uint64_t maxBytes, std::shared_ptr<FileContent> content,
                            Handler<FileContent> onDone) {
    // One byte past the limit is enough to know the file is over it.
    const std::uint64_t wanted = std::min<std::uint64_t>(kFileChunkBytes, maxBytes + 1 - content->bytes.size());
    auto message = makeReadFileMessage(path, content->bytes.size(), wanted);
    ask<FileChunk>(std::move(message), &parseReadFileReply,
                   [this, alive = std::weak_ptr<bool>(alive_), path, maxBytes, content, onDone](Outcome<FileChunk> chunk) {
                       if (!chunk.ok()) return onDone({chunk.error, {}, chunk.code});
                       content->bytes += chunk.value.bytes;
                       if (content->bytes.size() > maxBytes)
                           return onDone({"the file is larger than the download limit of " +
                                              std::to_string(maxBytes) + " bytes (http.maxDownloadBytes)",
                                          {}, "tooLarge"});
                       if (chunk.value.eof || chunk.value.bytes.empty()) {
                           content->entry = entryFor(path, content->bytes.size(), chunk.value.modifiedMs);
                           return onDone({"", std::move(*content), ""});
                       }
                       if (alive.expired()) return onDone({"the sandbox was destroyed", {}, ""});
                       readFrom(path, maxBytes, content, onDone);
                   });
}

void AgentSandbox::writeFile(const std::string& path, std::string bytes, Handler<FileEntry> onDone) {
    writeFrom(path, std::make_shared<const std::string>(std::move(bytes)), 0, std::move(onDone));
}

void AgentSandbox::writeFrom(std::string path, std::shared_ptr<const std::string> bytes, std::size_t offset,
                             Handler<FileEntry> onDone) {
    const std::size_t length = std::min(kFileChunkBytes, bytes->size() - offset);
    const bool last = offset + length == bytes->size();
    auto message = makeWriteFileMessage(path, std::string_view(*bytes).substr(offset, length), offset == 0, last);
    ask<std::optional<FileEntry>>(
        std::move(message), &parseWriteFileReply,
        [this, alive = std::weak_ptr<bool>(alive_), path, bytes, next = offset + length, last,
         onDone](Outcome<std::optional<FileEntry>> written) {
            if (!written.ok()) return onDone({written.error, {}, written.code});
            if (last) {
                if (!written.value) return onDone({"the agent did not describe the written file", {}, ""});
                return onDone({"", std::move(*written.value), ""});
            }
            if (alive.expired()) return onDone({"the sandbox was destroyed", {}, ""});
            writeFrom(path, bytes, next, onDone);
        });
}

void AgentSandbox::reportExit(const std::string& reason) {
    if (exitReported_ || !ready_) return;
    exitReported_ = true;
    if (onExit_) onExit_(reason);
}

}  // namespace sessiond
