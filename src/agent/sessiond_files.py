"""The session's data directory (/mnt/data) as the host's file API sees it.

Every path is relative to the data directory. A path holding "." or ".."
segments or a NUL is refused, and every component is opened with O_NOFOLLOW
relative to the directory before it, so a symlink planted by the session's
code (to /etc, to another place in the sandbox) is refused instead of
followed: nothing outside the directory is read, written or listed.
"""

import base64
import errno
import os
import secrets
import stat

# Bounds one listing reply well under the 64 MiB frame limit.
MAX_LIST_ENTRIES = 20_000
UPLOAD_PREFIX = ".sessiond-upload-"


class FileError(Exception):
    """An error the host maps to an HTTP status: notFound, invalidPath,
    isDirectory, notEmpty, noSpace, tooMany, ioError."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def split_path(path):
    if not isinstance(path, str) or "\0" in path:
        raise FileError("invalidPath", "the path must be a string without NUL characters")
    parts = [part for part in path.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise FileError("invalidPath", f"the path {path!r} has a '.' or '..' segment")
    return parts


def _os_error(error, path):
    if error.errno == errno.ENOENT:
        return FileError("notFound", f"{path!r} does not exist")
    if error.errno in (errno.ELOOP, errno.ENOTDIR):
        return FileError("invalidPath", f"{path!r} passes through a symbolic link or a file")
    if error.errno == errno.EISDIR:
        return FileError("isDirectory", f"{path!r} is a directory")
    if error.errno == errno.ENOTEMPTY:
        return FileError("notEmpty", f"{path!r} is a directory that is not empty")
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return FileError("noSpace", f"no space left for {path!r} in the session's data directory")
    return FileError("ioError", f"{path!r}: {error.strerror}")


class DataDirectory:
    def __init__(self, root):
        self.root = root
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.upload = None  # (dir_fd, temporary name, final name, file fd, path)

    # -- path walking --------------------------------------------------------

    def _open_dir(self, parts, path, create=False):
        """An fd of the directory `parts` names, creating missing ones if asked."""
        fd = os.dup(self.root_fd)
        try:
            for part in parts:
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                try:
                    child = os.open(part, flags, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                    child = os.open(part, flags, dir_fd=fd)
                os.close(fd)
                fd = child
            return fd
        except OSError as e:
            os.close(fd)
            raise _os_error(e, path) from None

    def _entry(self, dir_fd, name, relative_dir):
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            kind = "directory"
        elif stat.S_ISREG(info.st_mode):
            kind = "file"
        else:
            return None  # symlinks, fifos, sockets: nothing the file API can serve
        return {"path": f"{relative_dir}/{name}" if relative_dir else name, "name": name,
                "directory": relative_dir, "type": kind, "size": info.st_size,
                "mtimeMs": info.st_mtime_ns // 1_000_000}

    # -- operations ----------------------------------------------------------

    def list(self, path, recursive):
        parts = split_path(path)
        entries = []
        pending = [(self._open_dir(parts, path), "/".join(parts))]
        try:
            while pending:
                dir_fd, relative = pending.pop()
                try:
                    for item in os.scandir(dir_fd):
                        if item.name.startswith(UPLOAD_PREFIX):
                            continue
                        try:
                            entry = self._entry(dir_fd, item.name, relative)
                        except FileNotFoundError:
                            continue  # removed meanwhile by the session's code
                        if entry is None:
                            continue
                        if len(entries) >= MAX_LIST_ENTRIES:
                            raise FileError("tooMany", f"more than {MAX_LIST_ENTRIES} entries to list")
                        entries.append(entry)
                        if recursive and entry["type"] == "directory":
                            try:
                                pending.append((self._open_child(dir_fd, item.name, entry["path"]),
                                                entry["path"]))
                            except FileError:
                                pass
                finally:
                    os.close(dir_fd)
        finally:
            for dir_fd, _ in pending:
                os.close(dir_fd)
        entries.sort(key=lambda e: e["path"])
        return entries

    def _open_child(self, dir_fd, name, path):
        try:
            return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as e:
            raise _os_error(e, path) from None

    def stat(self, path):
        parts = split_path(path)
        if not parts:
            raise FileError("isDirectory", "the data directory itself is not a file")
        dir_fd = self._open_dir(parts[:-1], path)
        try:
            entry = self._entry(dir_fd, parts[-1], "/".join(parts[:-1]))
        except OSError as e:
            raise _os_error(e, path) from None
        finally:
            os.close(dir_fd)
        if entry is None:
            raise FileError("invalidPath", f"{path!r} is not a regular file or directory")
        return entry

    def read(self, path, offset, length):
        parts = split_path(path)
        if not parts:
            raise FileError("isDirectory", "the data directory itself is not a file")
        dir_fd = self._open_dir(parts[:-1], path)
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError as e:
            raise _os_error(e, path) from None
        finally:
            os.close(dir_fd)
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise FileError("isDirectory", f"{path!r} is a directory")
            if not stat.S_ISREG(info.st_mode):
                raise FileError("invalidPath", f"{path!r} is not a regular file")
            data = os.pread(fd, length, offset)
        except OSError as e:
            raise _os_error(e, path) from None
        finally:
            os.close(fd)
        return {"data": base64.b64encode(data).decode("ascii"), "size": info.st_size,
                "mtimeMs": info.st_mtime_ns // 1_000_000,
                "eof": offset + len(data) >= info.st_size}

    def write(self, path, data, first, last):
        """Uploads arrive in chunks into a hidden temporary file beside the
        target, renamed over it after the last chunk: a reader never sees a
        half-written file and a failed upload leaves the old one."""
        parts = split_path(path)
        if not parts:
            raise FileError("invalidPath", "a file name is required")
        try:
            content = base64.b64decode(data, validate=True)
        except (ValueError, TypeError):
            raise FileError("invalidPath", "the data is not valid base64") from None
        if first:
            self.abort_upload()
            dir_fd = self._open_dir(parts[:-1], path, create=True)
            temporary = UPLOAD_PREFIX + secrets.token_hex(8)
            try:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644, dir_fd=dir_fd)
            except OSError as e:
                os.close(dir_fd)
                raise _os_error(e, path) from None
            self.upload = (dir_fd, temporary, parts[-1], fd, path)
        elif self.upload is None or self.upload[4] != path:
            raise FileError("invalidPath", f"no upload of {path!r} is in progress")
        dir_fd, temporary, final, fd, _ = self.upload
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
            if not last:
                return None
            os.close(fd)
            self.upload = (dir_fd, temporary, final, -1, path)
            if stat.S_ISDIR(_lstat_mode(dir_fd, final)):
                raise FileError("isDirectory", f"{path!r} is a directory")
            os.rename(temporary, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            entry = self._entry(dir_fd, final, "/".join(parts[:-1]))
            os.close(dir_fd)
            self.upload = None
            return entry
        except OSError as e:
            self.abort_upload()
            raise _os_error(e, path) from None
        except FileError:
            self.abort_upload()
            raise

    def abort_upload(self):
        if self.upload is None:
            return
        dir_fd, temporary, _, fd, _ = self.upload
        self.upload = None
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(temporary, dir_fd=dir_fd)
        except OSError:
            pass
        os.close(dir_fd)

    def delete(self, path):
        parts = split_path(path)
        if not parts:
            raise FileError("invalidPath", "the data directory itself cannot be deleted")
        dir_fd = self._open_dir(parts[:-1], path)
        try:
            if stat.S_ISDIR(_lstat_mode(dir_fd, parts[-1])):
                os.rmdir(parts[-1], dir_fd=dir_fd)
            else:
                os.unlink(parts[-1], dir_fd=dir_fd)
        except OSError as e:
            raise _os_error(e, path) from None
        finally:
            os.close(dir_fd)


def _lstat_mode(dir_fd, name):
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return 0
