#pragma once
// A raw TCP connection to a local server, for tests that must control the bytes
// and the timing of a request (Expect: 100-continue, chunked bodies) and must
// never hang: every read has a deadline.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sessiond::testing {

class RawConnection {
public:
    explicit RawConnection(std::uint16_t port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) throw std::runtime_error("socket failed");
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
            ::close(fd_);
            throw std::runtime_error("connect failed");
        }
    }
    ~RawConnection() {
        if (fd_ >= 0) ::close(fd_);
    }
    RawConnection(const RawConnection&) = delete;
    RawConnection& operator=(const RawConnection&) = delete;

    // Sends everything; false once the peer has gone.
    bool send(std::string_view data) {
        while (!data.empty()) {
            ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            data.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    }

    // Everything received up to and including `marker`; nullopt if the
    // deadline passes or the peer closes first. Later bytes stay buffered.
    std::optional<std::string> readUntil(std::string_view marker, std::chrono::milliseconds timeout) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (true) {
            std::size_t at = buffer_.find(marker);
            if (at != std::string::npos) {
                std::string out = buffer_.substr(0, at + marker.size());
                buffer_.erase(0, at + marker.size());
                return out;
            }
            if (!fill(deadline)) return std::nullopt;
        }
    }

    // `n` bytes, or nullopt.
    std::optional<std::string> readExactly(std::size_t n, std::chrono::milliseconds timeout) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (buffer_.size() < n)
            if (!fill(deadline)) return std::nullopt;
        std::string out = buffer_.substr(0, n);
        buffer_.erase(0, n);
        return out;
    }

    struct Response {
        int status = 0;
        std::string head;  // status line and headers
        std::string body;
    };

    // One response: its head, then a Content-Length body (interim 1xx
    // responses have none).
    // `withBody` false: the answer to a HEAD request, whose Content-Length
    // describes a body that is not sent.
    std::optional<Response> readResponse(std::chrono::milliseconds timeout, bool withBody = true) {
        auto head = readUntil("\r\n\r\n", timeout);
        if (!head || head->size() < 12 || head->compare(0, 5, "HTTP/") != 0) return std::nullopt;
        Response response;
        response.head = *head;
        response.status = std::stoi(head->substr(9, 3));
        std::size_t length = 0;
        std::string lower = *head;
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::size_t at = lower.find("\r\ncontent-length:");
        if (at != std::string::npos && withBody) length = std::stoul(lower.substr(at + 17));
        auto body = readExactly(length, timeout);
        if (!body) return std::nullopt;
        response.body = *body;
        return response;
    }

    // True if the peer closes the connection (after any further bytes) in time.
    bool waitForClose(std::chrono::milliseconds timeout) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (true) {
            buffer_.clear();
            int result = fillOrClosed(deadline);
            if (result == 0) return true;
            if (result < 0) return false;
        }
    }

private:
    // 1: got bytes; 0: peer closed (or reset); -1: deadline passed.
    int fillOrClosed(std::chrono::steady_clock::time_point deadline) {
        while (true) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return -1;
            pollfd p{fd_, POLLIN, 0};
            int ready = ::poll(&p, 1, static_cast<int>(left.count()));
            if (ready < 0 && errno == EINTR) continue;
            if (ready <= 0) return -1;
            char chunk[65536];
            ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return 0;
            buffer_.append(chunk, static_cast<std::size_t>(n));
            return 1;
        }
    }
    bool fill(std::chrono::steady_clock::time_point deadline) { return fillOrClosed(deadline) == 1; }

    int fd_ = -1;
    std::string buffer_;
};

}  // namespace sessiond::testing
