#!/usr/bin/env python3
"""Guest end of the streams port (docs/agent-protocol.md, Streams port).

The host multiplexes TCP connections to ports inside the guest over one byte
stream; this program connects each to 127.0.0.1:port and pumps it. One
thread, one selector, non-blocking sockets: a stream that cannot make
progress never holds up another, and flow-control windows bound what is
buffered per stream, whichever side is slow.

    sessiond_streams.py --device /dev/vportNpM   (in a microVM)
    sessiond_streams.py --fd N                   (tests: an inherited socket)

With --fd the program exits when the host closes the channel. A
virtio-serial port instead reads as end of file (and polls as hung up)
whenever the host end is not connected, so with --device a host that goes
away ends every stream and the program waits for the next host on the
same, still open, device.
"""

import argparse
import collections
import errno
import itertools
import os
import select
import selectors
import socket
import struct
import sys
import time

OPEN, OPENED, REFUSED, DATA, EOF, CLOSE, CREDIT = range(1, 8)
# Length of the rest of the frame, type, stream id.
HEADER = struct.Struct(">IBI")
ID_AND_TYPE = 5
MAX_DATA = 64 << 10
WINDOW = 256 << 10
MAX_REASON = 1024
READ_CHUNK = 256 << 10
# How often a virtio-serial port is checked for a host end being connected.
HOST_POLL_S = 0.05
# More buffers than this in one writev only cost the kernel a longer copy loop.
MAX_IOV = 64


class ProtocolError(Exception):
    """The host broke the protocol: nothing more it sends can be trusted."""


class HostGone(Exception):
    """The host end of the channel closed or was reset."""


# Errors of a channel whose host went away; any other is the device failing.
GONE_ERRORS = (BrokenPipeError, ConnectionResetError)


def log(message):
    print(f"sessiond_streams: {message}", file=sys.stderr, flush=True)


def frame(kind, stream_id, payload=b""):
    return HEADER.pack(ID_AND_TYPE + len(payload), kind, stream_id) + payload


def refusal(port, err):
    if err == errno.ECONNREFUSED:
        return f"connection refused by port {port} in the sandbox"
    return f"connecting to port {port} in the sandbox failed: {os.strerror(err)}"


class Stream:
    def __init__(self, stream_id, port, sock):
        self.id = stream_id
        self.port = port
        self.sock = sock
        self.connecting = True
        self.credit = WINDOW  # DATA the host still accepts from us
        self.window = WINDOW  # DATA we still accept from the host
        self.pending = collections.deque()  # host DATA not yet written to sock
        self.eof_in = False  # the host sends no more DATA
        self.eof_out = False  # we sent EOF
        self.shut = False  # sock's write side is shut down
        self.close_sent = False
        self.close_received = False
        self.events = 0


