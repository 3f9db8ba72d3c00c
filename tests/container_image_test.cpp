// The image store of custom-container pools (ImageStore, resolveImageUser)
// and the static test server that test images run.

#include <elf.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/beast/websocket.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sessiond/auth/api_keys.hpp"
#include "sessiond/host_tool.hpp"
#include "sessiond/sandbox/container_image.hpp"
#include "sessiond/unique_fd.hpp"
#include "support/http_client.hpp"
#include "support/test_image.hpp"

extern char** environ;

namespace sessiond {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::HttpClient;
using testing::ScratchDirectory;
using testing::TestImage;
using testing::TestImageOptions;

constexpr std::uint32_t kBase = 600000;
constexpr const char* kOciIndexType = "application/vnd.oci.image.index.v1+json";

double millisecondsSince(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

std::string readText(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeText(const fs::path& path, const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// Every entry below `root`: type, mode, owner, size and content (or link
// target), so two unpacked trees can be compared whole.
std::map<std::string, std::string> treeOf(const fs::path& root) {
    std::map<std::string, std::string> tree;
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
        struct stat st {};
        EXPECT_EQ(::lstat(entry.path().c_str(), &st), 0);
        std::string description = std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + ":" +
                                  std::to_string(st.st_gid);
        if (S_ISREG(st.st_mode))
            description += " " + toHex(sha256(readText(entry.path())));
        else if (S_ISLNK(st.st_mode))
            description += " -> " + fs::read_symlink(entry.path()).string();
        tree[fs::relative(entry.path(), root).string()] = description;
    }
    return tree;
}

std::vector<std::string> cacheEntries(const fs::path& cache) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(cache)) names.push_back(entry.path().filename().string());
    return names;
}

// The message of what `get` throws, or "" if it does not.
std::string getError(ImageStore& store, const std::string& reference) {
    try {
        store.get(reference);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

// Writes `data` as a blob of `layout` and returns its descriptor.
json putBlob(const fs::path& layout, const std::string& mediaType, const std::string& data) {
    const std::string hex = toHex(sha256(data));
    writeText(layout / "blobs/sha256" / hex, data);
    return {{"mediaType", mediaType}, {"digest", "sha256:" + hex}, {"size", data.size()}};
}

// The image every read-only test shares (built once: umoci compresses the
// server binary each time): config set, a file the app user owns, and a
// second layer that deletes a file and a directory of the first.
class ContainerImage : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        TestImageOptions options;
        options.cmd = {"--port", "9000"};
        options.env.push_back("GREETING=hello world");
        options.user = "app";
        options.workingDir = "/srv";
        options.files = {
            {"/srv/data.txt", "data", fs::perms(0640), 1000, 1000},
            {"/etc/gone", "deleted by the second layer"},
            {"/opt/dir/a", "deleted with its directory"},
            {"/etc/keep", "kept"},
        };
        shared_ = std::make_unique<TestImage>(options);
        shared_->addLayer([](const fs::path& rootfs) {
            fs::remove(rootfs / "etc/gone");
            fs::remove_all(rootfs / "opt/dir");
            testing::writeImageFile(rootfs, {"/etc/added", "second layer", fs::perms(0600), 1000, 0});
        });
    }
    static void TearDownTestSuite() { shared_.reset(); }

    fs::path cachePath() const { return scratch_.path() / "images"; }

    static std::unique_ptr<TestImage> shared_;
    ScratchDirectory scratch_;
    ImageStore store_{cachePath(), kBase};
};
std::unique_ptr<TestImage> ContainerImage::shared_;

TEST_F(ContainerImage, LayoutAndArchivesUnpackToTheSameFiles) {
    const auto ociArchive = shared_->ociArchive();
    const auto dockerArchive = shared_->dockerArchive();
    const auto fromLayout = store_.get(shared_->ociReference());
    const auto fromOciArchive = store_.get("oci-archive:" + ociArchive.string());
    const auto fromDockerArchive = store_.get("docker-archive:" + dockerArchive.string());

    EXPECT_EQ(fromLayout.reference, shared_->ociReference());
    EXPECT_TRUE(fromLayout.digest.starts_with("sha256:") && fromLayout.digest.size() == 71) << fromLayout.digest;
    // An OCI archive holds the same manifest; a docker archive's is converted.
    EXPECT_EQ(fromOciArchive.digest, fromLayout.digest);
    EXPECT_NE(fromDockerArchive.digest, fromLayout.digest);
    const auto tree = treeOf(fromLayout.rootfs);
    EXPECT_TRUE(tree.contains("usr/local/bin/container-server"));
    EXPECT_EQ(treeOf(fromOciArchive.rootfs), tree);
    EXPECT_EQ(treeOf(fromDockerArchive.rootfs), tree);
    EXPECT_EQ(fromDockerArchive.config.entrypoint, fromLayout.config.entrypoint);
    EXPECT_EQ(fromDockerArchive.config.env, fromLayout.config.env);

    // Plain paths: the kind is told from the directory or the archive's content.
    EXPECT_EQ(store_.get(shared_->layout().string()).digest, fromLayout.digest);
    EXPECT_EQ(store_.get(ociArchive.string()).digest, fromLayout.digest);
    const auto plainDocker = store_.get(dockerArchive.string());
    EXPECT_EQ(plainDocker.digest, fromDockerArchive.digest);
    EXPECT_EQ(plainDocker.reference, dockerArchive.string());
    // Named as docker save names it.
    EXPECT_EQ(store_.get("docker-archive:" + dockerArchive.string() + ":sessiond-test/image:latest").digest,
              fromDockerArchive.digest);
    auto entries = cacheEntries(cachePath());
    EXPECT_EQ(entries.size(), 2u) << ::testing::PrintToString(entries);
}

TEST_F(ContainerImage, ReadsTheImageConfigFromTheLayout) {
    const auto image = store_.get(shared_->ociReference());
    EXPECT_EQ(image.config.entrypoint, std::vector<std::string>{testing::kContainerServerInImage});
    EXPECT_EQ(image.config.cmd, (std::vector<std::string>{"--port", "9000"}));
    EXPECT_EQ(image.config.env,
              (std::vector<std::string>{"PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello world"}));
    EXPECT_EQ(image.config.workingDir, "/srv");
    EXPECT_EQ(image.config.user, "app");

    // Fields an image leaves out, or sets to null, stay empty.
    const auto bare = parseImageConfig(R"({"architecture":"amd64","os":"linux"})");
    EXPECT_TRUE(bare.entrypoint.empty() && bare.cmd.empty() && bare.env.empty());
    const auto nulls = parseImageConfig(R"({"config":{"Entrypoint":null,"Cmd":["sh"],"User":""}})");
    EXPECT_TRUE(nulls.entrypoint.empty());
    EXPECT_EQ(nulls.cmd, std::vector<std::string>{"sh"});
    EXPECT_THROW(parseImageConfig(R"({"config":{"Env":"A=1"}})"), std::runtime_error);
}

TEST_F(ContainerImage, AnUnpackedImageIsNotUnpackedAgain) {
    const auto reference = shared_->ociReference();
    auto started = std::chrono::steady_clock::now();
    const auto first = store_.get(reference);
    const double unpackMs = millisecondsSince(started);
    struct stat before {};
    ASSERT_EQ(::stat((first.rootfs / "etc/keep").c_str(), &before), 0);

    started = std::chrono::steady_clock::now();
    const auto second = store_.get(reference);
    const double cachedMs = millisecondsSince(started);
    EXPECT_EQ(second.rootfs, first.rootfs);
    EXPECT_EQ(second.digest, first.digest);
    struct stat after {};
    ASSERT_EQ(::stat((second.rootfs / "etc/keep").c_str(), &after), 0);
    EXPECT_EQ(after.st_ino, before.st_ino);
    EXPECT_EQ(after.st_ctim.tv_sec, before.st_ctim.tv_sec);
    EXPECT_EQ(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
    EXPECT_LT(cachedMs, 200.0);

    // An archive of an image already unpacked is converted to learn its
    // digest, not unpacked; then it is known and not even converted again.
    const auto archive = shared_->ociArchive();
    started = std::chrono::steady_clock::now();
    const auto fromArchive = store_.get(archive.string());
    const double archiveFirstMs = millisecondsSince(started);
    started = std::chrono::steady_clock::now();
    const auto fromArchiveAgain = store_.get(archive.string());
    const double archiveCachedMs = millisecondsSince(started);
    EXPECT_EQ(fromArchive.rootfs, first.rootfs);
    EXPECT_EQ(fromArchiveAgain.rootfs, first.rootfs);
    ASSERT_EQ(::stat((first.rootfs / "etc/keep").c_str(), &after), 0);
    EXPECT_EQ(after.st_ino, before.st_ino);
    EXPECT_LT(archiveCachedMs, 200.0);
    EXPECT_EQ(cacheEntries(cachePath()).size(), 1u);

    // A changed archive (new mtime) is read again.
    fs::last_write_time(archive, fs::file_time_type::clock::now() + std::chrono::seconds(5));
    EXPECT_EQ(store_.get(archive.string()).digest, first.digest);

    std::printf("[ timing ] unpack %.0f ms, cached get %.2f ms; archive of a cached image %.0f ms, again %.2f ms\n",
                unpackMs, cachedMs, archiveFirstMs, archiveCachedMs);
}

TEST_F(ContainerImage, ConcurrentGetsOfOneImageUnpackItOnce) {
    std::vector<std::thread> threads;
    std::vector<UnpackedImage> results(4);
    std::atomic<int> failures{0};
    for (std::size_t i = 0; i < results.size(); ++i) {
        threads.emplace_back([&, i] {
            try {
                results[i] = store_.get(shared_->ociReference());
            } catch (const std::exception& e) {
                ++failures;
                ADD_FAILURE() << e.what();
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(failures, 0);
    for (const auto& result : results) EXPECT_EQ(result.rootfs, results.front().rootfs);
    EXPECT_EQ(cacheEntries(cachePath()).size(), 1u);
}

TEST_F(ContainerImage, HonoursWhiteouts) {
    const auto rootfs = store_.get(shared_->ociReference()).rootfs;
    EXPECT_FALSE(fs::exists(rootfs / "etc/gone"));
    EXPECT_FALSE(fs::exists(rootfs / "opt/dir"));
    EXPECT_EQ(readText(rootfs / "etc/keep"), "kept");
    EXPECT_EQ(readText(rootfs / "etc/added"), "second layer");
    for (const auto& entry : fs::recursive_directory_iterator(rootfs))
        EXPECT_FALSE(entry.path().filename().string().starts_with(".wh.")) << entry.path();
}

TEST_F(ContainerImage, ShiftsOwnersByTheHostIdBase) {
    const auto rootfs = store_.get(shared_->ociReference()).rootfs;
    auto owner = [&](const std::string& path) {
        struct stat st {};
        EXPECT_EQ(::lstat((rootfs / path).c_str(), &st), 0) << path;
        return std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid) + " " +
               std::to_string(st.st_mode & 07777);
    };
    const std::string base = std::to_string(kBase), app = std::to_string(kBase + 1000);
    EXPECT_EQ(owner("srv/data.txt"), app + ":" + app + " " + std::to_string(0640));
    EXPECT_EQ(owner("srv"), app + ":" + app + " " + std::to_string(0755));
    EXPECT_EQ(owner("etc/added"), app + ":" + base + " " + std::to_string(0600));
    EXPECT_EQ(owner("etc/passwd"), base + ":" + base + " " + std::to_string(0644));
    EXPECT_EQ(owner("usr/local/bin/container-server"), base + ":" + base + " " + std::to_string(0755));
    EXPECT_EQ(owner("tmp"), base + ":" + base + " " + std::to_string(01777));
}

TEST_F(ContainerImage, TagDefaultsToTheOnlyImageElseLatest) {
    TestImageOptions options;
    options.tag = "v1";
    TestImage image(options);
    const auto layout = image.layout().string();
    const auto v1 = store_.get("oci:" + layout);  // the only image
    EXPECT_EQ(store_.get(layout).digest, v1.digest);

    image.addTag("v2");  // two names, neither latest
    auto error = getError(store_, "oci:" + layout);
    EXPECT_NE(error.find("image oci:" + layout + ": "), std::string::npos) << error;
    EXPECT_NE(error.find("none is tagged latest"), std::string::npos) << error;
    EXPECT_NE(error.find("v1, v2"), std::string::npos) << error;
    EXPECT_EQ(store_.get("oci:" + layout + ":v2").digest, v1.digest);
    const auto archive = image.ociArchive();
    EXPECT_NE(getError(store_, "oci-archive:" + archive.string()).find("none is tagged latest"), std::string::npos);
    EXPECT_EQ(store_.get("oci-archive:" + archive.string() + ":v1").digest, v1.digest);

    // With latest among several, latest it is.
    TestImage other;
    other.addTag("old");
    other.removeInNewLayer("/etc/group");  // latest moves on; old stays
    const auto otherLayout = other.layout().string();
    const auto latest = store_.get("oci:" + otherLayout);
    EXPECT_EQ(latest.digest, store_.get("oci:" + otherLayout + ":latest").digest);
    EXPECT_NE(latest.digest, store_.get("oci:" + otherLayout + ":old").digest);
    EXPECT_FALSE(fs::exists(latest.rootfs / "etc/group"));
}

TEST_F(ContainerImage, PicksLinuxAmd64FromAnImageIndex) {
    ScratchDirectory copy;
    const auto layout = copy.path() / "layout";
    fs::copy(shared_->layout(), layout, fs::copy_options::recursive);
    const json index = json::parse(readText(layout / "index.json"));
    json amd64 = index["manifests"][0];
    amd64.erase("annotations");
    // Another manifest (the same layers, another digest) stands for arm64.
    json manifest = json::parse(readText(layout / "blobs/sha256" / amd64["digest"].get<std::string>().substr(7)));
    manifest["annotations"] = {{"test.platform", "arm64"}};
    json arm64 = putBlob(layout, amd64["mediaType"], manifest.dump());
    arm64["platform"] = {{"os", "linux"}, {"architecture", "arm64"}};
    amd64["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
    auto tagIndex = [&](const std::string& tag, const json& platforms) {
        json descriptor = putBlob(layout, kOciIndexType,
                                  json{{"schemaVersion", 2}, {"mediaType", kOciIndexType}, {"manifests", platforms}}
                                      .dump());
        descriptor["annotations"] = {{"org.opencontainers.image.ref.name", tag}};
        json top = json::parse(readText(layout / "index.json"));
        top["manifests"].push_back(descriptor);
        writeText(layout / "index.json", top.dump());
    };
    tagIndex("multi", json::array({arm64, amd64}));
    json s390x = arm64;
    s390x["platform"]["architecture"] = "s390x";
    tagIndex("foreign", json::array({arm64, s390x}));

    const auto image = store_.get("oci:" + layout.string() + ":multi");
    EXPECT_EQ(image.digest, amd64["digest"]);
    EXPECT_TRUE(fs::exists(image.rootfs / "usr/local/bin/container-server"));
    const auto error = getError(store_, "oci:" + layout.string() + ":foreign");
    EXPECT_NE(error.find("no linux/amd64 image among its platforms (linux/arm64, linux/s390x)"), std::string::npos)
        << error;

    // A single image whose config names another platform is refused too.
    TestImage arm;
    runHostTool({"umoci", "config", "--image", arm.layout().string() + ":latest", "--architecture=arm64"});
    const auto armError = getError(store_, arm.ociReference());
    EXPECT_NE(armError.find("linux/arm64, not linux/amd64"), std::string::npos) << armError;
}

TEST_F(ContainerImage, ErrorsNameTheReferenceAndTheProblem) {
    ScratchDirectory scratch;
    auto expectError = [&](const std::string& reference, const std::string& problem) {
        const auto error = getError(store_, reference);
        std::printf("[ message ] %s\n", error.c_str());
        EXPECT_TRUE(error.starts_with("image " + reference + ": ")) << error;
        EXPECT_NE(error.find(problem), std::string::npos) << error;
    };
    expectError("oci:/nonexistent/layout", "/nonexistent/layout does not exist");
    expectError("/nonexistent/image.tar", "/nonexistent/image.tar does not exist");
    expectError("oci-archive:/nonexistent/image.tar:v1", "/nonexistent/image.tar does not exist");
    expectError(scratch.path().string(), "is not an OCI image layout (it has no oci-layout file)");
    expectError("oci:relative/layout", "'relative/layout' is not absolute");
    expectError("docker.io/library/alpine:latest", "not an image reference");
    expectError("oci:" + shared_->layout().string() + ":nope", "no image is tagged 'nope' (tags: latest)");
    expectError("oci-archive:" + shared_->layout().string(), "is not a regular file");

    writeText(scratch.path() / "garbage.tar", std::string(4096, 'x'));
    expectError((scratch.path() / "garbage.tar").string(), "is not a tar archive");
    fs::create_directory(scratch.path() / "files");
    writeText(scratch.path() / "files/readme", "not an image");
    runHostTool({"tar", "-cf", (scratch.path() / "files.tar").string(), "-C", (scratch.path() / "files").string(),
                 "."});
    expectError((scratch.path() / "files.tar").string(), "neither an OCI archive");
    expectError("oci-archive:" + shared_->ociArchive().string() + ":nope", "no image is tagged 'nope'");
    // What a tool says, without its command line (temporary paths) or log decoration.
    expectError("docker-archive:" + shared_->dockerArchive().string() + ":other/name:v9",
                "cannot read the archive: determining manifest MIME type for docker-archive:" +
                    shared_->dockerArchive().string() + ":docker.io/other/name:v9: Tag \"docker.io/other/name:v9\" "
                    "not found");

    // Nothing of a failed get stays in the cache.
    EXPECT_TRUE(cacheEntries(cachePath()).empty()) << ::testing::PrintToString(cacheEntries(cachePath()));
}

TEST_F(ContainerImage, AFailedUnpackLeavesNoTemporary) {
    ScratchDirectory copy;
    const auto layout = copy.path() / "layout";
    fs::copy(shared_->layout(), layout, fs::copy_options::recursive);
    // Damage the largest blob (the layer with the server) without changing its size.
    fs::path largest;
    for (const auto& blob : fs::directory_iterator(layout / "blobs/sha256"))
        if (largest.empty() || blob.file_size() > fs::file_size(largest)) largest = blob.path();
    {
        std::fstream file(largest, std::ios::in | std::ios::out | std::ios::binary);
        file.seekp(static_cast<std::streamoff>(fs::file_size(largest) / 2));
        file << "damage";
    }
    const auto error = getError(store_, "oci:" + layout.string());
    EXPECT_NE(error.find(": cannot unpack: "), std::string::npos) << error;
    EXPECT_EQ(error.find("umoci"), std::string::npos) << error;
    EXPECT_EQ(error.find(".tmp-"), std::string::npos) << error;
    std::printf("[ message ] %s\n", error.c_str());
    EXPECT_TRUE(cacheEntries(cachePath()).empty()) << ::testing::PrintToString(cacheEntries(cachePath()));

    // What a killed run left is removed when the next store opens the cache.
    fs::create_directories(cachePath() / ".tmp-killed/entry/rootfs/etc");
    writeText(cachePath() / ".tmp-killed/entry/rootfs/etc/passwd", "");
    ImageStore reopened(cachePath(), kBase);
    EXPECT_TRUE(cacheEntries(cachePath()).empty()) << ::testing::PrintToString(cacheEntries(cachePath()));
}

TEST_F(ContainerImage, RemoveExceptRemovesOnlyTheOthers) {
    TestImage small;
    const auto kept = store_.get(shared_->ociReference());
    const auto other = store_.get(small.ociReference());
    ASSERT_NE(kept.digest, other.digest);
    store_.removeExcept({kept.digest});
    EXPECT_TRUE(fs::exists(kept.rootfs / "etc/keep"));
    EXPECT_FALSE(fs::exists(other.rootfs));
    EXPECT_EQ(cacheEntries(cachePath()), std::vector<std::string>{kept.digest.substr(7)});
    // Removed means unpacked again when asked for.
    EXPECT_TRUE(fs::exists(store_.get(small.ociReference()).rootfs / "etc/passwd"));
    store_.removeExcept({});
    EXPECT_TRUE(cacheEntries(cachePath()).empty()) << ::testing::PrintToString(cacheEntries(cachePath()));
}

// ---- resolveImageUser -------------------------------------------------------

class ContainerImageUser : public ::testing::Test {
protected:
    void SetUp() override {
        fs::create_directories(rootfs() / "etc");
        writeText(rootfs() / "etc/passwd",
                  "root:x:0:0:root:/root:/bin/sh\n"
                  "# a comment\n"
                  "app:x:1000:1000:app:/home/app:/bin/sh\n"
                  "web:x:33:44::/var/www:/usr/sbin/nologin\n");
        writeText(rootfs() / "etc/group", "root:x:0:\nstaff:x:50:app,web\napp:x:1000:\n");
    }
    fs::path rootfs() const { return scratch_.path() / "rootfs"; }
    std::string resolved(const std::string& user) const {
        const auto ids = resolveImageUser(rootfs(), user);
        return std::to_string(ids.uid) + ":" + std::to_string(ids.gid);
    }
    std::string error(const std::string& user) const {
        try {
            resolveImageUser(rootfs(), user);
        } catch (const std::runtime_error& e) {
            return e.what();
        }
        return "";
    }

    ScratchDirectory scratch_;
};

TEST_F(ContainerImageUser, ResolvesNumbersAndNamesFromTheImage) {
    EXPECT_EQ(resolved(""), "0:0");
    EXPECT_EQ(resolved("0"), "0:0");
    EXPECT_EQ(resolved("root"), "0:0");
    EXPECT_EQ(resolved("1000"), "1000:1000");  // the passwd entry's group
    EXPECT_EQ(resolved("1234"), "1234:0");     // not listed: group 0
    EXPECT_EQ(resolved("app"), "1000:1000");
    EXPECT_EQ(resolved("web"), "33:44");
    EXPECT_EQ(resolved("app:app"), "1000:1000");
    EXPECT_EQ(resolved("app:staff"), "1000:50");
    EXPECT_EQ(resolved("1000:50"), "1000:50");
    EXPECT_EQ(resolved("web:0"), "33:0");
    EXPECT_EQ(resolved("4321:staff"), "4321:50");
}

TEST_F(ContainerImageUser, NamesWhatItCannotResolve) {
    EXPECT_NE(error("nobody").find("'nobody' is not in the image's /etc/passwd"), std::string::npos);
    EXPECT_NE(error("app:wheel").find("'wheel' is not in the image's /etc/group"), std::string::npos);
    // The host's users are not the image's: the host has "daemon", the image does not.
    EXPECT_NE(error("daemon").find("'daemon'"), std::string::npos);
    EXPECT_NE(error("70000").find("outside the ids 0-65535"), std::string::npos);
    EXPECT_NE(error("app:70000").find("outside the ids 0-65535"), std::string::npos);
    EXPECT_NE(error(":50").find("malformed"), std::string::npos);
    EXPECT_NE(error("app:").find("malformed"), std::string::npos);
}

TEST_F(ContainerImageUser, ReadsThroughLinksInsideTheRootfsOnly) {
    // A link that would leave the rootfs resolves inside it instead.
    fs::rename(rootfs() / "etc/passwd", rootfs() / "etc/passwd.image");
    fs::create_symlink("../../../../../../etc/passwd.image", rootfs() / "etc/passwd");
    EXPECT_EQ(resolved("web"), "33:44");
    fs::remove(rootfs() / "etc/passwd");
    fs::create_symlink("/etc/passwd.image", rootfs() / "etc/passwd");
    EXPECT_EQ(resolved("web"), "33:44");

    // No passwd at all: numbers still work, names do not.
    fs::remove(rootfs() / "etc/passwd");
    EXPECT_EQ(resolved("1000"), "1000:0");
    EXPECT_EQ(resolved(""), "0:0");
    EXPECT_NE(error("app").find("'app'"), std::string::npos);
}

// ---- The test server --------------------------------------------------------

// The server, run on the host; killed when this goes.
class ServerProcess {
public:
    explicit ServerProcess(const fs::path& binary, std::vector<std::string> args = {"--port", "0"}) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
        output_.reset(fds[0]);
        UniqueFd write(fds[1]);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, write.get(), STDOUT_FILENO);
        args.insert(args.begin(), binary.string());
        std::vector<char*> argv;
        for (auto& arg : args) argv.push_back(arg.data());
        argv.push_back(nullptr);
        const int error = ::posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (error != 0) throw std::runtime_error("cannot run " + binary.string());
    }
    ~ServerProcess() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            wait();
        }
    }
    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;

    // The port from its "listening PORT" line; 0 if it printed none in time.
    std::uint16_t port(int timeoutMs = 10000) {
        std::string line;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
        while (line.find('\n') == std::string::npos) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            pollfd pfd{output_.get(), POLLIN, 0};
            if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return 0;
            char c;
            if (::read(output_.get(), &c, 1) != 1) return 0;
            line += c;
        }
        unsigned port = 0;
        return std::sscanf(line.c_str(), "listening %u", &port) == 1 ? static_cast<std::uint16_t>(port) : 0;
    }

    // Its exit status, waiting for it.
    int wait() {
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

private:
    pid_t pid_ = -1;
    UniqueFd output_;
};

// Whether the ELF file asks for a program interpreter (is dynamically linked).
bool hasInterpreter(const fs::path& binary) {
    const std::string data = readText(binary);
    Elf64_Ehdr header;
    if (data.size() < sizeof header) throw std::runtime_error("not an ELF file");
    std::memcpy(&header, data.data(), sizeof header);
    for (unsigned i = 0; i < header.e_phnum; ++i) {
        Elf64_Phdr program;
        std::memcpy(&program, data.data() + header.e_phoff + i * header.e_phentsize, sizeof program);
        if (program.p_type == PT_INTERP) return true;
    }
    return false;
}

TEST_F(ContainerImage, TheUnpackedServerIsStaticAndServesOnTheHost) {
    const auto binary = store_.get(shared_->ociReference()).rootfs / "usr/local/bin/container-server";
    EXPECT_FALSE(hasInterpreter(binary));
    ServerProcess server(binary);
    const auto port = server.port();
    ASSERT_NE(port, 0);
    HttpClient client(port);
    EXPECT_EQ(client.get("/hello").body, "hello");
    EXPECT_EQ(client.get("/health").json(), json({{"message", "healthy"}}));
}

std::uint64_t fnv1a64(const std::string& data) {
    std::uint64_t hash = 0xcbf29ce484222325ull;
    for (unsigned char c : data) hash = (hash ^ c) * 0x100000001b3ull;
    return hash;
}

TEST(ContainerImageServer, AnswersEveryRoute) {
    ServerProcess server(SESSIOND_TEST_CONTAINER_SERVER, {"--port", "0", "--exit-after-ms", "60000"});
    const auto port = server.port();
    ASSERT_NE(port, 0);
    HttpClient client(port);  // one connection for all: keep-alive
    EXPECT_EQ(client.get("/hello").body, "hello");

    const auto info = client.get("/info").json();
    EXPECT_EQ(info["uid"], ::getuid());
    EXPECT_EQ(info["cwd"], fs::current_path().string());
    EXPECT_EQ(info["argv"], json({SESSIOND_TEST_CONTAINER_SERVER, "--port", "0", "--exit-after-ms", "60000"}));
    EXPECT_TRUE(info["env"].contains("PATH"));
    EXPECT_TRUE(info["hostname"].is_string() && info["pid"].is_number());

    std::string upload(5'000'003, '\0');
    for (std::size_t i = 0; i < upload.size(); ++i) upload[i] = static_cast<char>(i * 7919 % 251);
    const auto echo = client.post("/echo", upload, "application/octet-stream").json();
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a64(upload)));
    EXPECT_EQ(echo, json({{"bytes", upload.size()}, {"fnv1a64", hex}}));

