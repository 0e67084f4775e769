"""Echo server on Python 3.11's asyncore (dispatcher_with_send), with poll().

    python3 bench/servers/py_asyncore_echo.py [PORT]    (0: the system picks)

Prints "port N" once listening, then serves until killed.  asyncore is
deprecated since 3.6 (removed in 3.12); the DeprecationWarning is silenced.
"""
import socket
import sys
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import asyncore


class Echo(asyncore.dispatcher_with_send):
    def handle_read(self):
        data = self.recv(65536)
        if data:
            self.send(data)

    def handle_close(self):
        self.close()


class Server(asyncore.dispatcher):
    def __init__(self, host, port):
        super().__init__()
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(1024)

    def handle_accepted(self, sock, addr):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Echo(sock)


server = Server("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0)
print("port", server.socket.getsockname()[1], flush=True)
asyncore.loop(timeout=30, use_poll=True)
