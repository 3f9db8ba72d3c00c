// StreamMux against the real guest end (src/agent/sessiond_streams.py under
// Debian's Python) over a socketpair, with TCP servers in this process on
// 127.0.0.1, where the guest program connects: here guest and host share the
// loopback. And against a scripted guest that writes raw frames, for what
// the real one never sends.
//
// The mux runs on an io thread, as in the daemon; the tests use the
// descriptors it hands out with blocking calls (each with a timeout), the
// way a proxy on another thread would.

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sessiond/sandbox/stream_mux.hpp"
#include "support/captured_log.hpp"
#include "support/leaks.hpp"
#include "support/script_process.hpp"


namespace sessiond {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using streams::FrameType;

const std::string kStreamsScript = SESSIOND_SOURCE_DIR "/src/agent/sessiond_streams.py";
// Every blocking call on a test socket gives up after this, so a stall is a
// failure rather than a hung test.
constexpr auto kIoTimeout = 30s;

void setTimeouts(int fd) {
    timeval tv{static_cast<time_t>(std::chrono::seconds(kIoTimeout).count()), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

bool writeAll(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

// Up to `limit` bytes, fewer only at end of stream or on an error.
std::string readUpTo(int fd, std::size_t limit) {
    std::string out;
    char buffer[64 << 10];
    while (out.size() < limit) {
        const ssize_t n = ::recv(fd, buffer, std::min(sizeof buffer, limit - out.size()), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buffer, static_cast<std::size_t>(n));
    }
    return out;
}

std::string readToEnd(int fd) {
    return readUpTo(fd, SIZE_MAX);
}

// FNV-1a over a stream read or written in pieces of any size.
struct Checksum {
    std::uint64_t value = 14695981039346656037ull;
    std::uint64_t bytes = 0;
    void add(std::string_view data) {
        for (unsigned char c : data) value = (value ^ c) * 1099511628211ull;
        bytes += data.size();
    }
};

// `blocks` MiB of bytes depending on `seed`, each block stamped with its
// index so that lost or reordered blocks change the checksum.
class Payload {
public:
    Payload(std::uint64_t seed, std::size_t blocks) : block_(1u << 20, '\0'), blocks_(blocks) {
        std::mt19937_64 random(seed);
        for (std::size_t i = 0; i < block_.size(); i += 8) {
            const std::uint64_t word = random();
            std::memcpy(block_.data() + i, &word, 8);
        }
    }
    std::size_t size() const { return blocks_ * block_.size(); }
    // Writes it all (then half-closes); its checksum, or nothing on a failed write.
    std::optional<Checksum> send(int fd) {
        Checksum sum;
        for (std::uint64_t i = 0; i < blocks_; ++i) {
            std::memcpy(block_.data(), &i, sizeof i);
            sum.add(block_);
            if (!writeAll(fd, block_)) return std::nullopt;
        }
        ::shutdown(fd, SHUT_WR);
        return sum;
    }

private:
    std::string block_;
    std::size_t blocks_;
};

Checksum checksumToEnd(int fd) {
    Checksum sum;
    char buffer[256 << 10];
    for (;;) {
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return sum;
        sum.add(std::string_view(buffer, static_cast<std::size_t>(n)));
    }
}

// A TCP server on 127.0.0.1 that runs `serve` on a thread per connection.
class TcpServer {
public:
    explicit TcpServer(std::function<void(int fd)> serve) : serve_(std::move(serve)) {
        listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
            ::listen(listener_.get(), 64) != 0 ||
            ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
            ADD_FAILURE() << "cannot listen: " << std::strerror(errno);
            return;
        }
        port_ = ntohs(address.sin_port);
        acceptor_ = std::thread([this] { acceptLoop(); });
    }
    ~TcpServer() {
        // Wakes accept() and every connection still blocked, so all threads end.
        ::shutdown(listener_.get(), SHUT_RDWR);
        if (acceptor_.joinable()) acceptor_.join();
        {
            std::lock_guard lock(mutex_);
            for (int fd : live_) ::shutdown(fd, SHUT_RDWR);
        }
        for (auto& t : connections_) t.join();
    }
    TcpServer(const TcpServer&) = delete;
    TcpServer& operator=(const TcpServer&) = delete;

    std::uint16_t port() const { return port_; }

private:
    void acceptLoop() {
        for (;;) {
            const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR) continue;
                return;
            }
            setTimeouts(fd);
            std::lock_guard lock(mutex_);
            live_.insert(fd);
            connections_.emplace_back([this, fd] {
                serve_(fd);
                std::lock_guard lock(mutex_);
                live_.erase(fd);
                ::close(fd);
            });
        }
    }

    std::function<void(int)> serve_;
    UniqueFd listener_;
    std::uint16_t port_ = 0;
    std::thread acceptor_;
    std::mutex mutex_;
    std::set<int> live_;
    std::vector<std::thread> connections_;
};

void echo(int fd) {
    char buffer[64 << 10];
    for (;;) {
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0 || !writeAll(fd, std::string_view(buffer, static_cast<std::size_t>(n)))) return;
    }
}


