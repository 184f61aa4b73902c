"""TCP forwarding from inside a network namespace to this machine's loopback.

A compute host of the tests is a network namespace: its processes (Neutron's OVS agent) see only its
own loopback, while RabbitMQ listens on the machine's. Rather than give the machine's namespace an
interface towards the host (it must never be changed), this process listens inside the namespace
and connects, for each accepted connection, from the machine's namespace: a socket stays in the
namespace it was made in, so one process serves both sides.

Usage: netns-forward.py NETNS_PATH LISTEN_PORT:TARGET_PORT ...   (127.0.0.1 on both sides)
Prints "ready" once every listener is bound. Ends with its parent's SIGKILL/SIGTERM.
"""
import asyncio
import ctypes
import os
import socket
import sys

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), 'setns %s' % path)
    finally:
        os.close(fd)


def listeners(netns, ports):
    """Sockets bound inside `netns`; this thread returns to its own namespace afterwards."""
    home = os.open('/proc/thread-self/ns/net', os.O_RDONLY)
    socks = []
    try:
        setns(netns)
        for listen, _ in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(('127.0.0.1', listen))
            s.listen(128)
            s.setblocking(False)
            socks.append(s)
    finally:
        if libc.setns(home, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), 'setns back')
        os.close(home)
    return socks


async def pump(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


def handler(target):
    async def serve(reader, writer):
        try:
            r2, w2 = await asyncio.open_connection('127.0.0.1', target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pump(reader, w2), pump(r2, writer))
    return serve


async def main():
    netns = sys.argv[1]
    ports = [tuple(int(x) for x in arg.split(':')) for arg in sys.argv[2:]]
    servers = []
    for sock, (_, target) in zip(listeners(netns, ports), ports):
        servers.append(await asyncio.start_server(handler(target), sock=sock))
    print('ready', flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


asyncio.run(main())