class Mux:
    """One host connection: its streams end with it."""

    def __init__(self, fd):
        self.fd = fd
        self.selector = selectors.DefaultSelector()
        self.selector.register(fd, selectors.EVENT_READ, None)
        self.channel_events = selectors.EVENT_READ
        self.inbuf = bytearray()
        self.out = collections.deque()
        self.streams = {}

    def run(self):
        """Serves until the host goes away; ProtocolError if it misbehaves."""
        try:
            while True:
                for key, events in self.selector.select():
                    stream = key.data
                    if stream is None:
                        if events & selectors.EVENT_WRITE:
                            self.flush()
                        if events & selectors.EVENT_READ:
                            self.read_channel()
                    elif stream.sock is not None:  # an earlier event this round may have closed it
                        self.on_local(stream, events)
        except HostGone:
            return
        finally:
            for stream in list(self.streams.values()):
                self.drop_socket(stream, reset=True)
            self.streams.clear()
            self.selector.close()

    # The channel.

    def read_channel(self):
        try:
            data = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except GONE_ERRORS as e:
            raise HostGone() from e
        if not data:
            raise HostGone()
        self.inbuf += data
        offset = 0
        view = memoryview(self.inbuf)
        try:
            while len(view) - offset >= HEADER.size:
                length, kind, stream_id = HEADER.unpack_from(view, offset)
                if length < ID_AND_TYPE or length > ID_AND_TYPE + MAX_DATA:
                    raise ProtocolError(f"frame length {length} is out of range")
                end = offset + 4 + length
                if end > len(view):
                    break
                self.on_frame(kind, stream_id, bytes(view[offset + HEADER.size:end]))
                offset = end
        finally:
            view.release()
            del self.inbuf[:offset]

    def send(self, data):
        self.out.append(data)
        self.flush()

    def flush(self):
        while self.out:
            try:
                buffers = self.out if len(self.out) <= MAX_IOV else list(itertools.islice(self.out, MAX_IOV))
                written = os.writev(self.fd, buffers)
            except BlockingIOError:
                break
            except GONE_ERRORS as e:
                raise HostGone() from e
            while written:
                head = self.out[0]
                if written >= len(head):
                    written -= len(head)
                    self.out.popleft()
                else:
                    self.out[0] = memoryview(head)[written:]
                    written = 0
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.out else 0)
        if wanted != self.channel_events:
            self.selector.modify(self.fd, wanted, None)
            self.channel_events = wanted

    # Frames from the host.

    def on_frame(self, kind, stream_id, payload):
        if kind == OPEN:
            return self.on_open(stream_id, payload)
        if kind not in (DATA, EOF, CLOSE, CREDIT):
            raise ProtocolError(f"the host sent a frame of type {kind}")
        stream = self.streams.get(stream_id)
        if stream is None:
            raise ProtocolError(f"the host sent a frame of type {kind} for unknown stream {stream_id}")
        if stream.close_sent:
            # Sent before the host saw our CLOSE; its CLOSE ends the stream.
            if kind == CLOSE:
                del self.streams[stream_id]
            return
        if stream.close_received or (stream.connecting and kind != CLOSE):
            raise ProtocolError(f"the host sent a frame of type {kind} on stream {stream_id} in the wrong state")
        if kind == DATA:
            if stream.eof_in or len(payload) > stream.window:
                raise ProtocolError(f"stream {stream_id}: DATA after EOF or over the window")
            stream.window -= len(payload)
            if payload:
                stream.pending.append(payload)
        elif kind == EOF:
            if stream.eof_in or payload:
                raise ProtocolError(f"stream {stream_id}: a second or malformed EOF")
            stream.eof_in = True
        elif kind == CREDIT:
            if len(payload) != 4:
                raise ProtocolError(f"stream {stream_id}: CREDIT payload of {len(payload)} bytes")
            stream.credit += int.from_bytes(payload, "big")
            if stream.credit > WINDOW:
                raise ProtocolError(f"stream {stream_id}: credit over the window")
        else:  # CLOSE
            stream.close_received = True
            if not stream.eof_in:
                # A reset: what the host sent is dropped, as TCP drops it.
                self.drop_socket(stream, reset=True)
                self.send_close(stream)
        self.progress(stream)

    def on_open(self, stream_id, payload):
        if stream_id in self.streams or len(payload) != 2:
            raise ProtocolError(f"OPEN of stream {stream_id} reuses its id or is malformed")
        port = int.from_bytes(payload, "big")
        if port == 0:
            return self.send(frame(REFUSED, stream_id, b"port 0 is not a port one can connect to"))
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as e:  # out of descriptors or memory: this stream fails, not the others
            return self.send(frame(REFUSED, stream_id, refusal(port, e.errno).encode()[:MAX_REASON]))
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            return self.send(frame(REFUSED, stream_id, refusal(port, err).encode()[:MAX_REASON]))
        stream = Stream(stream_id, port, sock)
        self.streams[stream_id] = stream
        self.update(stream)  # the connect's outcome arrives as writability

    # The local sockets.

    def on_local(self, stream, events):
        if stream.connecting:
            err = stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.drop_socket(stream, reset=False)
                del self.streams[stream.id]
                self.send(frame(REFUSED, stream.id, refusal(stream.port, err).encode()[:MAX_REASON]))
                return
            stream.connecting = False
            self.send(frame(OPENED, stream.id))
        else:
            try:
                if events & selectors.EVENT_WRITE and stream.pending:
                    self.write_local(stream)
                if events & selectors.EVENT_READ and stream.sock is not None:
                    self.read_local(stream)
            except OSError:  # reset or broken pipe: the connection is gone both ways
                self.drop_socket(stream, reset=True)
                self.send_close(stream)
        self.progress(stream)

    def write_local(self, stream):
        written = 0
        while stream.pending:
            head = stream.pending[0]
            try:
                n = stream.sock.send(head)
            except BlockingIOError:
                break
            written += n
            if n < len(head):
                stream.pending[0] = memoryview(head)[n:]
                break
            stream.pending.popleft()
        stream.window += written
        # No credit once the host said it sends nothing more.
        if written and not stream.eof_in:
            self.send(frame(CREDIT, stream.id, written.to_bytes(4, "big")))

    def read_local(self, stream):
        try:
            data = stream.sock.recv(min(MAX_DATA, stream.credit))
        except BlockingIOError:
            return
        if data:
            stream.credit -= len(data)
            self.send(frame(DATA, stream.id, data))
        else:
            stream.eof_out = True
            self.send(frame(EOF, stream.id))

    def progress(self, stream):
        """Moves a stream on after anything happened to it."""
        if stream.sock is not None and not stream.pending and stream.eof_in:
            if not stream.shut:
                stream.shut = True
                try:
                    stream.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            # Both ways done, or the host ended it after its last byte.
            if stream.eof_out or stream.close_received:
                self.drop_socket(stream, reset=False)
                self.send_close(stream)
        if stream.close_sent and stream.close_received:
            self.streams.pop(stream.id, None)
        else:
            self.update(stream)

    def update(self, stream):
        if stream.sock is None:
            return
        wanted = 0
        if stream.connecting or stream.pending:
            wanted |= selectors.EVENT_WRITE
        if not stream.connecting and not stream.eof_out and not stream.close_received and stream.credit > 0:
            wanted |= selectors.EVENT_READ
        if wanted == stream.events:
            return
        if not stream.events:
            self.selector.register(stream.sock, wanted, stream)
        elif not wanted:
            self.selector.unregister(stream.sock)
        else:
            self.selector.modify(stream.sock, wanted, stream)
        stream.events = wanted

    def send_close(self, stream):
        if not stream.close_sent:
            stream.close_sent = True
            self.send(frame(CLOSE, stream.id))

    def drop_socket(self, stream, reset):
        if stream.sock is None:
            return
        if stream.events:
            self.selector.unregister(stream.sock)
            stream.events = 0
        if reset:
            # An RST, so the server sees the connection fail, not end.
            try:
                stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        stream.sock.close()
        stream.sock = None
        stream.pending.clear()


