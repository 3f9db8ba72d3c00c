// AgentChannel and the execute message mapping, against a scripted peer that
// writes raw bytes on the other end of a socketpair (the real agent is
// exercised in agent_test.cpp).

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "sessiond/sandbox/agent_channel.hpp"
#include "sessiond/sandbox/agent_protocol.hpp"
#include "sessiond/unique_fd.hpp"

namespace sessiond {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;


struct Reply {
    bool called = false;
    int calls = 0;
    std::string error;
    json message;

    AgentChannel::ReplyHandler handler() {
        return [this](std::string e, json m) {
            called = true;
            ++calls;
            error = std::move(e);
            message = std::move(m);
        };
    }
};

class AgentChannelTest : public ::testing::Test {
protected:
    void SetUp() override {
        int fds[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        peer_ = std::make_unique<UniqueFd>(fds[1]);
        AgentChannel::Socket socket(io_);
        socket.assign(boost::asio::local::stream_protocol(), fds[0]);
        channel_ = std::make_shared<AgentChannel>(std::move(socket), maxFrameBytes());
    }

    void TearDown() override {
        if (channel_) channel_->close();
        io_.run_for(10ms);
    }

    virtual std::size_t maxFrameBytes() const { return 1024; }

    template <typename Pred>
    bool runUntil(Pred pred, std::chrono::milliseconds limit = 3s) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!pred()) {
            if (std::chrono::steady_clock::now() >= deadline) return false;
            if (io_.stopped()) io_.restart();  // it stops whenever it runs out of work
            io_.run_one_for(10ms);
        }
        return true;
    }

