#pragma once
// Owner for a memory mapping (and the shared fd owner), so every path out of
// a function that opens or maps something releases it.

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <utility>

#include "sessiond/unique_fd.hpp"

namespace sessiond::libvirt {

using sessiond::UniqueFd;

class Mapping {
public:
    Mapping(void* address, std::size_t length) : address_(address), length_(length) {}
    ~Mapping() {
        if (address_ != MAP_FAILED) ::munmap(address_, length_);
    }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    void* get() const { return address_; }
    explicit operator bool() const { return address_ != MAP_FAILED; }

private:
    void* address_;
    std::size_t length_;
};

}  // namespace sessiond::libvirt
