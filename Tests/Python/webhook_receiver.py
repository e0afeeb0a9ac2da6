#!/usr/bin/env python3
"""A webhook receiver written apart from the Swift code: Python's standard library HTTP
server, checking each delivery the way the Standard Webhooks specification says (its own
HMAC-SHA256 over "id.timestamp.body" with the secret's base64 key, a timestamp within five
minutes), and reading the body as a nest.events.v1.Event with protobuf's own proto3 JSON
parser over code protoc generates from the project's .proto files.

  webhook_receiver.py --port 0 --port-file F --secrets FILE --out FILE [--mode ok|fail-first|slow-first|
                      redirect|endless|hang|fail] [--count N] [--delay S] [--provider]

FILE of --secrets is JSON {"/path": "whsec_..."}, read at each request (the test writes it
after creating its webhooks). Each accepted delivery is one JSON line in --out:
{"path", "webhook_id", "type", "subject", "sequence", "body"}. Prints "listening on PORT".
Modes: ok answers 204; fail-first answers 500 to the first --count requests; slow-first sleeps
--delay seconds before answering the first --count; redirect answers 302 to --location;
endless streams a body that never ends; hang never answers; fail always answers 503.

With --provider it is a provider's fulfilment endpoint instead: each body is
{"action": "create"|"renew"|..., "instance": a nest.entitlement.v1.ServiceInstance as proto3
JSON}, recorded with the action as "type" and "instance/<id>" as "subject"; a create is answered
200 {"logon_url": "https://provider.example/<id>", "facts": {"admin_user": "admin-<id>"}};
the actions of --fail-actions are answered 503.
"""
import argparse
import base64
import hashlib
import hmac
import http.server
import importlib
import json
import os
import pathlib
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_event_type(workdir):
    root = ROOT / "proto"
    protos = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.proto"))
    subprocess.run(["protoc", f"-I{root}", f"--python_out={workdir}", *protos], check=True)
    for directory, _, _ in os.walk(workdir):
        pathlib.Path(directory, "__init__.py").touch()
    sys.path.insert(0, str(workdir))
    from google.protobuf import json_format
    events = importlib.import_module("nest.events.v1.events_pb2")
    entitlement = importlib.import_module("nest.entitlement.v1.entitlement_pb2")
    return events.Event, entitlement.ServiceInstance, json_format


def verify(secret, headers, body):
    """None when the delivery is signed with `secret`, else why not."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    if abs(time.time() - int(timestamp)) > 300:
        return "timestamp too far from now"
    key = base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return None
    return "no signature matches"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secrets", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", default="ok")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0)
    parser.add_argument("--location", default="http://127.0.0.1:9/elsewhere")
    parser.add_argument("--port-file", help="written with the port once listening")
    parser.add_argument("--provider", action="store_true", help="answer as a fulfilment endpoint")
    parser.add_argument("--fail-actions", default="", help="with --provider: comma-separated actions answered 503")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="nest-webhook-receiver-")
    event_type, instance_type, json_format = load_event_type(workdir)
    lock = threading.Lock()
    state = {"requests": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def answer(self, status, text=""):
            data = text.encode()
            self.send_response(status)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with lock:
                state["requests"] += 1
                number = state["requests"]
            if args.mode == "hang":
                time.sleep(3600)
                return
            if args.mode == "redirect":
                self.send_response(302)
                self.send_header("location", args.location)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            if args.mode == "endless":
                self.send_response(200)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                chunk = b"x" * 65536
                try:
                    while True:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except (BrokenPipeError, ConnectionResetError):
                    return
            if args.mode == "fail":
                self.answer(503, "always failing")
                return
            if args.mode == "fail-first" and number <= args.count:
                self.answer(500, f"failing on purpose ({number})")
                return
            if args.mode == "slow-first" and number <= args.count:
                time.sleep(args.delay)
            secrets = json.loads(pathlib.Path(args.secrets).read_text())
            secret = secrets.get(self.path)
            if secret is None:
                self.answer(404, "no webhook at this path")
                return
            problem = verify(secret, {k.lower(): v for k, v in self.headers.items()}, body)
            if problem:
                self.answer(401, problem)
                return
            if args.provider:
                self.fulfil(body)
                return
            try:
                event = json_format.Parse(body.decode(), event_type())
            except Exception as error:  # the body is not an Event as proto3 JSON
                self.answer(400, f"not a nest.events.v1.Event: {error}")
                return
            record = {
                "path": self.path,
                "webhook_id": self.headers["webhook-id"],
                "type": event.type,
                "subject": event.subject,
                "sequence": event.sequence,
                "body": body.decode(),
            }
            if record["webhook_id"] != event.id:
                self.answer(400, "webhook-id is not the event's id")
                return
            with lock:
                with open(args.out, "a") as out:
                    out.write(json.dumps(record) + "\n")
            self.answer(204)

        def fulfil(self, body):
            try:
                call = json.loads(body)
                instance = json_format.ParseDict(call["instance"], instance_type())
                action = call["action"]
            except Exception as error:  # not a fulfilment call
                self.answer(400, f"not a fulfilment call: {error}")
                return
            if action in args.fail_actions.split(","):
                self.answer(503, f"{action} is failing on purpose")
                return
            with lock:
                with open(args.out, "a") as out:
                    out.write(json.dumps({
                        "path": self.path,
                        "webhook_id": self.headers["webhook-id"],
                        "type": action,
                        "subject": f"instance/{instance.id}",
                        "sequence": 0,
                        "body": body.decode(),
                    }) + "\n")
            if action != "create":
                self.answer(204)
                return
            answer = json.dumps({
                "logon_url": f"https://provider.example/{instance.id}",
                "facts": {"admin_user": f"admin-{instance.id}"},
            }).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", args.port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    if args.port_file:
        pathlib.Path(args.port_file + ".tmp").write_text(str(server.server_address[1]))
        os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
