#!/usr/bin/env python3
"""A TCP relay for the chaos soak: forwards LISTEN_PORT -> TARGET_PORT on
127.0.0.1 for each pair given. SIGUSR1 cuts the network: nothing is forwarded
in either direction and new connections hang (as a cut link does; the relay's
own kernel still acknowledges what it receives, so this is not a packet-level
blackhole). SIGUSR2 heals it: every connection that lived through the cut is
reset, as a router that lost its state would, and forwarding resumes."""
import asyncio, signal, socket, struct, sys

cut = asyncio.Event()  # set while the network is cut
conns = set()


async def pump(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            while cut.is_set():
                await asyncio.sleep(0.05)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


def reset(writer):
    sock = writer.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


async def handle(client_r, client_w, target_port):
    while cut.is_set():
        await asyncio.sleep(0.05)
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        reset(client_w)
        return
    pair = (client_w, server_w)
    conns.add(pair)
    try:
        await asyncio.gather(pump(client_r, server_w), pump(server_r, client_w))
    finally:
        conns.discard(pair)


def heal():
    for a, b in list(conns):
        reset(a)
        reset(b)
    conns.clear()
    cut.clear()


async def main():
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, cut.set)
    loop.add_signal_handler(signal.SIGUSR2, heal)
    servers = []
    for pair in sys.argv[1:]:
        listen, target = (int(x) for x in pair.split(":"))
        servers.append(await asyncio.start_server(
            lambda r, w, t=target: handle(r, w, t), "127.0.0.1", listen))
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


asyncio.run(main())
