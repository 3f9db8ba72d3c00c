#pragma once
// posix_spawn's file actions, owned, for the places that spawn a helper
// (host tools, sessiond-nsinit).

#include <spawn.h>

namespace sessiond {

struct SpawnActions {
    posix_spawn_file_actions_t actions;
    SpawnActions() { posix_spawn_file_actions_init(&actions); }
    ~SpawnActions() { posix_spawn_file_actions_destroy(&actions); }
    SpawnActions(const SpawnActions&) = delete;
    SpawnActions& operator=(const SpawnActions&) = delete;
};

}  // namespace sessiond