    const auto big = client.get("/big?bytes=1000003");
    EXPECT_EQ(big.header("Transfer-Encoding"), "chunked");
    ASSERT_EQ(big.body.size(), 1000003u);
    bool pattern = true;
    for (std::size_t i = 0; i < big.body.size(); ++i) pattern = pattern && big.body[i] == static_cast<char>('a' + i % 26);
    EXPECT_TRUE(pattern);

    EXPECT_EQ(client.get("/status/418").status, 418);
    EXPECT_EQ(client.get("/status/503").status, 503);
    EXPECT_EQ(client.get("/status/204").status, 204);
    EXPECT_EQ(client.get("/status/abc").status, 400);
    EXPECT_EQ(client.get("/health").body, R"({"message":"healthy"})");
    EXPECT_EQ(client.get("/nowhere").status, 404);
    EXPECT_EQ(client.post("/hello", "x").status, 404);

    const auto headers = HttpClient(port).withKey("k-123").get("/headers?a=1&b=two").json();
    EXPECT_EQ(headers["target"], "/headers?a=1&b=two");
    EXPECT_EQ(headers["method"], "GET");
    EXPECT_EQ(headers["headers"]["authorization"], "Bearer k-123");

    // Connections are served at once: a second client while the first stays open.
    HttpClient second(port);
    EXPECT_EQ(second.get("/hello").body, "hello");
    EXPECT_EQ(client.get("/hello").body, "hello");