long openFds() {
    long count = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++count;
    return count - 1;  // the iterator's own
}

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

struct Opened {
    std::string error;
    UniqueFd fd;
};

class StreamMuxTest : public ::testing::Test {
protected:
    StreamMuxTest() {
        // The io_context makes its epoll and eventfd descriptors on first
        // use; made now, they are not counted as a leak by the fd test.
        asio::local::stream_protocol::socket probe(io_);
        probe.open();
        io_thread_ = std::thread([this] { io_.run(); });
    }

    ~StreamMuxTest() override {
        onIo([this] {
            if (mux_) mux_->close();
            mux_.reset();
        });
        work_.reset();
        io_thread_.join();
    }

    void startWithGuest() {
        int fds[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        guest_ = std::make_unique<test_support::ScriptProcess>();
        guest_->spawn(kStreamsScript, fds[1]);
        ::close(fds[1]);
        ASSERT_GT(guest_->pid(), 0);
        startMux(fds[0]);
    }

    // The guest's end of the channel, for a test to write frames on.
    UniqueFd startWithScriptedGuest() {
        int fds[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        setTimeouts(fds[1]);
        {
            std::lock_guard lock(mutex_);
            closedReason_.reset();
        }
        startMux(fds[0]);
        return UniqueFd(fds[1]);
    }

    void startMux(int fd) {
        onIo([&] {
            StreamMux::Socket socket(io_);
            socket.assign(asio::local::stream_protocol(), fd);
            mux_ = std::make_shared<StreamMux>(std::move(socket));
            mux_->setClosedHandler([this](std::string reason) {
                std::lock_guard lock(mutex_);
                closedReason_ = std::move(reason);
            });
        });
    }

    template <typename F>
    auto onIo(F f) -> decltype(f()) {
        std::packaged_task<decltype(f())()> task(std::move(f));
        auto result = task.get_future();
        asio::post(io_, [&task] { task(); });
        return result.get();
    }

    std::future<Opened> openAsync(std::uint16_t port) {
        auto promise = std::make_shared<std::promise<Opened>>();
        auto future = promise->get_future();
        onIo([&] {
            mux_->open(port, [promise](std::string error, UniqueFd fd) {
                promise->set_value({std::move(error), std::move(fd)});
            });
        });
        return future;
    }

    Opened open(std::uint16_t port) {
        auto future = openAsync(port);
        if (future.wait_for(kIoTimeout) != std::future_status::ready) return {"no answer to the open", UniqueFd()};
        Opened opened = future.get();
        if (opened.fd) setTimeouts(opened.fd.get());
        return opened;
    }

    std::size_t streamCount() {
        return onIo([this] { return mux_ ? mux_->streamCount() : 0; });
    }

    std::optional<std::string> closedReason() {
        std::lock_guard lock(mutex_);
        return closedReason_;
    }

    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    std::thread io_thread_;
    std::unique_ptr<test_support::ScriptProcess> guest_;
    std::shared_ptr<StreamMux> mux_;
    std::mutex mutex_;
    std::optional<std::string> closedReason_;
};

TEST_F(StreamMuxTest, EchoRoundTrip) {
    TcpServer server(echo);
    startWithGuest();
    auto stream = open(server.port());
    ASSERT_EQ(stream.error, "");
    ASSERT_TRUE(stream.fd);

    ASSERT_TRUE(writeAll(stream.fd.get(), "hello, guest"));
    EXPECT_EQ(readUpTo(stream.fd.get(), 12), "hello, guest");
    ::shutdown(stream.fd.get(), SHUT_WR);
    EXPECT_EQ(readToEnd(stream.fd.get()), "");  // the echo server closes after our end of file
    EXPECT_TRUE(eventually([&] { return streamCount() == 0; })) << "the ended stream was not forgotten";
}

TEST_F(StreamMuxTest, SixtyFourMiBEachWayArriveIntact) {
    constexpr std::size_t kMiB = 64;
    std::promise<Checksum> serverReceived;
    std::promise<std::optional<Checksum>> serverSent;
    TcpServer server([&](int fd) {
        std::thread sender([&] { serverSent.set_value(Payload(1, kMiB).send(fd)); });
        serverReceived.set_value(checksumToEnd(fd));
        sender.join();
    });
    startWithGuest();
    auto stream = open(server.port());
    ASSERT_EQ(stream.error, "");

    const auto start = std::chrono::steady_clock::now();
    std::optional<Checksum> clientSent;
    std::thread sender([&] { clientSent = Payload(2, kMiB).send(stream.fd.get()); });
    const Checksum clientReceived = checksumToEnd(stream.fd.get());
    sender.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    ASSERT_TRUE(clientSent.has_value());
    auto sent = serverSent.get_future().get();
    ASSERT_TRUE(sent.has_value());
    const Checksum received = serverReceived.get_future().get();
    EXPECT_EQ(clientReceived.bytes, kMiB << 20);
    EXPECT_EQ(clientReceived.value, sent->value);
    EXPECT_EQ(received.bytes, kMiB << 20);
    EXPECT_EQ(received.value, clientSent->value);
    std::cout << "[ stream mux ] " << kMiB << " MiB each way at once in " << seconds << " s: "
              << (2.0 * kMiB * 1.048576 / seconds) << " MB/s in total\n";
}

TEST_F(StreamMuxTest, TwentyConcurrentStreams) {
    constexpr int kStreams = 20;
    constexpr std::size_t kMiBEach = 2;
    TcpServer server(echo);
    startWithGuest();

    // All opens are sent before any answer arrives.
    std::vector<std::future<Opened>> opening;
    for (int i = 0; i < kStreams; ++i) opening.push_back(openAsync(server.port()));
    std::vector<UniqueFd> streams;
    for (auto& future : opening) {
        ASSERT_EQ(future.wait_for(kIoTimeout), std::future_status::ready);
        auto opened = future.get();
        ASSERT_EQ(opened.error, "");
        setTimeouts(opened.fd.get());
        streams.push_back(std::move(opened.fd));
    }

    std::vector<std::thread> workers;
    std::vector<std::optional<Checksum>> sent(kStreams);
    std::vector<Checksum> echoed(kStreams);
    for (int i = 0; i < kStreams; ++i) {
        workers.emplace_back([&, i] {
            const int fd = streams[i].get();
            std::thread sender([&] { sent[i] = Payload(100 + i, kMiBEach).send(fd); });
            echoed[i] = checksumToEnd(fd);
            sender.join();
        });
    }
    for (auto& w : workers) w.join();
    for (int i = 0; i < kStreams; ++i) {
        ASSERT_TRUE(sent[i].has_value()) << "stream " << i;
        EXPECT_EQ(echoed[i].bytes, kMiBEach << 20) << "stream " << i;
        EXPECT_EQ(echoed[i].value, sent[i]->value) << "stream " << i;
    }
    EXPECT_TRUE(eventually([&] { return streamCount() == 0; }));
}

TEST_F(StreamMuxTest, AReaderThatStopsStallsOnlyItsOwnStream) {
    std::atomic<std::uint64_t> pushed{0};
    TcpServer firehose([&](int fd) {
        const std::string chunk(1 << 20, 'x');
        while (writeAll(fd, chunk)) pushed += chunk.size();
    });
    TcpServer server(echo);
    startWithGuest();
    {
        // The interpreter's own warm-up is not the streams' memory.
        auto warm = open(server.port());
        ASSERT_EQ(warm.error, "");
        ASSERT_TRUE(writeAll(warm.fd.get(), std::string(1 << 20, 'w')));
        ASSERT_EQ(readUpTo(warm.fd.get(), 1 << 20).size(), 1u << 20);
    }
    const long rssBefore = testing::footprintOf(guest_->pid()).rssKiB;

    auto stalled = open(firehose.port());
    ASSERT_EQ(stalled.error, "");
    // Nobody reads `stalled`: the windows must push back all the way to the server.
    std::uint64_t last = 0;
    ASSERT_TRUE(eventually([&] {
        const std::uint64_t now = pushed.load();
        std::this_thread::sleep_for(300ms);
        last = pushed.load();
        return now > 0 && now == last;
    }, 20s)) << "the firehose never stopped: " << pushed.load() << " bytes";
    EXPECT_LT(last, 64u << 20) << "far more than the windows and socket buffers hold";

    const auto start = std::chrono::steady_clock::now();
    auto other = open(server.port());
    ASSERT_EQ(other.error, "");
    std::optional<Checksum> sent;
    std::thread sender([&] { sent = Payload(7, 8).send(other.fd.get()); });
    const Checksum echoed = checksumToEnd(other.fd.get());
    sender.join();
    ASSERT_TRUE(sent.has_value());
    EXPECT_EQ(echoed.bytes, 8u << 20);
    EXPECT_EQ(echoed.value, sent->value);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);

    const long rssAfter = testing::footprintOf(guest_->pid()).rssKiB;
    EXPECT_LT(rssAfter - rssBefore, 16 * 1024) << "guest RSS " << rssBefore << " KiB -> " << rssAfter << " KiB";
    EXPECT_EQ(pushed.load(), last) << "the stalled stream moved while nobody read it";
    std::cout << "[ stream mux ] stalled stream held " << last / 1024 << " KiB upstream; guest RSS "
              << rssBefore << " KiB -> " << rssAfter << " KiB\n";

    // Closing the stalled stream resets the server's connection, ending its thread.
    stalled.fd.reset();
    EXPECT_TRUE(eventually([&] { return streamCount() == 0; }));
}

TEST_F(StreamMuxTest, APortNobodyListensOnIsRefusedWithAReason) {
    std::uint16_t port;
    {
        TcpServer closed([](int) {});
        port = closed.port();
    }
    startWithGuest();
    auto stream = open(port);
    EXPECT_FALSE(stream.fd);
    EXPECT_EQ(stream.error, "connection refused by port " + std::to_string(port) + " in the sandbox");
    EXPECT_EQ(streamCount(), 0u);
}

TEST_F(StreamMuxTest, HalfCloseStillCarriesTheAnswer) {
    std::promise<std::string> serverGot;
    // Greets, reads to the client's end of file, then answers with the count.
    TcpServer server([&](int fd) {
        writeAll(fd, "hello");
        const std::string request = readToEnd(fd);
        serverGot.set_value(request);
        writeAll(fd, "got " + std::to_string(request.size()) + " bytes");
    });
    startWithGuest();
    auto stream = open(server.port());
    ASSERT_EQ(stream.error, "");

    EXPECT_EQ(readUpTo(stream.fd.get(), 5), "hello");
    ASSERT_TRUE(writeAll(stream.fd.get(), std::string(1 << 20, 'q')));
    ::shutdown(stream.fd.get(), SHUT_WR);
    EXPECT_EQ(readToEnd(stream.fd.get()), "got 1048576 bytes");
    EXPECT_EQ(serverGot.get_future().get().size(), 1u << 20);
    EXPECT_TRUE(eventually([&] { return streamCount() == 0; }));
}

TEST_F(StreamMuxTest, TheGuestDyingFailsStreamsAndPendingOpens) {
    TcpServer server(echo);
    startWithGuest();
    auto open1 = open(server.port());
    ASSERT_EQ(open1.error, "");

    // Stopped, the guest cannot answer: the next open stays pending until it dies.
    ASSERT_EQ(::kill(guest_->pid(), SIGSTOP), 0);
    auto pending = openAsync(server.port());
    EXPECT_EQ(pending.wait_for(200ms), std::future_status::timeout);
    ASSERT_EQ(::kill(guest_->pid(), SIGKILL), 0);

    ASSERT_EQ(pending.wait_for(kIoTimeout), std::future_status::ready);
    const Opened failed = pending.get();
    EXPECT_FALSE(failed.fd);
    EXPECT_EQ(failed.error, "cannot reach port " + std::to_string(server.port()) +
                                " in the sandbox: the guest closed the streams channel");
    EXPECT_TRUE(eventually([&] { return closedReason().has_value(); }));
    EXPECT_EQ(closedReason().value_or(""), "the guest closed the streams channel");
    EXPECT_EQ(readToEnd(open1.fd.get()), "") << "the open stream did not end";
    EXPECT_EQ(streamCount(), 0u);

    const Opened late = open(server.port());
    EXPECT_NE(late.error.find("the guest closed the streams channel"), std::string::npos) << late.error;
}

TEST_F(StreamMuxTest, DestroyingTheMuxWithOpenStreamsLeavesNoDescriptor) {
    const long before = openFds();
    {
        TcpServer server(echo);
        startWithGuest();
        std::vector<UniqueFd> streams;
        for (int i = 0; i < 5; ++i) {
            auto opened = open(server.port());
            ASSERT_EQ(opened.error, "");
            ASSERT_TRUE(writeAll(opened.fd.get(), "ping"));
            streams.push_back(std::move(opened.fd));
        }
        EXPECT_EQ(readUpTo(streams[0].get(), 4), "ping");
        auto pending = openAsync(server.port());  // maybe answered, maybe not: either way nothing may leak

        // No close(): the last reference goes, with reads and writes outstanding.
        std::weak_ptr<StreamMux> weak = mux_;
        onIo([this] { mux_.reset(); });
        EXPECT_TRUE(weak.expired()) << "an outstanding operation keeps the mux alive";
        // Each ends (what was in flight may be lost); a stream left open would time out here.
        for (auto& s : streams) EXPECT_LE(readToEnd(s.get()).size(), 4u);
        EXPECT_EQ(pending.wait_for(kIoTimeout), std::future_status::ready);

        const int exited = guest_->waitExit(10s);
        ASSERT_NE(exited, -1) << "the guest did not exit when the channel closed";
        EXPECT_TRUE(WIFEXITED(exited) && WEXITSTATUS(exited) == 0) << exited;
    }
    EXPECT_TRUE(eventually([&] { return openFds() == before; })) << before << " descriptors before, " << openFds()
                                                                 << " after";
}

// Frames the real guest never sends close the channel with a logged reason.

std::string rawFrame(std::uint32_t length, std::uint8_t type, std::uint32_t stream, std::string_view payload = {}) {
    std::string frame = streams::encodeFrame(FrameType::Data, stream, payload);
    frame[0] = static_cast<char>(length >> 24);
    frame[1] = static_cast<char>(length >> 16);
    frame[2] = static_cast<char>(length >> 8);
    frame[3] = static_cast<char>(length);
    frame[4] = static_cast<char>(type);
    return frame;
}

std::string repeat(const std::string& text, int times) {
    std::string out;
    for (int i = 0; i < times; ++i) out += text;
    return out;
}

TEST_F(StreamMuxTest, MalformedFramesFromTheGuestCloseTheChannel) {
    const std::string opened = streams::encodeFrame(FrameType::Opened, 1);
    const std::string dataChunk = streams::encodeFrame(FrameType::Data, 1, std::string(streams::kMaxData, 'd'));
    struct Case {
        std::string name;
        std::string bytes;
        std::string reason;
    } cases[] = {
        {"unknown type", rawFrame(5, 99, 1), "unknown type 99"},
        {"unknown stream", streams::encodeFrame(FrameType::Data, 42, "x"), "DATA on stream 42 (no such stream)"},
        {"oversized length", rawFrame(0x7fffffff, 4, 1), "frame length of 2147483647 bytes is out of range"},
        {"undersized length", rawFrame(2, 4, 1), "out of range"},
        {"open from the guest", streams::encodeFrame(FrameType::Open, 1, "\x1f\x90"), "only the host opens streams"},
        {"data before opened", streams::encodeFrame(FrameType::Data, 1, "x"), "not open yet"},
        // More than the window and what the unread socketpair absorbs meanwhile.
        {"data over the window", opened + repeat(dataChunk, 10), "over the window"},
        {"credit never owed", opened + streams::encodeFrame(FrameType::Credit, 1, streams::encodeU32(1)),
         "more than the DATA in flight"},
        {"a second opened", opened + opened, "already"},
        {"data after eof", opened + streams::encodeFrame(FrameType::Eof, 1) + streams::encodeFrame(FrameType::Data, 1, "x"),
         "after EOF"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        testing::CapturedLog log;
        UniqueFd guest = startWithScriptedGuest();
        auto pending = openAsync(8080);
        ASSERT_TRUE(writeAll(guest.get(), c.bytes));
        ASSERT_TRUE(eventually([&] { return closedReason().has_value(); })) << "the channel stayed open";
        EXPECT_NE(closedReason()->find(c.reason), std::string::npos) << *closedReason();
        EXPECT_NE(log.text().find(c.reason), std::string::npos) << log.text();
        ASSERT_EQ(pending.wait_for(kIoTimeout), std::future_status::ready);
        pending.get();  // answered once, whichever way
        EXPECT_EQ(readToEnd(guest.get()).substr(0, 9), streams::encodeFrame(FrameType::Open, 1, "\x1f\x90").substr(0, 9))
            << "the channel was not closed";
    }
}

TEST_F(StreamMuxTest, RandomFramesNeverCrashTheMux) {
    std::mt19937 random(20240607);
    const auto pick = [&](std::uint32_t n) { return std::uniform_int_distribution<std::uint32_t>(0, n - 1)(random); };
    testing::CapturedLog log;  // hundreds of warnings are expected
    for (int round = 0; round < 300; ++round) {
        UniqueFd guest = startWithScriptedGuest();
        std::vector<std::future<Opened>> opens;
        for (int i = 0; i < 3; ++i) opens.push_back(openAsync(static_cast<std::uint16_t>(1000 + i)));

        // Mostly well-formed frames, in any order and state, now and then garbage.
        std::string bytes;
        const std::uint32_t frames = 1 + pick(12);
        for (std::uint32_t i = 0; i < frames; ++i) {
            const auto type = static_cast<std::uint8_t>(1 + pick(8));
            const std::uint32_t stream = pick(5);
            std::string payload(pick(4) == 0 ? pick(70000) : pick(6), 'p');
            for (auto& ch : payload) ch = static_cast<char>(pick(256));
            std::uint32_t length = static_cast<std::uint32_t>(5 + payload.size());
            if (pick(10) == 0) length = pick(0xffffffff);
            bytes += rawFrame(length, type, stream, payload);
            if (pick(10) == 0) bytes.resize(bytes.size() - pick(static_cast<std::uint32_t>(bytes.size())));
        }
        writeAll(guest.get(), bytes);
        guest.reset();  // then the end of the channel, if nothing was wrong before

        ASSERT_TRUE(eventually([&] { return closedReason().has_value(); })) << "round " << round;
        for (auto& f : opens) ASSERT_EQ(f.wait_for(kIoTimeout), std::future_status::ready) << "round " << round;
        EXPECT_EQ(streamCount(), 0u);
        onIo([this] { mux_.reset(); });
    }
}

}  // namespace
}  // namespace sessiond
