"""What the beanstalkd test scripts share: a free port, waiting for a server to listen,
and a connection that reads whole replies (a line, and the chunk of OK, RESERVED, FOUND)."""

import socket
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(port, proc, name):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode} before serving")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{name} did not listen on {port} within 60 s")


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("closed")
        self.buf += chunk

    def reply(self):
        """One reply: its line, and for OK/RESERVED/FOUND its chunk (else None)."""
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        words = line.split(b" ")
        if words[0] in (b"OK", b"RESERVED", b"FOUND"):
            n = int(words[-1])
            while len(self.buf) < n + 2:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n + 2:]
            return (line.decode(), body)
        return (line.decode(), None)

    def call(self, data):
        """Sends a command and reads its reply: (words of the line, chunk or None)."""
        self.send(data)
        line, body = self.reply()
        return line.encode().split(b" "), body

    def closed(self):
        try:
            self.sock.settimeout(5)
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self):
        self.sock.close()
