#pragma once
// Small container images for tests, built with umoci in a temporary
// directory: an OCI image layout holding the static test server
// (tests/support/container_server.cpp) at /usr/local/bin/container-server,
// an /etc/passwd and /etc/group with root and app (1000:1000), the working
// directory, and whatever files a test adds; more layers on top (what a
// layer deletes becomes a whiteout); and the same image as an oci-archive or
// a docker-archive.

#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sessiond/host_tool.hpp"

#ifndef SESSIOND_TEST_CONTAINER_SERVER
#error "tests/CMakeLists.txt defines SESSIOND_TEST_CONTAINER_SERVER"
#endif

namespace sessiond::testing {

inline constexpr const char* kContainerServerInImage = "/usr/local/bin/container-server";
inline constexpr std::uint32_t kImageAppId = 1000;

// A directory under the system's temporary directory, removed with what it
// holds when this goes.
class ScratchDirectory {
public:
    explicit ScratchDirectory(const std::string& prefix = "sessiond-test-") {
        std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "XXXXXX")).string();
        if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp " + pattern + " failed");
        path_ = pattern;
    }
    ~ScratchDirectory() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    ScratchDirectory(const ScratchDirectory&) = delete;
    ScratchDirectory& operator=(const ScratchDirectory&) = delete;

    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

struct TestImageFile {
    std::string path;  // absolute, in the image
    std::string content;
    std::filesystem::perms mode = std::filesystem::perms(0644);
    std::uint32_t uid = 0, gid = 0;
};

struct TestImageOptions {
    std::vector<std::string> entrypoint{kContainerServerInImage};
    std::vector<std::string> cmd;
    std::vector<std::string> env{"PATH=/usr/local/bin:/usr/bin:/bin"};
    std::string user;                // "" leaves the image's user unset
    std::string workingDir = "/srv"; // created, owned by app
    std::vector<TestImageFile> files;
    std::string tag = "latest";
};

// Writes `content` to `rootfs`/`path` (an absolute path in the image),
// creating its directories, with the given mode and owner.
inline void writeImageFile(const std::filesystem::path& rootfs, const TestImageFile& file) {
    namespace fs = std::filesystem;
    const fs::path target = rootfs / fs::path(file.path).relative_path();
    fs::create_directories(target.parent_path());
    {
        std::ofstream out(target, std::ios::binary | std::ios::trunc);
        out << file.content;
        if (!out) throw std::runtime_error("cannot write " + target.string());
    }
    fs::permissions(target, file.mode);
    if (::chown(target.c_str(), file.uid, file.gid) != 0) throw std::runtime_error("chown " + target.string());
}

class TestImage {
public:
    explicit TestImage(const TestImageOptions& options = {}) : tag_(options.tag) {
        namespace fs = std::filesystem;
        runHostTool({"umoci", "init", "--layout", layout().string()});
        runHostTool({"umoci", "new", "--image", image()});
        addLayer([&](const fs::path& rootfs) {
            fs::create_directories(rootfs / "usr/local/bin");
            fs::copy_file(SESSIOND_TEST_CONTAINER_SERVER, rootfs / fs::path(kContainerServerInImage).relative_path());
            writeImageFile(rootfs, {"/etc/passwd",
                                    "root:x:0:0:root:/root:/bin/sh\n"
                                    "app:x:1000:1000:app:/home/app:/bin/sh\n"});
            writeImageFile(rootfs, {"/etc/group", "root:x:0:\napp:x:1000:\n"});
            for (const char* dir : {"root", "tmp", "home/app"}) fs::create_directories(rootfs / dir);
            fs::permissions(rootfs / "tmp", fs::perms(01777));
            chownPath(rootfs / "home/app", kImageAppId, kImageAppId);
            if (!options.workingDir.empty()) {
                const auto dir = rootfs / fs::path(options.workingDir).relative_path();
                fs::create_directories(dir);
                chownPath(dir, kImageAppId, kImageAppId);
            }
            for (const auto& file : options.files) writeImageFile(rootfs, file);
        });
        std::vector<std::string> config{"umoci", "config", "--image", image()};
        // "--flag=value": a value may start with '-'.
        for (const auto& v : options.entrypoint) config.push_back("--config.entrypoint=" + v);
        for (const auto& v : options.cmd) config.push_back("--config.cmd=" + v);
        for (const auto& v : options.env) config.push_back("--config.env=" + v);
        if (!options.user.empty()) config.push_back("--config.user=" + options.user);
        if (!options.workingDir.empty()) config.push_back("--config.workingdir=" + options.workingDir);
        runHostTool(config);
    }

