#pragma once
// Container images for custom-container pools, from the host's own files (no
// registry): an OCI image layout directory or an OCI or docker archive,
// unpacked once into a cached, read-only root filesystem with skopeo and
// umoci.
//
// Image references:
//   oci:DIR[:TAG]                      an OCI image layout directory
//   oci-archive:FILE[:TAG]             a tar of an OCI image layout
//   docker-archive:FILE[:NAME:TAG]     a `docker save` archive
//   /ABSOLUTE/PATH                     a directory is an OCI layout; a regular file an
//                                      archive, OCI if it holds `oci-layout`, docker if
//                                      it holds `manifest.json`
// The prefixed forms are skopeo's own transport syntax: the path ends at the
// first colon after the prefix. Paths must be absolute. Without a tag (or
// docker NAME:TAG), the image is the only one the layout or archive holds,
// else the one tagged `latest`. An image index (several platforms) gives
// its linux/amd64 image; an image whose config names another platform is
// refused.
//
// Cache layout: one directory per image manifest digest,
// CACHE/<sha256 hex>/{rootfs/,config.json} (config.json is the image's OCI
// config blob). Work in progress lives in CACHE/.tmp-*, renamed into place
// when complete. One ImageStore per cache directory.

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sessiond {

// The OCI image config's "config" object: what a container runs by default.
struct ImageConfig {
    std::vector<std::string> entrypoint;
    std::vector<std::string> cmd;
    std::vector<std::string> env;  // "NAME=value"
    std::string workingDir;        // "" if the image sets none
    std::string user;              // as the image writes it: "", "1000", "1000:1000", "app", "app:app"
};

struct UnpackedImage {
    std::string reference;         // as given
    std::string digest;            // "sha256:<hex>" of the image manifest
    std::filesystem::path rootfs;  // read-only use; files owned by ids shifted by hostIdBase
    ImageConfig config;
};

// Numeric ids for an image user string ("", "UID", "NAME", "UID:GID",
// "NAME:GROUP", ...), resolved against the rootfs's /etc/passwd and
// /etc/group (never the host's; symbolic links resolve inside the rootfs).
// "" is 0:0; a user without a group takes its passwd entry's group (0 for a
// numeric uid the image does not list). Throws std::runtime_error naming a
// user or group that is not found, and for ids outside 0..65535 (the ids a
// sandbox maps).
struct ImageUser {
    std::uint32_t uid = 0, gid = 0;
};
ImageUser resolveImageUser(const std::filesystem::path& rootfs, const std::string& user);

// Parses an OCI image config blob (its "config" object; absent fields stay empty).
ImageConfig parseImageConfig(const std::string& configBlob);

class ImageStore {
public:
    // cacheDirectory (created if missing) holds one directory per unpacked
    // image; hostIdBase: the image's uid/gid 0..65535 are stored as
    // hostIdBase.. on the host, so a user namespace mapping 0..65535 to
    // base.. sees the image's own owners. Removes temporaries a killed run
    // left behind.
    ImageStore(std::filesystem::path cacheDirectory, std::uint32_t hostIdBase);

    // Blocking (runs skopeo/umoci; seconds for a large image): callers run it
    // off the io thread. Thread-safe. An image already unpacked (same
    // manifest digest) is not unpacked again; an archive already converted
    // (same path, tag, inode, size and mtime) is not read again either.
    // Throws std::runtime_error "image REFERENCE: what is wrong"; never
    // leaves a half-unpacked directory behind.
    UnpackedImage get(const std::string& reference);

    // Removes unpacked images whose digest is not in `keepDigests` (pools
    // removed or changed images). An image being unpacked right now stays.
    void removeExcept(const std::set<std::string>& keepDigests);

    const std::filesystem::path& cacheDirectory() const { return cacheDirectory_; }

private:
    // An archive file as it was when it was converted: a changed file has
    // another inode, size or mtime.
    struct ArchiveKey {
        std::string reference;
        std::uint64_t device, inode, size;
        std::int64_t mtimeNs;
        auto operator<=>(const ArchiveKey&) const = default;
    };

    struct LayoutImage;
    // The image `tag` names in the layout (see the reference rules above).
    static LayoutImage readLayoutImage(const std::filesystem::path& layout, const std::string& tag);
    UnpackedImage getFromArchive(const std::string& reference, const std::filesystem::path& archive,
                                 std::optional<bool> docker, const std::string& tag);
    // The image from the cache, unpacked from `layout` first unless it is
    // there already. Waits while another thread unpacks the same digest.
    UnpackedImage obtain(const std::string& reference, const std::filesystem::path& layout,
                         const LayoutImage& image);
    void unpack(const std::filesystem::path& layout, const LayoutImage& image,
                const std::filesystem::path& entry) const;
    // The cached image; called with mutex_ held, so removeExcept cannot take it away meanwhile.
    UnpackedImage load(const std::string& reference, const std::string& digest) const;
    std::filesystem::path entryDirectory(const std::string& digest) const;

    std::filesystem::path cacheDirectory_;
    std::uint32_t hostIdBase_;
    std::mutex mutex_;
    std::condition_variable unpacked_;            // a digest left unpacking_
    std::set<std::string> unpacking_;             // digests being unpacked
    std::map<ArchiveKey, std::string> archives_;  // archive → manifest digest it converted to
};

}  // namespace sessiond
