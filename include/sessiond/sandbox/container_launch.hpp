#pragma once
// What a custom container session runs (docs/custom-containers.md), worked
// out once per start from the pool's template and its image's config, the
// way container runtimes do: the template's command replaces the image's
// entrypoint and its args the image's cmd (a command without args drops
// the cmd); the image's env comes first, then the template's, values of
// secrets included; the image's working directory and user. Both backends
// run the result.

#include <filesystem>
#include <functional>
#include <map>

#include <boost/asio.hpp>
#include <string>
#include <vector>

#include "sessiond/config.hpp"
#include "sessiond/sandbox/container_image.hpp"

namespace sessiond {

struct ContainerLaunch {
    std::filesystem::path rootfs;             // the image's unpacked root on the host
    std::vector<std::string> argv;            // argv[0]: an absolute path inside the image
    std::map<std::string, std::string> env;
    std::string workingDirectory = "/";
    ImageUser user;
    // The image's root as a disk, for a microVM (the libvirt backend's
    // planner makes it); empty otherwise.
    std::filesystem::path imageDisk;
};

// Blocking (reads the image's files and secret files): off the io thread.
// Throws std::runtime_error saying what is missing: no program to run, a
// program not found on the image's PATH, a secret or its file, a user.
ContainerLaunch planContainerLaunch(const UnpackedImage& image, const PoolConfig& pool);

// Plans launches on a thread of its own, since the first use of an image
// unpacks it (seconds), and hands each result back on the io thread.
class ContainerPlanner {
public:
    // What a backend adds to each plan on the planner's thread (a VM's disk
    // of the image, made once per image): may throw to fail the plan.
    using Prepare = std::function<void(ContainerLaunch& launch)>;
    ContainerPlanner(boost::asio::io_context& io, std::filesystem::path imageCache, std::uint32_t hostIdBase,
                     Prepare prepare = {});
    // Waits for a plan under way.
    ~ContainerPlanner();

    using PlanHandler = std::function<void(std::string error, ContainerLaunch launch)>;
    void plan(const PoolConfig& pool, PlanHandler onDone);

    ImageStore& images() { return images_; }

private:
    boost::asio::io_context& io_;
    ImageStore images_;
    Prepare prepare_;
    boost::asio::thread_pool worker_{1};
};

}  // namespace sessiond
