#include "sessiond/sandbox/container_image.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "sessiond/auth/api_keys.hpp"
#include "sessiond/host_tool.hpp"
#include "sessiond/unique_fd.hpp"

namespace sessiond {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr const char* kDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr const char* kRefName = "org.opencontainers.image.ref.name";
// The tag our temporary layouts give the one image they hold.
constexpr const char* kWorkTag = "image";
constexpr const char* kTemporaryPrefix = ".tmp-";
constexpr std::uint32_t kMappedIds = 65536;
// Index, manifest and config blobs are small JSON documents; a larger one is
// not what it claims to be.
constexpr std::uintmax_t kMaxJsonBlob = 16u << 20;

bool isSha256Hex(std::string_view hex) {
    return hex.size() == 64 && hex.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// The hex of a "sha256:<hex>" digest; it becomes a path, so nothing else passes.
std::string digestHex(const std::string& digest) {
    constexpr std::string_view prefix = "sha256:";
    if (digest.rfind(prefix, 0) != 0 || !isSha256Hex(std::string_view(digest).substr(prefix.size())))
        throw std::runtime_error("unsupported digest '" + digest + "' (only sha256 digests are)");
    return digest.substr(prefix.size());
}

std::string readFile(const fs::path& path, std::uintmax_t limit) {
    std::error_code ec;
    auto size = fs::file_size(path, ec);
    if (ec) throw std::runtime_error("cannot read " + path.string() + ": " + ec.message());
    if (size > limit) throw std::runtime_error(path.string() + " is larger than " + std::to_string(limit) + " bytes");
    std::ifstream in(path, std::ios::binary);
    std::string data(size, '\0');
    if (!in.read(data.data(), static_cast<std::streamsize>(size)))
        throw std::runtime_error("cannot read " + path.string());
    return data;
}

void writeFile(const fs::path& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
    out.close();
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

json parseJson(const std::string& text, const std::string& what) {
    auto parsed = json::parse(text, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object()) throw std::runtime_error(what + " is not a JSON object");
    return parsed;
}

std::string stringField(const json& object, const char* key) {
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string joined(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
    return out.empty() ? "none" : out;
}

// What a failed tool said, for messages API users read: without
// runHostTool's command line (temporary paths) and the tools' log
// decoration (skopeo: time=… level=fatal msg="…"; umoci: progress lines,
// then "⨯ error"; tar: "tar: …"). The whole message goes to the log.
std::string toolMessage(const std::exception& e) {
    spdlog::warn("image tool: {}", e.what());
    std::string text = e.what();
    if (auto failed = text.find(" failed: "); failed != std::string::npos) text.erase(0, failed + 9);
    if (auto cross = text.find("\u2a2f"); cross != std::string::npos) text.erase(0, cross + std::strlen("\u2a2f"));
    if (auto msg = text.find("msg=\""); msg != std::string::npos) {
        text.erase(0, msg + 5);
        if (auto end = text.rfind('"'); end != std::string::npos) text.erase(end);
        for (std::size_t at; (at = text.find("\\\"")) != std::string::npos;) text.erase(at, 1);
    }
    if (text.rfind("tar: ", 0) == 0) text.erase(0, 5);
    text.erase(0, text.find_first_not_of(" \n"));
    return text.substr(0, text.find('\n'));
}

// A directory below `parent` named .tmp-*, removed with what it holds when
// this goes; the constructor of an ImageStore removes those a killed run left.
class TemporaryDirectory {
public:
    explicit TemporaryDirectory(const fs::path& parent) {
        std::string pattern = (parent / kTemporaryPrefix).string() + "XXXXXX";
        if (!::mkdtemp(pattern.data()))
            throw std::runtime_error("cannot create a directory in " + parent.string() + ": " + std::strerror(errno));
        path_ = pattern;
    }
    ~TemporaryDirectory() {
        std::error_code ec;
        fs::remove_all(path_, ec);
        if (ec) spdlog::warn("cannot remove {}: {}", path_.string(), ec.message());
    }
    TemporaryDirectory(const TemporaryDirectory&) = delete;
    TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;

    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

// ---- Image references ----------------------------------------------------

enum class SourceKind { Layout, OciArchive, DockerArchive, AnyArchive };

struct Source {
    SourceKind kind;
    fs::path path;
    std::string tag;  // "" for the default; docker archives: NAME:TAG
};

Source parseReference(const std::string& reference) {
    static const std::pair<std::string_view, SourceKind> transports[] = {
        {"oci:", SourceKind::Layout},
        {"oci-archive:", SourceKind::OciArchive},
        {"docker-archive:", SourceKind::DockerArchive},
    };
    Source source{SourceKind::AnyArchive, {}, {}};
    std::string path = reference;
    bool prefixed = false;
    for (const auto& [prefix, kind] : transports) {
        if (reference.rfind(prefix, 0) != 0) continue;
        // skopeo's syntax: the path ends at the first colon.
        std::string rest = reference.substr(prefix.size());
        auto colon = rest.find(':');
        path = rest.substr(0, colon);
        if (colon != std::string::npos) {
            source.tag = rest.substr(colon + 1);
            if (source.tag.empty()) throw std::runtime_error("empty tag after ':'");
        }
        source.kind = kind;
        prefixed = true;
        break;
    }
    if (path.empty() || path.front() != '/') {
        throw std::runtime_error(
            prefixed ? "the path '" + path + "' is not absolute"
                     : "not an image reference: expected oci:DIR[:TAG], oci-archive:FILE[:TAG], "
                       "docker-archive:FILE[:NAME:TAG] or an absolute path");
    }
    source.path = path;

    std::error_code ec;
    auto status = fs::status(source.path, ec);
    if (!fs::exists(status)) throw std::runtime_error(path + " does not exist");
    if (!prefixed && fs::is_directory(status)) source.kind = SourceKind::Layout;
    if (source.kind == SourceKind::Layout) {
        if (!fs::is_directory(status))
            throw std::runtime_error(path + " is not a directory (an OCI image layout is one)");
    } else if (!fs::is_regular_file(status)) {
        throw std::runtime_error(path + " is not a regular file (an image archive is one)");
    }
    return source;
}

// ---- OCI image layouts ------------------------------------------------------

// The tag index.json gives an image ("" if none).
std::string refName(const json& descriptor) {
    auto annotations = descriptor.find("annotations");
    return annotations != descriptor.end() && annotations->is_object() ? stringField(*annotations, kRefName) : "";
}

std::vector<std::string> refNames(const json& descriptors) {
    std::vector<std::string> names;
    for (const auto& d : descriptors) {
        if (auto name = refName(d); !name.empty()) names.push_back(name);
    }
    return names;
}

// The index.json entries `tag` names: with no tag, the only entry (or all of
// them when none is named: one image's platforms), else those tagged latest.
json taggedEntries(const json& index, const std::string& tag) {
    auto manifests = index.find("manifests");
    if (manifests == index.end() || !manifests->is_array() || manifests->empty())
        throw std::runtime_error("its index.json lists no image");
    auto names = refNames(*manifests);
    if (tag.empty() && (manifests->size() == 1 || names.empty())) return *manifests;
    const std::string wanted = tag.empty() ? "latest" : tag;
    json found = json::array();
    for (const auto& d : *manifests) {
        if (refName(d) == wanted) found.push_back(d);
    }
    if (found.empty()) {
        throw std::runtime_error(tag.empty() ? "it holds " + std::to_string(manifests->size()) +
                                                   " images and none is tagged latest; name one (tags: " +
                                                   joined(names) + ")"
                                             : "no image is tagged '" + tag + "' (tags: " + joined(names) + ")");
    }
    return found;
}

std::string platformOf(const json& descriptor) {
    auto platform = descriptor.find("platform");
    if (platform == descriptor.end() || !platform->is_object()) return "unknown";
    return stringField(*platform, "os") + "/" + stringField(*platform, "architecture");
}

// One of several descriptors of the same image: linux/amd64's.
json choosePlatform(const json& descriptors) {
    if (descriptors.size() == 1) return descriptors.front();
    std::vector<std::string> platforms;
    for (const auto& d : descriptors) {
        if (platformOf(d) == "linux/amd64") return d;
        platforms.push_back(platformOf(d));
    }
    throw std::runtime_error("no linux/amd64 image among its platforms (" + joined(platforms) + ")");
}

struct Blob {
    std::string digest;
    std::string data;
};

// A JSON blob of the layout, checked against its descriptor's digest.
Blob readBlob(const fs::path& layout, const json& descriptor) {
    Blob blob{stringField(descriptor, "digest"), {}};
    auto path = layout / "blobs" / "sha256" / digestHex(blob.digest);
    if (!fs::exists(path)) throw std::runtime_error("blob " + blob.digest + " is missing from the layout");
    blob.data = readFile(path, kMaxJsonBlob);
    if ("sha256:" + toHex(sha256(blob.data)) != blob.digest)
        throw std::runtime_error("blob " + blob.digest + " does not match its digest (the layout is damaged)");
    return blob;
}

}  // namespace

// The image a layout's tag resolves to: its manifest and its config.
struct ImageStore::LayoutImage {
    std::string digest;  // of the manifest
    std::uint64_t manifestSize = 0;
    std::string config;  // the config blob
};

ImageStore::LayoutImage ImageStore::readLayoutImage(const fs::path& layout, const std::string& tag) {
    if (!fs::exists(layout / "oci-layout"))
        throw std::runtime_error(layout.string() + " is not an OCI image layout (it has no oci-layout file)");
    json index = parseJson(readFile(layout / "index.json", kMaxJsonBlob), "its index.json");
    json descriptor = choosePlatform(taggedEntries(index, tag));
    // Image indexes (multi-platform images) may nest; a manifest ends the walk.
    for (int depth = 0;; ++depth) {
        Blob blob = readBlob(layout, descriptor);
        json document = parseJson(blob.data, "blob " + blob.digest);
        std::string type = stringField(document, "mediaType");
        if (type.empty()) type = stringField(descriptor, "mediaType");
        if (type == kOciIndex || type == kDockerManifestList ||
            (type.empty() && document.contains("manifests"))) {
            if (depth == 4) throw std::runtime_error("its image indexes nest too deeply");
            auto children = document.find("manifests");
            if (children == document.end() || !children->is_array() || children->empty())
                throw std::runtime_error("image index " + blob.digest + " lists no image");
            descriptor = choosePlatform(*children);
            continue;
        }
        if (type != kOciManifest && !(type.empty() && document.contains("layers"))) {
            throw std::runtime_error("manifest " + blob.digest + " has media type '" + type + "', not " +
                                     kOciManifest + " (convert it: skopeo copy to an oci: layout)");
        }
        auto configDescriptor = document.find("config");
        if (configDescriptor == document.end() || !configDescriptor->is_object())
            throw std::runtime_error("manifest " + blob.digest + " names no config");
        LayoutImage image{blob.digest, blob.data.size(), readBlob(layout, *configDescriptor).data};
        json config = parseJson(image.config, "the image config");
        const std::string os = stringField(config, "os"), architecture = stringField(config, "architecture");
        if ((!os.empty() && os != "linux") || (!architecture.empty() && architecture != "amd64"))
            throw std::runtime_error("the image is for " + os + "/" + architecture + ", not linux/amd64");
        return image;
    }
}

namespace {

// ---- Archives -------------------------------------------------------------

// The archive's member names, as tar stores them ("./index.json" or "index.json").
std::vector<std::string> archiveMembers(const fs::path& archive) {
    std::string listing;
    try {
        listing = runHostToolOutput({"tar", "-tf", archive.string()});
    } catch (const std::exception& e) {
        throw std::runtime_error(archive.string() + " is not a tar archive (" + toolMessage(e) + ")");
    }
    std::vector<std::string> members;
    std::istringstream lines(listing);
    for (std::string line; std::getline(lines, line);) members.push_back(line);
    return members;
}

// The member stored as `name` or "./name", if there is one.
std::optional<std::string> findMember(const std::vector<std::string>& members, const std::string& name) {
    for (const auto& member : members) {
        if (member == name || member == "./" + name) return member;
    }
    return std::nullopt;
}

// An OCI archive's tag for skopeo: the ref name of the entry `tag` picks by
// the layout's rules ("" when that is the only, unnamed entry).
std::string archiveTag(const fs::path& archive, const std::vector<std::string>& members, const std::string& tag) {
    auto member = findMember(members, "index.json");
    if (!member) throw std::runtime_error(archive.string() + " is not an OCI archive (it has no index.json)");
    auto text = runHostToolOutput({"tar", "-xOf", archive.string(), "--occurrence=1", *member});
    return refName(taggedEntries(parseJson(text, "its index.json"), tag).front());
}

}  // namespace

// ---- The store ------------------------------------------------------------

ImageStore::ImageStore(fs::path cacheDirectory, std::uint32_t hostIdBase)
    : cacheDirectory_(std::move(cacheDirectory)), hostIdBase_(hostIdBase) {
    if (hostIdBase_ > UINT32_MAX - kMappedIds)
        throw std::invalid_argument("hostIdBase " + std::to_string(hostIdBase) + " leaves no room for 65536 ids");
    // skopeo's and umoci's references end a path at a colon.
    if (cacheDirectory_.string().find(':') != std::string::npos)
        throw std::invalid_argument("the image cache directory " + cacheDirectory_.string() + " contains ':'");
    fs::create_directories(cacheDirectory_);
    cacheDirectory_ = fs::canonical(cacheDirectory_);
    for (const auto& entry : fs::directory_iterator(cacheDirectory_)) {
        if (entry.path().filename().string().rfind(kTemporaryPrefix, 0) != 0) continue;
        spdlog::info("image cache: removing {}, left by an earlier run", entry.path().string());
        fs::remove_all(entry.path());
    }
}

fs::path ImageStore::entryDirectory(const std::string& digest) const { return cacheDirectory_ / digestHex(digest); }

UnpackedImage ImageStore::get(const std::string& reference) {
    try {
        Source source = parseReference(reference);
        if (source.kind == SourceKind::Layout)
            return obtain(reference, source.path, readLayoutImage(source.path, source.tag));
        std::optional<bool> docker;  // unknown for a plain path: its content tells
        if (source.kind != SourceKind::AnyArchive) docker = source.kind == SourceKind::DockerArchive;
        return getFromArchive(reference, source.path, docker, source.tag);
    } catch (const std::exception& e) {
        throw std::runtime_error("image " + reference + ": " + e.what());
    }
}

UnpackedImage ImageStore::getFromArchive(const std::string& reference, const fs::path& archive,
                                         std::optional<bool> docker, const std::string& tag) {
    if (archive.string().find(':') != std::string::npos)
        throw std::runtime_error("archive paths with ':' are not supported (skopeo ends the path there)");
    struct stat st {};
    if (::stat(archive.c_str(), &st) != 0) throw std::runtime_error("cannot stat " + archive.string());
    const ArchiveKey key{reference, static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                         static_cast<std::uint64_t>(st.st_size),
                         std::int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec};
    {
        std::lock_guard lock(mutex_);
        auto known = archives_.find(key);
        if (known != archives_.end() && fs::exists(entryDirectory(known->second)))
            return load(reference, known->second);
    }

    auto members = archiveMembers(archive);
    if (!docker) {
        if (findMember(members, "oci-layout"))
            docker = false;
        else if (findMember(members, "manifest.json"))
            docker = true;
        else
            throw std::runtime_error(archive.string() + " is neither an OCI archive (no oci-layout) nor a " +
                                     "docker archive (no manifest.json)");
    }
    std::string source;
    if (*docker) {
        if (!findMember(members, "manifest.json"))
            throw std::runtime_error(archive.string() + " is not a docker archive (it has no manifest.json)");
        source = "docker-archive:" + archive.string() + (tag.empty() ? "" : ":" + tag);
    } else {
        auto skopeoTag = archiveTag(archive, members, tag);
        source = "oci-archive:" + archive.string() + (skopeoTag.empty() ? "" : ":" + skopeoTag);
    }

    // skopeo writes a layout umoci can unpack. Its own temporaries (an OCI
    // archive is extracted whole) go in our temporary directory too.
    TemporaryDirectory work(cacheDirectory_);
    const fs::path layout = work.path() / "layout";
    try {
        // No registry and no signatures here: the host's policy.json is for
        // pulls. Layers are compressed on the way, which costs CPU, but
        // skopeo 1.9's --dest-oci-accept-uncompressed-layers labels a docker
        // archive's plain tar layers as gzip, which umoci then cannot read.
        runHostTool({"skopeo", "--insecure-policy", "--tmpdir", work.path().string(), "--override-os", "linux",
                     "--override-arch", "amd64", "copy", "--quiet", source,
                     "oci:" + layout.string() + ":" + kWorkTag});
    } catch (const std::exception& e) {
        throw std::runtime_error("cannot read the archive: " + toolMessage(e));
    }
    auto image = readLayoutImage(layout, kWorkTag);
    {
        std::lock_guard lock(mutex_);
        archives_[key] = image.digest;
    }
    return obtain(reference, layout, image);
}

UnpackedImage ImageStore::obtain(const std::string& reference, const fs::path& layout, const LayoutImage& image) {
    {
        std::unique_lock lock(mutex_);
        unpacked_.wait(lock, [&] { return !unpacking_.contains(image.digest); });
        if (fs::exists(entryDirectory(image.digest))) return load(reference, image.digest);
        unpacking_.insert(image.digest);
    }
    struct Unmark {
        ImageStore& store;
        const std::string& digest;
        ~Unmark() {
            std::lock_guard lock(store.mutex_);
            store.unpacking_.erase(digest);
            store.unpacked_.notify_all();
        }
    } unmark{*this, image.digest};

    const auto started = std::chrono::steady_clock::now();
    TemporaryDirectory work(cacheDirectory_);
    const fs::path entry = work.path() / "entry";
    fs::create_directory(entry);
    unpack(layout, image, entry);
    // The entry is complete on disk before its name says so: a power loss
    // must not leave a cached image with empty files.
    UniqueFd cacheFd(::open(cacheDirectory_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cacheFd || ::syncfs(cacheFd.get()) != 0)
        throw std::runtime_error("cannot sync " + cacheDirectory_.string() + ": " + std::strerror(errno));
    // Sandboxes see the rootfs through this directory.
    fs::permissions(entry, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                               fs::perms::others_read | fs::perms::others_exec);

    std::lock_guard lock(mutex_);
    fs::rename(entry, entryDirectory(image.digest));
    spdlog::info("image {}: unpacked {} in {} ms", reference, image.digest,
                 std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
                     .count());
    return load(reference, image.digest);
}

void ImageStore::unpack(const fs::path& layout, const LayoutImage& image, const fs::path& entry) const {
    // umoci unpacks a tag of a layout. A layout of our own, whose one tag is
    // the manifest chosen above and whose blobs are the source's, lets it
    // take any image (an untagged one, one platform of an index) without
    // writing to the source.
    TemporaryDirectory view(cacheDirectory_);
    writeFile(view.path() / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
    json descriptor = {{"mediaType", kOciManifest},
                       {"digest", image.digest},
                       {"size", image.manifestSize},
                       {"annotations", {{kRefName, kWorkTag}}}};
    writeFile(view.path() / "index.json", json{{"schemaVersion", 2}, {"manifests", {descriptor}}}.dump());
    fs::create_directory_symlink(fs::absolute(layout / "blobs"), view.path() / "blobs");

    const std::string idMap = "0:" + std::to_string(hostIdBase_) + ":" + std::to_string(kMappedIds);
    try {
        runHostTool({"umoci", "raw", "unpack", "--uid-map", idMap, "--gid-map", idMap, "--image",
                     view.path().string() + ":" + kWorkTag, (entry / "rootfs").string()});
    } catch (const std::exception& e) {
        throw std::runtime_error("cannot unpack: " + toolMessage(e));
    }
    writeFile(entry / "config.json", image.config);
}

UnpackedImage ImageStore::load(const std::string& reference, const std::string& digest) const {
    const fs::path entry = entryDirectory(digest);
    return {reference, digest, entry / "rootfs",
            parseImageConfig(readFile(entry / "config.json", kMaxJsonBlob))};
}

void ImageStore::removeExcept(const std::set<std::string>& keepDigests) {
    // Renamed under the lock, so a get never sees half an image; removed
    // after it, so gets do not wait for a large tree to go.
    std::optional<TemporaryDirectory> trash;
    {
        std::lock_guard lock(mutex_);
        for (const auto& entry : fs::directory_iterator(cacheDirectory_)) {
            const std::string name = entry.path().filename().string();
            const std::string digest = "sha256:" + name;
            if (!isSha256Hex(name) || keepDigests.contains(digest) || unpacking_.contains(digest)) continue;
            if (!trash) trash.emplace(cacheDirectory_);
            fs::rename(entry.path(), trash->path() / name);
            spdlog::info("image cache: removing {}", digest);
        }
        std::erase_if(archives_, [&](const auto& known) { return !keepDigests.contains(known.second); });
    }
}

// ---- Image config and users -------------------------------------------------

ImageConfig parseImageConfig(const std::string& configBlob) {
    json document = parseJson(configBlob, "the image config");
    ImageConfig out;
    auto config = document.find("config");
    if (config == document.end() || config->is_null()) return out;
    if (!config->is_object()) throw std::runtime_error("the image config's \"config\" is not an object");
    auto strings = [&](const char* key) {
        std::vector<std::string> values;
        auto it = config->find(key);
        if (it == config->end() || it->is_null()) return values;
        if (!it->is_array()) throw std::runtime_error(std::string("the image config's ") + key + " is not a list");
        for (const auto& value : *it) {
            if (!value.is_string())
                throw std::runtime_error(std::string("the image config's ") + key + " holds a non-string");
            values.push_back(value.get<std::string>());
        }
        return values;
    };
    out.entrypoint = strings("Entrypoint");
    out.cmd = strings("Cmd");
    out.env = strings("Env");
    out.workingDir = stringField(*config, "WorkingDir");
    out.user = stringField(*config, "User");
    return out;
}

namespace {

// A file of the image's, with symbolic links resolved inside the rootfs (an
// image's /etc/passwd may link anywhere); nullopt if there is none.
std::optional<std::string> readImageFile(const fs::path& rootfs, const std::string& relative) {
    UniqueFd root(::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) throw std::runtime_error("cannot open " + rootfs.string() + ": " + std::strerror(errno));
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    UniqueFd file(static_cast<int>(::syscall(SYS_openat2, root.get(), relative.c_str(), &how, sizeof how)));
    if (!file) {
        if (errno == ENOENT) return std::nullopt;
        throw std::runtime_error("cannot open the image's /" + relative + ": " + std::strerror(errno));
    }
    // Only a regular file is read: opening a FIFO or a device the image
    // ships could block or act.
    struct stat st {};
    if (::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
    return readFile("/proc/self/fd/" + std::to_string(file.get()), kMaxJsonBlob);
}

// The colon-separated fields of each line of an /etc/passwd or /etc/group
// with at least `fields` of them (a group's last, its members, is often empty).
std::vector<std::vector<std::string>> databaseLines(const std::optional<std::string>& text, std::size_t fields) {
    std::vector<std::vector<std::string>> lines;
    if (!text) return lines;
    std::istringstream in(*text);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line.front() == '#') continue;
        std::vector<std::string> split;
        for (std::size_t start = 0;;) {
            auto colon = line.find(':', start);
            split.push_back(line.substr(start, colon - start));
            if (colon == std::string::npos) break;
            start = colon + 1;
        }
        if (split.size() >= fields) lines.push_back(std::move(split));
    }
    return lines;
}

std::optional<std::uint32_t> parseId(const std::string& text) {
    std::uint32_t value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

std::uint32_t mappable(std::uint32_t id, const std::string& what) {
    if (id >= kMappedIds)
        throw std::runtime_error(what + " " + std::to_string(id) + " is outside the ids 0-65535 a sandbox maps");
    return id;
}

}  // namespace

ImageUser resolveImageUser(const fs::path& rootfs, const std::string& user) {
    if (user.empty()) return {};
    const auto colon = user.find(':');
    const std::string name = user.substr(0, colon);
    const std::optional<std::string> group = colon == std::string::npos ? std::nullopt
                                                                        : std::optional(user.substr(colon + 1));
    if (name.empty() || (group && group->empty())) throw std::runtime_error("image user '" + user + "' is malformed");

    ImageUser out;
    const auto passwd = databaseLines(readImageFile(rootfs, "etc/passwd"), 4);
    // passwd fields: name:password:uid:gid:...
    const std::vector<std::string>* entry = nullptr;
    if (auto uid = parseId(name)) {
        out.uid = mappable(*uid, "uid");
        for (const auto& line : passwd) {
            if (parseId(line[2]) == uid) {
                entry = &line;
                break;
            }
        }
    } else {
        for (const auto& line : passwd) {
            if (line[0] == name) {
                entry = &line;
                break;
            }
        }
        if (!entry) throw std::runtime_error("image user '" + name + "' is not in the image's /etc/passwd");
        auto listed = parseId(entry->at(2));
        if (!listed) throw std::runtime_error("image user '" + name + "' has no numeric uid in /etc/passwd");
        out.uid = mappable(*listed, "uid");
    }
    if (!group) {
        // Docker's rule: the user's own group, or 0 for a uid the image does not list.
        auto gid = entry ? parseId(entry->at(3)) : std::optional<std::uint32_t>(0);
        if (!gid) throw std::runtime_error("image user '" + name + "' has no numeric gid in /etc/passwd");
        out.gid = mappable(*gid, "gid");
        return out;
    }
    if (auto gid = parseId(*group)) {
        out.gid = mappable(*gid, "gid");
        return out;
    }
    // group fields: name:password:gid:members
    for (const auto& line : databaseLines(readImageFile(rootfs, "etc/group"), 3)) {
        if (line[0] != *group) continue;
        auto gid = parseId(line[2]);
        if (!gid) throw std::runtime_error("image group '" + *group + "' has no numeric gid in /etc/group");
        out.gid = mappable(*gid, "gid");
        return out;
    }
    throw std::runtime_error("image group '" + *group + "' is not in the image's /etc/group");
}

}  // namespace sessiond