def wait_for_host(fd):
    """A virtio-serial port polls as hung up until the host end connects."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        events = sum(e for _, e in poller.poll(0))
        if events & (select.POLLERR | select.POLLNVAL):
            raise OSError(errno.EIO, "the streams port failed")
        if not events & select.POLLHUP:
            return
        time.sleep(HOST_POLL_S)


def serve(fd, reconnect):
    os.set_blocking(fd, False)
    while True:
        if reconnect:
            wait_for_host(fd)
        try:
            Mux(fd).run()
        except OSError as e:
            log(f"the channel failed: {e}")
            return 1
        except ProtocolError as e:
            log(f"closing the channel: {e}")
            if not reconnect:
                return 2
            drain_until_host_leaves(fd)
            continue
        if not reconnect:
            return 0
        log("the host went away; streams closed, waiting for it to come back")


def drain_until_host_leaves(fd):
    """After a protocol error the byte stream cannot be resynchronised; the
    next host connection starts a fresh one."""
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    try:
        while True:
            selector.select()
            try:
                if not os.read(fd, READ_CHUNK):
                    return
            except BlockingIOError:
                continue
            except GONE_ERRORS:
                return
    finally:
        selector.close()


def main():
    parser = argparse.ArgumentParser(description="sessiond streams port: TCP streams to the host")
    transport = parser.add_mutually_exclusive_group(required=True)
    transport.add_argument("--fd", type=int, help="connected stream socket inherited from the host")
    transport.add_argument("--device", help="virtio-serial port device (/dev/vportNpM)")
    args = parser.parse_args()
    if args.fd is not None:
        os.set_inheritable(args.fd, False)
        return serve(args.fd, reconnect=False)
    fd = os.open(args.device, os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY)
    return serve(fd, reconnect=True)


if __name__ == "__main__":
    sys.exit(main())