    void peerWrite(const std::string& bytes) {
        ASSERT_EQ(::write(peer_->get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    }

    bool peerReadable() {
        pollfd p{peer_->get(), POLLIN, 0};
        return ::poll(&p, 1, 0) == 1;
    }

    // Reads one frame the channel wrote, running the io_context until it arrives.
    std::optional<json> peerReadFrame() {
        std::string data;
        auto readExactly = [&](std::size_t n) {
            while (data.size() < n) {
                if (!runUntil([&] { return peerReadable(); })) return false;
                char buf[4096];
                ssize_t got = ::read(peer_->get(), buf, std::min(sizeof buf, n - data.size()));
                if (got <= 0) return false;
                data.append(buf, static_cast<std::size_t>(got));
            }
            return true;
        };
        if (!readExactly(4)) return std::nullopt;
        const auto* h = reinterpret_cast<const unsigned char*>(data.data());
        const std::size_t length = (std::size_t{h[0]} << 24) | (std::size_t{h[1]} << 16) |
                                   (std::size_t{h[2]} << 8) | h[3];
        if (!readExactly(4 + length)) return std::nullopt;
        return json::parse(data.substr(4));
    }

    boost::asio::io_context io_;
    std::unique_ptr<UniqueFd> peer_;
    std::shared_ptr<AgentChannel> channel_;
};

TEST(AgentFrame, EncodesBigEndianLengthThenJson) {
    const std::string frame = encodeFrame(json{{"type", "ping"}, {"id", 1}});
    const std::string body = R"({"id":1,"type":"ping"})";
    ASSERT_EQ(frame.size(), 4 + body.size());
    EXPECT_EQ(frame.substr(0, 4), std::string("\0\0\0", 3) + static_cast<char>(body.size()));
    EXPECT_EQ(frame.substr(4), body);
}

TEST_F(AgentChannelTest, DeliversHelloSentBeforeAnyoneWaited) {
    peerWrite(encodeFrame({{"type", "hello"}, {"protocol", 1}}));
    channel_->setClosedHandler([](std::string) {});  // starts reading
    io_.run_for(50ms);
    Reply hello;
    channel_->waitForHello(1s, hello.handler());
    ASSERT_TRUE(runUntil([&] { return hello.called; }));
    EXPECT_EQ(hello.error, "");
    EXPECT_EQ(hello.message["protocol"], 1);
}

TEST_F(AgentChannelTest, HelloTimesOut) {
    Reply hello;
    bool closed = false;
    channel_->setClosedHandler([&](std::string) { closed = true; });
    channel_->waitForHello(50ms, hello.handler());
    ASSERT_TRUE(runUntil([&] { return hello.called && closed; }));
    EXPECT_NE(hello.error.find("no hello"), std::string::npos) << hello.error;
    EXPECT_FALSE(channel_->isOpen());
}

TEST_F(AgentChannelTest, RequestsAreSentOneAtATimeAndMatchedById) {
    Reply first, second;
    channel_->request({{"type", "ping"}}, 2s, first.handler());
    channel_->request({{"type", "ping"}}, 2s, second.handler());

    auto sent = peerReadFrame();
    ASSERT_TRUE(sent);
    EXPECT_EQ((*sent)["type"], "ping");
    io_.run_for(50ms);
    EXPECT_FALSE(peerReadable()) << "the second request went out before the first was answered";

    peerWrite(encodeFrame({{"type", "pong"}, {"id", (*sent)["id"]}}));
    auto sent2 = peerReadFrame();
    ASSERT_TRUE(sent2);
    EXPECT_NE((*sent2)["id"], (*sent)["id"]);
    peerWrite(encodeFrame({{"type", "pong"}, {"id", (*sent2)["id"]}}));

    ASSERT_TRUE(runUntil([&] { return first.called && second.called; }));
    EXPECT_EQ(first.error, "");
    EXPECT_EQ(first.message["type"], "pong");
    EXPECT_EQ(second.error, "");
    EXPECT_TRUE(channel_->isOpen());
}

TEST_F(AgentChannelTest, OversizedFrameClosesChannel) {
    Reply reply;
    std::string reason;
    channel_->setClosedHandler([&](std::string r) { reason = std::move(r); });
    channel_->request({{"type", "ping"}}, 2s, reply.handler());
    ASSERT_TRUE(peerReadFrame());
    // Only the header: the channel must refuse before reading 2000 bytes.
    peerWrite(std::string("\0\0\x07\xd0", 4));
    ASSERT_TRUE(runUntil([&] { return reply.called && !reason.empty(); }));
    EXPECT_NE(reply.error.find("limit"), std::string::npos) << reply.error;
    EXPECT_EQ(reason, reply.error);
    EXPECT_FALSE(channel_->isOpen());
    EXPECT_EQ(reply.calls, 1);
}

TEST_F(AgentChannelTest, MalformedJsonClosesChannel) {
    Reply reply;
    channel_->request({{"type", "ping"}}, 2s, reply.handler());
    ASSERT_TRUE(peerReadFrame());
    const std::string body = "{not json";
    peerWrite(std::string("\0\0\0", 3) + static_cast<char>(body.size()) + body);
    ASSERT_TRUE(runUntil([&] { return reply.called; }));
    EXPECT_NE(reply.error.find("not a JSON object"), std::string::npos) << reply.error;
    EXPECT_FALSE(channel_->isOpen());
}

TEST_F(AgentChannelTest, UnexpectedReplyIdClosesChannel) {
    Reply reply;
    channel_->request({{"type", "ping"}}, 2s, reply.handler());
    ASSERT_TRUE(peerReadFrame());
    peerWrite(encodeFrame({{"type", "pong"}, {"id", 999}}));
    ASSERT_TRUE(runUntil([&] { return reply.called; }));
    EXPECT_NE(reply.error.find("unexpected"), std::string::npos) << reply.error;
}

TEST_F(AgentChannelTest, RequestTimeoutFailsEverythingAndCloses) {
    Reply first, second;
    std::string reason;
    channel_->setClosedHandler([&](std::string r) { reason = std::move(r); });
    const auto start = std::chrono::steady_clock::now();
    channel_->request({{"type", "ping"}}, 100ms, first.handler());
    channel_->request({{"type", "ping"}}, 5s, second.handler());
    ASSERT_TRUE(runUntil([&] { return first.called && second.called && !reason.empty(); }));
    EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
    EXPECT_NE(first.error.find("did not answer"), std::string::npos) << first.error;
    EXPECT_EQ(second.error, first.error);
    EXPECT_EQ(reason, first.error);
    EXPECT_FALSE(channel_->isOpen());

    Reply late;
    channel_->request({{"type", "ping"}}, 1s, late.handler());
    ASSERT_TRUE(runUntil([&] { return late.called; }));
    EXPECT_FALSE(late.error.empty());
}

TEST_F(AgentChannelTest, PeerClosingFiresClosedHandler) {
    Reply reply;
    std::string reason;
    channel_->setClosedHandler([&](std::string r) { reason = std::move(r); });
    channel_->request({{"type", "ping"}}, 5s, reply.handler());
    ASSERT_TRUE(peerReadFrame());
    peer_->reset();
    ASSERT_TRUE(runUntil([&] { return reply.called && !reason.empty(); }));
    EXPECT_NE(reason.find("closed"), std::string::npos) << reason;
}

TEST_F(AgentChannelTest, CloseFailsPendingLaterAndSkipsClosedHandler) {
    Reply hello, reply;
    bool closedFired = false;
    channel_->setClosedHandler([&](std::string) { closedFired = true; });
    channel_->waitForHello(5s, hello.handler());
    channel_->request({{"type", "ping"}}, 5s, reply.handler());
    channel_->close();
    // Handlers are posted, never run inside close().
    EXPECT_FALSE(hello.called);
    EXPECT_FALSE(reply.called);
    ASSERT_TRUE(runUntil([&] { return hello.called && reply.called; }));
    EXPECT_EQ(hello.error, "channel closed");
    EXPECT_EQ(reply.error, "channel closed");
    io_.run_for(20ms);
    EXPECT_FALSE(closedFired);
    EXPECT_EQ(reply.calls, 1);
}

TEST_F(AgentChannelTest, ClosedChannelIsReleasedOnceIdle) {
    std::weak_ptr<AgentChannel> weak = channel_;
    Reply reply;
    channel_->request({{"type", "ping"}}, 5s, reply.handler());
    channel_->close();
    channel_.reset();
    ASSERT_TRUE(runUntil([&] { return reply.called && weak.expired(); }));
}

class AgentChannelDefaultLimitTest : public AgentChannelTest {
protected:
    std::size_t maxFrameBytes() const override { return AgentChannel::kDefaultMaxFrameBytes; }
};

TEST_F(AgentChannelDefaultLimitTest, RejectsFrameJustOver64MiB) {
    Reply reply;
    channel_->request({{"type", "ping"}}, 2s, reply.handler());
    ASSERT_TRUE(peerReadFrame());
    const std::uint32_t length = (64u << 20) + 1;
    std::string header{static_cast<char>(length >> 24), static_cast<char>(length >> 16),
                       static_cast<char>(length >> 8), static_cast<char>(length)};
    peerWrite(header);
    ASSERT_TRUE(runUntil([&] { return reply.called; }));
    EXPECT_NE(reply.error.find("67108865 bytes"), std::string::npos) << reply.error;
}

TEST(AgentProtocol, ExecuteMessageCarriesRequestFields) {
    ExecuteRequest request;
    request.code = "1+1";
    request.timeout = std::chrono::seconds(7);
    request.maxOutputChars = 123;
    const json message = makeExecuteMessage(request);
    EXPECT_EQ(message["type"], "execute");
    EXPECT_EQ(message["code"], "1+1");
    EXPECT_EQ(message["timeoutMs"], 7000);
    EXPECT_EQ(message["maxOutputChars"], 123);
    EXPECT_FALSE(message.contains("id"));
}

json resultReply(const std::string& status) {
    return {{"type", "result"}, {"id", 1},           {"status", status},    {"stdout", "out"},
            {"stderr", "err"},  {"result", {1, 2}}, {"durationMs", 12}, {"stateLost", true}};
}

TEST(AgentProtocol, ParsesStatuses) {
    auto ok = parseExecuteReply(resultReply("ok"));
    ASSERT_TRUE(ok.ok()) << ok.error;
    EXPECT_TRUE(ok.value.succeeded);
    EXPECT_FALSE(ok.value.timedOut);
    EXPECT_EQ(ok.value.stdoutText, "out");
    EXPECT_EQ(ok.value.stderrText, "err");
    EXPECT_EQ(ok.value.result, json({1, 2}));
    EXPECT_EQ(ok.value.durationMs, 12);
    EXPECT_TRUE(ok.value.stateLost);

    auto error = parseExecuteReply(resultReply("error"));
    ASSERT_TRUE(error.ok());
    EXPECT_FALSE(error.value.succeeded);
    EXPECT_FALSE(error.value.timedOut);

    auto timeout = parseExecuteReply(resultReply("timeout"));
    ASSERT_TRUE(timeout.ok());
    EXPECT_FALSE(timeout.value.succeeded);
    EXPECT_TRUE(timeout.value.timedOut);

    EXPECT_FALSE(parseExecuteReply(resultReply("maybe")).ok());
}

TEST(AgentProtocol, ReadsTheLimitHitsAGuestCounted) {
    json reply = resultReply("ok");
    EXPECT_EQ(parseGuestLimitHits(reply).pidsRefused, 0u);
    reply["limits"] = {{"pidsLimit", 64}, {"pidsRefused", 3}};
    const GuestLimitHits hits = parseGuestLimitHits(reply);
    EXPECT_EQ(hits.pidsLimit, 64u);
    EXPECT_EQ(hits.pidsRefused, 3u);
    for (const json& malformed : {json("3"), json({{"pidsLimit", -1}, {"pidsRefused", 3}}),
                                  json({{"pidsLimit", 64}, {"pidsRefused", "3"}}), json({{"pidsRefused", 3}})}) {
        reply["limits"] = malformed;
        EXPECT_EQ(parseGuestLimitHits(reply).pidsRefused, 0u) << malformed;
    }
}

TEST(AgentProtocol, RejectsIncompleteOrErrorReplies) {
    for (const char* field : {"status", "stdout", "stderr", "result", "durationMs", "stateLost", "type"}) {
        json reply = resultReply("ok");
        reply.erase(field);
        EXPECT_FALSE(parseExecuteReply(reply).ok()) << "without " << field;
    }
    json wrongType = resultReply("ok");
    wrongType["stdout"] = 5;
    EXPECT_FALSE(parseExecuteReply(wrongType).ok());

    auto rejected = parseExecuteReply({{"type", "error"}, {"id", 1}, {"message", "bad code"}});
    ASSERT_FALSE(rejected.ok());
    EXPECT_NE(rejected.error.find("bad code"), std::string::npos);
    EXPECT_FALSE(parseExecuteReply(json::array()).ok());
}

}  // namespace
}  // namespace sessiond
