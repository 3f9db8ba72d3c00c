#include "saved_state.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "sessiond/unique_fd.hpp"

namespace sessiond::libvirt {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[] = "LibvirtQemudSave";
constexpr char kPartialMagic[] = "LibvirtQemudPart";  // a save that did not finish
constexpr std::size_t kMagicBytes = sizeof kMagic - 1;
constexpr std::uint32_t kVersion = 2;
constexpr std::uint32_t kRawFormat = 0;  // not compressed: QEMU reads the stream as it is
// Bounds the XML and cookie we read; libvirt's own padding is about 64 KiB.
constexpr std::uint32_t kMaxDataBytes = 16u << 20;

// virQEMUSaveHeader, in the host's byte order as libvirt writes it.
struct Header {
    char magic[kMagicBytes];
    std::uint32_t version;
    std::uint32_t dataBytes;  // XML, NUL, cookie, NUL, padding
    std::uint32_t wasRunning;
    std::uint32_t compressed;
    std::uint32_t cookieOffset;  // 0: no cookie
    std::uint32_t unused[14];
};
static_assert(sizeof(Header) == 92, "libvirt's save image header is 92 bytes");

std::runtime_error failure(const fs::path& file, const std::string& what) {
    return std::runtime_error("the saved VM " + file.string() + " " + what);
}

std::runtime_error systemFailure(const fs::path& file, const std::string& what) {
    return failure(file, what + ": " + std::strerror(errno));
}

void readExactly(int fd, void* buffer, std::size_t bytes, const fs::path& file) {
    auto* at = static_cast<char*>(buffer);
    while (bytes) {
        ssize_t got = ::read(fd, at, bytes);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) throw systemFailure(file, "cannot be read");
        if (got == 0) throw failure(file, "is truncated");
        at += got;
        bytes -= static_cast<std::size_t>(got);
    }
}

void writeAll(int fd, const void* buffer, std::size_t bytes, const fs::path& file) {
    const auto* at = static_cast<const char*>(buffer);
    while (bytes) {
        ssize_t put = ::write(fd, at, bytes);
        if (put < 0 && errno == EINTR) continue;
        if (put < 0) throw systemFailure(file, "cannot be written");
        at += put;
        bytes -= static_cast<std::size_t>(put);
    }
}

// The NUL-terminated text at `offset` of `data`.
std::string textAt(const std::string& data, std::size_t offset, const fs::path& file, const char* what) {
    const std::size_t end = data.find('\0', offset);
    if (offset >= data.size() || end == std::string::npos) throw failure(file, std::string("has no complete ") + what);
    return data.substr(offset, end - offset);
}

}  // namespace

SavedState readSavedState(const fs::path& file) {
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw systemFailure(file, "cannot be opened");
    Header header;
    readExactly(fd.get(), &header, sizeof header, file);
    if (std::memcmp(header.magic, kPartialMagic, kMagicBytes) == 0) throw failure(file, "is incomplete");
    if (std::memcmp(header.magic, kMagic, kMagicBytes) != 0) throw failure(file, "is not a libvirt QEMU save image");
    if (header.version != kVersion)
        throw failure(file, "has format version " + std::to_string(header.version) + ", not " + std::to_string(kVersion));
    if (header.compressed != kRawFormat) throw failure(file, "is compressed (save_image_format in qemu.conf)");
    if (header.dataBytes == 0 || header.dataBytes > kMaxDataBytes)
        throw failure(file, "declares " + std::to_string(header.dataBytes) + " bytes of domain XML");

    std::string data(header.dataBytes, '\0');
    readExactly(fd.get(), data.data(), data.size(), file);
    SavedState saved;
    saved.xml = textAt(data, 0, file, "domain XML");
    if (header.cookieOffset) saved.cookie = textAt(data, header.cookieOffset, file, "cookie");
    saved.wasRunning = header.wasRunning;
    saved.streamOffset = sizeof header + header.dataBytes;
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) throw systemFailure(file, "cannot be examined");
    if (static_cast<std::uint64_t>(info.st_size) <= saved.streamOffset) throw failure(file, "holds no guest state");
    return saved;
}

void writeSavedStateCopy(const fs::path& from, const SavedState& saved, const std::string& xml, const fs::path& to) {
    if (xml.find('\0') != std::string::npos) throw failure(to, "would hold a NUL in its domain XML");
    std::string data = xml + '\0';
    Header header{};
    std::memcpy(header.magic, kMagic, kMagicBytes);
    header.version = kVersion;
    header.wasRunning = saved.wasRunning;
    header.compressed = kRawFormat;
    if (!saved.cookie.empty()) {
        header.cookieOffset = static_cast<std::uint32_t>(data.size());
        data += saved.cookie + '\0';
    }
    if (data.size() > kMaxDataBytes) throw failure(to, "would hold too large a domain XML");
    header.dataBytes = static_cast<std::uint32_t>(data.size());

    UniqueFd source(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
    if (!source) throw systemFailure(from, "cannot be opened");
    UniqueFd target(::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!target) throw systemFailure(to, "cannot be created");
    writeAll(target.get(), &header, sizeof header, to);
    writeAll(target.get(), data.data(), data.size(), to);
    // In the kernel, without passing through our memory.
    auto offset = static_cast<loff_t>(saved.streamOffset);
    for (;;) {
        ssize_t copied = ::copy_file_range(source.get(), &offset, target.get(), nullptr, 1u << 30, 0);
        if (copied < 0 && errno == EINTR) continue;
        if (copied < 0) throw systemFailure(to, "cannot be filled from " + from.string());
        if (copied == 0) break;
    }
}

}  // namespace sessiond::libvirt
