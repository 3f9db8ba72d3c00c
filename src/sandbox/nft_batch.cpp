#include "nft_batch.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sessiond/unique_fd.hpp"
#include "spawn_actions.hpp"

extern char** environ;

namespace sessiond {

struct NftBatch::Run {
    explicit Run(boost::asio::io_context& io) : errors(io) {}
    pid_t pid = -1;
    boost::asio::posix::stream_descriptor errors;
    std::string errorText;
    std::vector<Done> done;
    char buffer[4096];
};

NftBatch::~NftBatch() {
    if (!running_ || running_->pid <= 0) return;
    ::kill(running_->pid, SIGKILL);
    ::waitpid(running_->pid, nullptr, 0);
    running_->pid = -1;
    running_->errors.close();  // its handler sees operation_aborted, and the pid gone
}

void NftBatch::submit(std::string commands, Done done) {
    queued_ += commands;
    queuedDone_.push_back(std::move(done));
    if (!running_) startNext();
}

void NftBatch::startNext() {
    if (queuedDone_.empty()) return;
    auto run = std::make_shared<Run>(io_);
    run->done = std::move(queuedDone_);
    queuedDone_.clear();
    const std::string input = std::move(queued_);
    queued_.clear();
    auto fail = [&](const std::string& why) {
        for (auto& done : run->done) done(why);
        startNext();
    };
    int in[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0) return fail(std::string("pipe: ") + std::strerror(errno));
    UniqueFd inRead(in[0]), inWrite(in[1]);
    if (::pipe2(err, O_CLOEXEC) != 0) return fail(std::string("pipe: ") + std::strerror(errno));
    UniqueFd errRead(err[0]), errWrite(err[1]);
    SpawnActions actions;
    posix_spawn_file_actions_adddup2(&actions.actions, inRead.get(), STDIN_FILENO);
    posix_spawn_file_actions_addopen(&actions.actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&actions.actions, errWrite.get(), STDERR_FILENO);
    char* argv[] = {const_cast<char*>("nft"), const_cast<char*>("-f"), const_cast<char*>("-"), nullptr};
    if (int error = ::posix_spawnp(&run->pid, "nft", &actions.actions, nullptr, argv, environ))
        return fail(std::string("cannot run nft: ") + std::strerror(error));
    inRead.reset();
    errWrite.reset();
    // nft reads all of its input before it applies any, so this write is
    // done as soon as nft has read it; batches are a few kilobytes.
    for (std::size_t written = 0; written < input.size();) {
        const ssize_t n = ::write(inWrite.get(), input.data() + written, input.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // nft died: its exit status says so
        written += static_cast<std::size_t>(n);
    }
    inWrite.reset();
    run->errors.assign(errRead.release());
    running_ = run;
    readErrors(run);
}

// Its standard error ends when it exits.
void NftBatch::readErrors(std::shared_ptr<Run> run) {
    run->errors.async_read_some(boost::asio::buffer(run->buffer), [this, run](boost::system::error_code ec,
                                                                              std::size_t n) {
        if (ec == boost::asio::error::operation_aborted || run->pid <= 0) return;  // the batch is being destroyed
        if (ec) return finish(run);
        run->errorText.append(run->buffer, n);
        readErrors(run);
    });
}

void NftBatch::finish(std::shared_ptr<Run> run) {
    int status = 0;
    while (::waitpid(run->pid, &status, 0) < 0 && errno == EINTR) {
    }
    run->pid = -1;
    running_.reset();
    std::string error;
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        error = "nft failed: " + run->errorText;
        while (!error.empty() && error.back() == '\n') error.pop_back();
    }
    for (auto& done : run->done) done(error);
    startNext();
}

}  // namespace sessiond
