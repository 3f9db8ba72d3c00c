"""Frames shared by the agent and its worker: a 4-byte big-endian length, then
that many bytes of UTF-8 JSON (docs/agent-protocol.md)."""

import json
import os

MAX_FRAME_BYTES = 64 << 20


class FrameError(Exception):
    """The peer broke framing; the stream cannot be resynchronised."""


def encode_frame(message, verbatim=None):
    """`verbatim` names a string field the caller knows needs no JSON
    escaping (base64 file data): it is spliced in as is, which is several
    times faster than encoding megabytes of it."""
    # allow_nan=False: NaN is not JSON and the daemon's parser rejects it.
    if verbatim is not None:
        rest = {key: value for key, value in message.items() if key != verbatim}
        head = json.dumps(rest, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        body = b"".join((head[:-1].encode("utf-8"), b',"', verbatim.encode("ascii"), b'":"',
                         message[verbatim].encode("ascii"), b'"}'))
    else:
        body = json.dumps(message, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(body)} bytes exceeds the limit")
    return len(body).to_bytes(4, "big") + body


def write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FrameReader:
    """Accumulates bytes read elsewhere (the agent polls several fds) and
    splits them into frame bodies."""

    def __init__(self, limit=MAX_FRAME_BYTES):
        self.limit = limit
        self.buffer = bytearray()

    def feed(self, data):
        self.buffer += data

    def next_body(self):
        """The next complete frame body (bytes), or None if more is needed."""
        if len(self.buffer) < 4:
            return None
        length = int.from_bytes(self.buffer[:4], "big")
        if length > self.limit:
            raise FrameError(f"frame of {length} bytes exceeds the limit of {self.limit}")
        if len(self.buffer) < 4 + length:
            return None
        body = bytes(self.buffer[4:4 + length])
        del self.buffer[:4 + length]
        return body


def read_frame_blocking(fd, reader):
    """Blocks until a whole frame arrived; None at end of stream."""
    while True:
        body = reader.next_body()
        if body is not None:
            return json.loads(body.decode("utf-8"))
        data = os.read(fd, 1 << 16)
        if not data:
            return None
        reader.feed(data)
