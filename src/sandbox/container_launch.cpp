#include "sessiond/sandbox/container_launch.hpp"

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace sessiond {

namespace {

// The PATH container runtimes give an image that sets none.
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string secretValue(const PoolConfig& pool, const std::string& name) {
    for (const auto& secret : pool.secrets) {
        if (secret.name != name) continue;
        if (secret.file.empty()) return secret.value;
        std::ifstream in(secret.file, std::ios::binary);
        if (!in) throw std::runtime_error("cannot read the file " + secret.file.string() + " of secret '" + name + "'");
        std::ostringstream text;
        text << in.rdbuf();
        return text.str();
    }
    throw std::runtime_error("the pool has no secret named '" + name + "'");
}

// Whether `path` (inside the image) names something: lstat, so a symbolic
// link counts without being followed out of the image on the host.
bool existsInImage(const std::filesystem::path& rootfs, const std::string& path) {
    struct stat st {};
    return ::lstat((rootfs.string() + path).c_str(), &st) == 0;
}

// argv[0] as the kernel will execute it inside the image: a name without a
// slash is looked up on the container's PATH, as a shell would.
std::string resolveProgram(const std::filesystem::path& rootfs, const std::string& program,
                           const std::map<std::string, std::string>& env, const std::string& workingDirectory) {
    if (program.find('/') != std::string::npos) {
        std::string path = program[0] == '/' ? program : (workingDirectory == "/" ? "" : workingDirectory) + "/" + program;
        if (!existsInImage(rootfs, path)) throw std::runtime_error("the program " + path + " is not in the image");
        return path;
    }
    auto it = env.find("PATH");
    std::stringstream dirs(it == env.end() ? kDefaultPath : it->second);
    for (std::string dir; std::getline(dirs, dir, ':');) {
        if (dir.empty() || dir[0] != '/') continue;
        const std::string path = (dir.back() == '/' ? dir : dir + "/") + program;
        if (existsInImage(rootfs, path)) return path;
    }
    throw std::runtime_error("the program '" + program + "' is not on the image's PATH");
}

// The sandbox's root, a host uid of no privilege, opens the image's root
// through every directory above it: each must let others search it.
void checkSearchable(const std::filesystem::path& rootfs) {
    for (std::filesystem::path dir = rootfs; !dir.empty(); dir = dir.parent_path()) {
        struct stat st {};
        if (::stat(dir.c_str(), &st) == 0 && !(st.st_mode & S_IXOTH))
            throw std::runtime_error("the directory " + dir.string() +
                                     " above the unpacked image is not searchable by others (mode " +
                                     std::to_string((st.st_mode >> 6) & 7) + std::to_string((st.st_mode >> 3) & 7) +
                                     std::to_string(st.st_mode & 7) +
                                     "), so no sandbox can open the image; give it o+x or set containers.directory elsewhere");
        if (dir == dir.root_path()) break;
    }
}

}  // namespace

ContainerLaunch planContainerLaunch(const UnpackedImage& image, const PoolConfig& pool) {
    const ContainerTemplate& container = pool.container;
    ContainerLaunch launch;
    launch.rootfs = image.rootfs;
    checkSearchable(launch.rootfs);
    for (const auto& entry : image.config.env) {
        const auto equals = entry.find('=');
        if (equals == std::string::npos || equals == 0) continue;
        launch.env[entry.substr(0, equals)] = entry.substr(equals + 1);
    }
    launch.env.emplace("PATH", kDefaultPath);
    launch.env["HOSTNAME"] = "sandbox";
    for (const auto& variable : container.env)
        launch.env[variable.name] = variable.secretRef.empty() ? variable.value : secretValue(pool, variable.secretRef);
    if (!image.config.workingDir.empty()) launch.workingDirectory = image.config.workingDir;

    std::vector<std::string> argv = container.command.empty() ? image.config.entrypoint : container.command;
    const std::vector<std::string>& args =
        !container.args.empty() || !container.command.empty() ? container.args : image.config.cmd;
    argv.insert(argv.end(), args.begin(), args.end());
    if (argv.empty() || argv[0].empty())
        throw std::runtime_error("neither the pool's command nor the image's entrypoint or cmd names a program to run");
    argv[0] = resolveProgram(image.rootfs, argv[0], launch.env, launch.workingDirectory);
    launch.argv = std::move(argv);
    launch.user = resolveImageUser(image.rootfs, image.config.user);
    return launch;
}

ContainerPlanner::ContainerPlanner(boost::asio::io_context& io, std::filesystem::path imageCache,
                                   std::uint32_t hostIdBase, Prepare prepare)
    : io_(io), images_(std::move(imageCache), hostIdBase), prepare_(std::move(prepare)) {}

ContainerPlanner::~ContainerPlanner() { worker_.join(); }

void ContainerPlanner::plan(const PoolConfig& pool, PlanHandler onDone) {
    boost::asio::post(worker_, [this, pool, onDone = std::move(onDone)]() mutable {
        std::string error;
        ContainerLaunch launch;
        try {
            launch = planContainerLaunch(images_.get(pool.container.image), pool);
            if (prepare_) prepare_(launch);
        } catch (const std::exception& e) {
            error = e.what();
        }
        boost::asio::post(io_, [onDone = std::move(onDone), error = std::move(error), launch = std::move(launch)]() mutable {
            onDone(std::move(error), std::move(launch));
        });
    });
}

}  // namespace sessiond
