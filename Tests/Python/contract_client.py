#!/usr/bin/env python3
"""An independent client of wire protocol v1: Python's protobuf runtime over code that
protoc generates from the project's .proto files, a plain TCP socket, and a JWT it signs
itself with the standard library. No Swift code is involved on this side.

  NEST_AUTH_SECRET=... contract_client.py --port PORT

Checks, against a server serving nest.health.v1.Health and nest.testing.v1.Echo behind the
auth interceptor: the HELLO exchange, Health/Check without credentials, a protected call
with a valid token, and the same call refused UNAUTHENTICATED without one. Exits 0 when
every check holds and prints one line per check.
"""
import argparse
import base64
import hashlib
import hmac
import importlib
import json
import os
import pathlib
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_modules(workdir):
    roots = [ROOT / "proto", ROOT / "Tests" / "Protos"]
    for root in roots:
        protos = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.proto"))
        subprocess.run(["protoc", f"-I{root}", f"--python_out={workdir}", *protos], check=True)
    for directory, _, _ in os.walk(workdir):
        pathlib.Path(directory, "__init__.py").touch()
    sys.path.insert(0, str(workdir))
    frame = importlib.import_module("nest.wire.v1.frame_pb2")
    health = importlib.import_module("nest.health.v1.health_pb2")
    testing = importlib.import_module("nest.testing.v1.testing_pb2")
    return frame, health, testing


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_token(secret, subject, role, lifetime=300):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": subject, "role": role, "iss": "nest", "exp": int(time.time()) + lifetime}
    payload = b64url(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


class Connection:
    def __init__(self, port, frame_module):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.pb = frame_module

    def send(self, frame):
        body = frame.SerializeToString()
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def receive(self):
        header = self._exactly(4)
        (length,) = struct.unpack(">I", header)
        frame = self.pb.Frame()
        frame.ParseFromString(self._exactly(length))
        return frame

    def _exactly(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        return data

    def call(self, call_id, method, request, token=None):
        frame = self.pb.Frame(call_id=call_id, kind=self.pb.REQUEST, method=method,
                              timeout_ms=5000, payload=request.SerializeToString())
        if token is not None:
            frame.metadata.add(key="authorization", text=f"Bearer {token}")
        self.send(frame)
        response = self.receive()
        assert response.kind == self.pb.RESPONSE and response.call_id == call_id, response
        return response


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    secret = os.environ["NEST_AUTH_SECRET"]
    with tempfile.TemporaryDirectory() as workdir:
        frame_pb, health_pb, testing_pb = load_modules(workdir)
        connection = Connection(args.port, frame_pb)
        connection.send(frame_pb.Frame(kind=frame_pb.HELLO,
                                       hello=frame_pb.Hello(version=1, peer="python-contract-client/1",
                                                            max_frame_bytes=4 << 20)))
        hello = connection.receive()
        assert hello.kind == frame_pb.HELLO and hello.hello.version == 1, hello
        print(f"hello: server {hello.hello.peer}, max {hello.hello.max_concurrent_calls} calls")

        response = connection.call(1, "/nest.health.v1.Health/Check", health_pb.HealthCheckRequest())
        assert response.status.code == 0, response.status
        check = health_pb.HealthCheckResponse()
        check.ParseFromString(response.payload)
        assert check.status == health_pb.SERVING, check
        print("health: SERVING without credentials")

        token = sign_token(secret, "python-client", "customer")
        response = connection.call(2, "/nest.testing.v1.Echo/Echo", testing_pb.EchoRequest(text="whoami"), token)
        assert response.status.code == 0, response.status
        echo = testing_pb.EchoResponse()
        echo.ParseFromString(response.payload)
        assert echo.text == "python-client as customer", echo
        print(f"protected call with own token: {echo.text}")

        response = connection.call(3, "/nest.testing.v1.Echo/Echo", testing_pb.EchoRequest(text="whoami"))
        assert response.status.code == 16, response.status
        print(f"without a token: UNAUTHENTICATED ({response.status.message})")


if __name__ == "__main__":
    main()