    {
        namespace beast = boost::beast;
        boost::asio::io_context io;
        beast::websocket::stream<boost::asio::ip::tcp::socket> ws(io);
        ws.next_layer().connect({boost::asio::ip::make_address("127.0.0.1"), port});
        ws.handshake("127.0.0.1", "/ws");
        ws.write(boost::asio::buffer(std::string("ping over ws")));
        beast::flat_buffer reply;
        ws.read(reply);
        EXPECT_EQ(beast::buffers_to_string(reply.data()), "ping over ws");
        ws.close(beast::websocket::close_code::normal);
    }

    EXPECT_EQ(client.post("/exit", "").status, 200);
    EXPECT_EQ(server.wait(), 0);
}

TEST(ContainerImageServer, ExitsAndStartsLateWhenAsked) {
    ServerProcess atOnce(SESSIOND_TEST_CONTAINER_SERVER, {"--exit-after-ms", "0"});
    EXPECT_EQ(atOnce.wait(), 3);

    auto started = std::chrono::steady_clock::now();
    ServerProcess later(SESSIOND_TEST_CONTAINER_SERVER, {"--port", "0", "--exit-after-ms", "300"});
    ASSERT_NE(later.port(), 0);
    EXPECT_EQ(later.wait(), 3);
    EXPECT_GE(millisecondsSince(started), 300.0);

    started = std::chrono::steady_clock::now();
    ServerProcess slow(SESSIOND_TEST_CONTAINER_SERVER, {"--port", "0", "--start-delay-ms", "400"});
    const auto port = slow.port();
    EXPECT_GE(millisecondsSince(started), 400.0);
    ASSERT_NE(port, 0);
    EXPECT_EQ(HttpClient(port).get("/hello").body, "hello");
}

}  // namespace
}  // namespace sessiond
