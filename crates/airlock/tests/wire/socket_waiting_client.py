"""A PostgreSQL client that waits on the socket, not on its TLS library.

Some drivers read at most 8 KiB at a time from their TLS socket and, before
each read, wait with select() until the socket is readable. Bytes of a TLS
record that the library has already decrypted but not yet handed out are
invisible to select(): if the server's last record was larger than what the
driver read, the driver waits for bytes that never come. PostgreSQL's
records are at most 8 KiB, so against PostgreSQL this never happens.

Usage: socket_waiting_client.py ROUNDS SQL [name=value ...]
Connection from PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD and
PGSSLROOTCERT (verify-full); extra name=value pairs go into the startup
packet. Prints one line per round: "ok <bytes>" or "hang <pending bytes>";
with ROUNDS 0 it runs SQL once and prints the first column of each row.
"""

import base64
import hashlib
import hmac
import os
import select
import socket
import ssl
import struct
import sys

READ = 8192
WAIT = 5.0


class Hang(Exception):
    pass


class Client:
    def __init__(self, params):
        host, port = os.environ["PGHOST"], int(os.environ["PGPORT"])
        raw = socket.create_connection((host, port))
        raw.sendall(struct.pack("!ii", 8, 80877103))
        if raw.recv(1) != b"S":
            raise SystemExit("the server refused TLS")
        ctx = ssl.create_default_context(cafile=os.environ["PGSSLROOTCERT"])
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.buf = b""
        body = struct.pack("!i", 196608)
        for k, v in [("user", os.environ["PGUSER"]), ("database", os.environ["PGDATABASE"])] + params:
            body += k.encode() + b"\0" + v.encode() + b"\0"
        body += b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        self.login(os.environ["PGPASSWORD"].encode())

    def fill(self):
        # Wait on the socket, as the drivers in question do.
        readable, _, _ = select.select([self.sock], [], [], WAIT)
        if not readable:
            raise Hang(self.sock.pending())
        data = self.sock.recv(READ)
        if not data:
            raise SystemExit("the server closed the connection")
        self.buf += data

    def message(self):
        while len(self.buf) < 5:
            self.fill()
        tag, length = self.buf[0:1], struct.unpack("!i", self.buf[1:5])[0]
        while len(self.buf) < 1 + length:
            self.fill()
        body, self.buf = self.buf[5 : 1 + length], self.buf[1 + length :]
        if tag == b"E":
            raise SystemExit("server error: " + body.decode(errors="replace"))
        return tag, body

    def send(self, tag, body):
        self.sock.sendall(tag + struct.pack("!i", len(body) + 4) + body)

    def login(self, password):
        # SCRAM-SHA-256 without channel binding (RFC 5802 / 7677).
        tag, body = self.message()
        assert tag == b"R" and struct.unpack("!i", body[:4])[0] == 10, (tag, body)
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = "n=,r=" + nonce
        first = ("n,," + first_bare).encode()
        self.send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
        tag, body = self.message()
        assert struct.unpack("!i", body[:4])[0] == 11, body
        server_first = body[4:].decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", password, base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored = hashlib.sha256(client_key).digest()
        final_bare = "c=biws,r=" + attrs["r"]
        auth = ",".join([first_bare, server_first, final_bare]).encode()
        signature = hmac.new(stored, auth, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.send(b"p", (final_bare + ",p=" + base64.b64encode(proof).decode()).encode())
        while True:
            tag, _ = self.message()
            if tag == b"Z":
                return

    def query(self, sql):
        self.send(b"Q", sql.encode() + b"\0")
        rows, size = [], 0
        while True:
            tag, body = self.message()
            size += len(body)
            if tag == b"D":
                (n,) = struct.unpack("!h", body[:2])
                (length,) = struct.unpack("!i", body[2:6])
                rows.append(body[6 : 6 + length].decode(errors="replace") if n and length >= 0 else None)
            if tag == b"Z":
                return rows, size


def main():
    rounds, sql = int(sys.argv[1]), sys.argv[2]
    params = [tuple(a.split("=", 1)) for a in sys.argv[3:]]
    client = Client(params)
    if rounds == 0:
        for row in client.query(sql)[0]:
            print(row)
        return
    for _ in range(rounds):
        try:
            _, size = client.query(sql)
            print("ok", size, flush=True)
        except Hang as h:
            print("hang", h.args[0], flush=True)
            return


if __name__ == "__main__":
    main()
