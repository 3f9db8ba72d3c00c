// Bytes as an agent inside a sandbox writes them to the daemon: the real
// AgentChannel reads them from a socket (length-prefixed JSON frames), waits
// for the hello, then sends requests one after the other, and every reply is
// read by each of agent_protocol's reply parsers. The agent is untrusted: a
// sandbox runs the user's code, which can write anything to the channel.

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>

#include "sessiond/sandbox/agent_channel.hpp"
#include "sessiond/sandbox/agent_protocol.hpp"

namespace {

using namespace sessiond;
using nlohmann::json;

// Small, so that inputs of a few kilobytes reach the frame limit.
constexpr std::size_t kMaxFrameBytes = 2048;
constexpr int kMaxRequests = 8;

void parseReply(const json& reply) {
    (void)parseExecuteReply(reply);
    (void)parseListFilesReply(reply);
    (void)parseStatFileReply(reply);
    (void)parseReadFileReply(reply);
    (void)parseWriteFileReply(reply);
    (void)parseDeleteFileReply(reply);
    (void)parseDescribeReply(reply);
    (void)parseSnapshotReply(reply);
}

// The requests the daemon sends, in turn.
json nextRequest(int n) {
    switch (n % 4) {
        case 0: return makeExecuteMessage(ExecuteRequest{.code = "print(1)"});
        case 1: return makeListFilesMessage("", true);
        case 2: return makeReadFileMessage("a.txt", 0, kFileChunkBytes);
        default: return makeWriteFileMessage("a.txt", "data", true, true);
    }
}

struct Conversation {
    std::shared_ptr<AgentChannel> channel;
    int requests = 0;
    int closedCalls = 0;
    bool finished = false;

    void send() {
        if (requests == kMaxRequests) return;
        channel->request(nextRequest(requests++), std::chrono::seconds(5), [this](std::string error, json reply) {
            if (!error.empty()) return;
            if (!reply.is_object()) __builtin_trap();  // the channel hands on objects only
            parseReply(reply);
            send();
        });
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) __builtin_trap();
    // The agent's end: everything it will ever say, then the end of the stream.
    // A socketpair buffer holds far more than libFuzzer's inputs here.
    for (std::size_t written = 0; written < size;) {
        const ssize_t n = write(fds[1], data + written, size - written);
        if (n <= 0) __builtin_trap();
        written += static_cast<std::size_t>(n);
    }
    shutdown(fds[1], SHUT_WR);

    boost::asio::io_context io;
    Conversation conversation;
    conversation.channel = std::make_shared<AgentChannel>(
        AgentChannel::Socket(io, boost::asio::local::stream_protocol(), fds[0]), kMaxFrameBytes);
    conversation.channel->setClosedHandler([&conversation](std::string) { ++conversation.closedCalls; });
    conversation.channel->waitForHello(std::chrono::seconds(5), [&conversation](std::string error, json hello) {
        if (!error.empty()) return;
        if (!hello.is_object()) __builtin_trap();
        conversation.send();
    });
    io.run();
    if (conversation.closedCalls > 1) __builtin_trap();  // the closed handler fires once
    conversation.channel->close();
    io.restart();
    io.run();
    conversation.channel.reset();
    close(fds[1]);
    return 0;
}
