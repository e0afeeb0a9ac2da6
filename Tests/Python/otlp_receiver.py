#!/usr/bin/env python3
"""A minimal OTLP trace receiver (gRPC) for the tracing test: it accepts
opentelemetry.proto.collector.trace.v1.TraceService/Export on a free loopback port, writes
the port to --port-file once it listens, and appends every span it receives to --spans as
one JSON object per line: the exporting service (resource service.name), the span's name,
kind, trace id, span id, parent span id, status code and attributes.

    otlp_receiver.py --port-file PATH --spans PATH

Runs until killed.
"""
import argparse
import json
import os
import signal
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


def value(any_value):
    """An OTLP AnyValue as a plain Python value."""
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def Export(self, request, context):
        lines = []
        for resource_spans in request.resource_spans:
            service = next(
                (value(a.value) for a in resource_spans.resource.attributes if a.key == "service.name"), "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append(json.dumps({
                        "service": service,
                        "name": span.name,
                        "kind": trace_pb2.Span.SpanKind.Name(span.kind),
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "start_unix_nano": span.start_time_unix_nano,
                        "status": trace_pb2.Status.StatusCode.Name(span.status.code),
                        "attributes": {a.key: value(a.value) for a in span.attributes},
                    }, sort_keys=True))
        with self.lock, open(self.path, "a") as out:
            out.write("".join(line + "\n" for line in lines))
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--spans", required=True)
    arguments = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(arguments.spans), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    # Stops on SIGTERM even when started with SIGTERM ignored (inherited from the test runner).
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    # Written whole, then renamed: a reader never sees half a port.
    with open(arguments.port_file + ".tmp", "w") as out:
        out.write(f"{port}\n")
    os.rename(arguments.port_file + ".tmp", arguments.port_file)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
