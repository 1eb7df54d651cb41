#!/usr/bin/env python3
"""The reference node's application: a small HTTP service behind nginx that keeps a
counter in Redis and needs PostgreSQL, as many real apps do. Python's standard library
only, so the reference node needs nothing but Debian packages.

GET /        counts the visit in Redis: {"app": "reference", "visits": N}
GET /health  200 {"status": "ok"} when Redis takes its password and answers PING and
             PostgreSQL answers on its port (each given 0.2 s); else 503 naming what failed.

Its Redis password is read from --redis-credentials at every request (a rotated or
restored file is used at once); SIGHUP is answered by re-reading it too, and is harmless.
"""
import argparse
import json
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEPENDENCY_TIMEOUT_S = 0.2


def redis_command(addr, password_file, *words):
    """One command to Redis after AUTH with the password in the file; its reply line."""
    with open(password_file, encoding="utf-8") as f:
        password = f.read().strip()
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=DEPENDENCY_TIMEOUT_S) as s:
        reader = s.makefile("rb")

        def send(*args):
            payload = f"*{len(args)}\r\n".encode()
            for a in args:
                b = a.encode()
                payload += b"$%d\r\n%s\r\n" % (len(b), b)
            s.sendall(payload)
            return reader.readline().decode(errors="replace").strip()

        auth = send("AUTH", password)
        if not auth.startswith("+OK"):
            raise PermissionError(f"redis refused the app's credentials: {auth}")
        return send(*words)


def postgres_answers(addr):
    """PostgreSQL answers an SSLRequest with one byte (N or S): it accepts connections."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=DEPENDENCY_TIMEOUT_S) as s:
        s.settimeout(DEPENDENCY_TIMEOUT_S)
        s.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
        answer = s.recv(1)
        if answer not in (b"N", b"S"):
            raise ConnectionError(f"postgres answered {answer!r}")


def make_handler(args):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status, body):
            data = (json.dumps(body) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                failed = {}
                try:
                    pong = redis_command(args.redis, args.redis_credentials, "PING")
                    if pong != "+PONG":
                        failed["redis"] = f"answered {pong}"
                except (OSError, PermissionError) as e:
                    failed["redis"] = str(e)
                try:
                    postgres_answers(args.postgres)
                except OSError as e:
                    failed["postgres"] = str(e)
                if failed:
                    self.reply(503, {"status": "degraded", "failed": failed})
                else:
                    self.reply(200, {"status": "ok"})
            elif self.path == "/":
                try:
                    visits = redis_command(args.redis, args.redis_credentials, "INCR", "visits")
                    self.reply(200, {"app": "reference", "visits": int(visits.lstrip(":"))})
                except (OSError, PermissionError, ValueError) as e:
                    self.reply(503, {"app": "reference", "error": str(e)})
            else:
                self.reply(404, {"error": "not found"})

        def log_message(self, fmt, *a):
            pass

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True, help="HOST:PORT")
    p.add_argument("--redis", required=True, help="HOST:PORT")
    p.add_argument("--redis-credentials", required=True, help="file holding Redis's password")
    p.add_argument("--postgres", required=True, help="HOST:PORT")
    args = p.parse_args()
    host, port = args.listen.rsplit(":", 1)
    signal.signal(signal.SIGHUP, lambda *_: None)
    server = ThreadingHTTPServer((host, int(port)), make_handler(args))
    server.daemon_threads = True
    print(f"app listening on {args.listen}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
