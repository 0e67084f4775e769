"""Echo server on Python 3.11's asyncio, with a Protocol (the fast path).

    python3 bench/servers/py_asyncio_echo.py [PORT]    (0: the system picks)

Prints "port N" once listening, then serves until killed.  asyncio sets
TCP_NODELAY on its TCP transports itself.
"""
import asyncio
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port, backlog=1024,
                                      reuse_address=True)
    print("port", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