    const std::filesystem::path& directory() const { return dir_.path(); }
    std::filesystem::path layout() const { return dir_.path() / "layout"; }
    const std::string& tag() const { return tag_; }
    // The image in skopeo's syntax: oci:DIR:TAG.
    std::string ociReference() const { return "oci:" + image(); }

    // Adds a layer: `change` edits a copy of the image's root filesystem
    // (as root, so owners are kept), and umoci records the difference; what
    // it deletes becomes a whiteout.
    void addLayer(const std::function<void(const std::filesystem::path& rootfs)>& change) {
        const auto bundle = dir_.path() / "bundle";
        std::filesystem::remove_all(bundle);  // what a change that threw left
        runHostTool({"umoci", "unpack", "--image", image(), bundle.string()});
        change(bundle / "rootfs");
        runHostTool({"umoci", "repack", "--image", image(), bundle.string()});
        std::filesystem::remove_all(bundle);
    }

    // Adds a layer that deletes `path` (absolute, in the image).
    void removeInNewLayer(const std::string& path) {
        addLayer([&](const std::filesystem::path& rootfs) {
            std::filesystem::remove_all(rootfs / std::filesystem::path(path).relative_path());
        });
    }

    // Also names the current image `tag` in the layout.
    void addTag(const std::string& tag) {
        runHostTool({"umoci", "tag", "--image", image(), tag});
    }

    // The layout as an oci-archive: a tar of its directory.
    std::filesystem::path ociArchive() const {
        const auto archive = dir_.path() / "image-oci.tar";
        runHostTool({"tar", "-cf", archive.string(), "-C", layout().string(), "."});
        return archive;
    }

    // The image as a docker-archive (`docker save`'s format), named `name`.
    std::filesystem::path dockerArchive(const std::string& name = "sessiond-test/image:latest") const {
        const auto archive = dir_.path() / "image-docker.tar";
        std::filesystem::remove(archive);
        runHostTool({"skopeo", "--insecure-policy", "copy", "--quiet", ociReference(),
                     "docker-archive:" + archive.string() + ":" + name});
        return archive;
    }

private:
    std::string image() const { return layout().string() + ":" + tag_; }

    static void chownPath(const std::filesystem::path& path, std::uint32_t uid, std::uint32_t gid) {
        if (::chown(path.c_str(), uid, gid) != 0) throw std::runtime_error("chown " + path.string());
    }

    ScratchDirectory dir_{"sessiond-image-"};
    std::string tag_;
};

// An image whose user is `app` (1000:1000) and whose env has
// FROM_IMAGE=image, for tests of what a container runs as.
inline TestImageOptions appUserImage() {
    TestImageOptions options;
    options.user = "app";
    options.env.push_back("FROM_IMAGE=image");
    return options;
}

// What the test server's /info says in a container of appUserImage() run
// with the pool's default command and args "--port 8080".
inline void expectRunsAsAppUserImageSays(const nlohmann::json& info) {
    EXPECT_EQ(info["uid"], 1000);
    EXPECT_EQ(info["gid"], 1000);
    EXPECT_EQ(info["cwd"], "/srv");
    EXPECT_EQ(info["hostname"], "sandbox");
    EXPECT_EQ(info["env"]["FROM_IMAGE"], "image");
    EXPECT_EQ(info["argv"], (nlohmann::json{"/usr/local/bin/container-server", "--port", "8080"}));
}

}  // namespace sessiond::testing
