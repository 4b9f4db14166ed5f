#!/usr/bin/python3
"""Makes TCP services of this network namespace appear on the loopback of another one.

    netns-forward.py NETNS_FILE PIDFILE PORT...

Listens on 127.0.0.1:PORT inside the network namespace NETNS_FILE (e.g. /proc/PID/ns/net of a
hypervisor stand-in's holder) and relays each connection to 127.0.0.1:PORT here, the same
address and port on both sides. Used by scripts/openstack.sh so that nova-compute and QEMU
inside a hypervisor stand-in reach the broker, the OpenStack APIs and Ceph at the addresses
this side uses: Ceph's OSD map names 127.0.0.1:PORT, which no other address could stand for.
The listening sockets are made inside the namespace (setns), the outgoing ones here: one
process, no listener on this side. Runs until SIGTERM; a port it cannot reach here just
closes the accepted connection.
"""
import asyncio
import ctypes
import os
import signal
import socket
import sys

CLONE_NEWNET = 0x40000000
CHUNK = 256 * 1024


def setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def listeners(netns_file, ports):
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(netns_file, os.O_RDONLY)
    socks = []
    setns(target)
    try:
        for port in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(128)
            s.setblocking(False)
            socks.append((port, s))
    finally:
        setns(own)
        os.close(target)
        os.close(own)
    return socks


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()


async def relay(port, in_reader, in_writer):
    try:
        out_reader, out_writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        in_writer.close()
        return
    for w in (in_writer, out_writer):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await asyncio.gather(pipe(in_reader, out_writer), pipe(out_reader, in_writer))
    in_writer.close()
    out_writer.close()


async def main(netns_file, pidfile, ports):
    servers = []
    for port, sock in listeners(netns_file, ports):
        servers.append(await asyncio.start_server(
            lambda r, w, p=port: relay(p, r, w), sock=sock))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Written once every port listens: whoever waits for the file may connect at once.
    with open(pidfile + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(pidfile + ".tmp", pidfile)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]))
