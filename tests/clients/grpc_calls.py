"""An independent gRPC client (grpcio) for tests/layer.rs: calls a unary method and a
server-streaming one that panic, then many panicking calls, and prints what it saw as JSON."""

import json
import sys

import grpc

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def failure(error):
    return {
        "code": error.code().name,
        "details": error.details(),
        "initial": dict(error.initial_metadata() or ()),
        "trailing": dict(error.trailing_metadata() or ()),
    }


def main():
    address, repeats = sys.argv[1], int(sys.argv[2])
    seen = {}
    with grpc.insecure_channel(address) as channel:
        raw = {"request_serializer": lambda b: b, "response_deserializer": lambda b: b}
        unary = channel.unary_unary("/grpc.Test/Boom", **raw)
        try:
            unary(b"", timeout=10, metadata=[("traceparent", TRACEPARENT)])
            seen["unary"] = {"code": "OK"}
        except grpc.RpcError as error:
            seen["unary"] = failure(error)
        streaming = channel.unary_stream("/grpc.Test/StreamThenBoom", **raw)
        messages = []
        try:
            for message in streaming(b"", timeout=10):
                messages.append(message.decode())
            seen["stream"] = {"code": "OK", "messages": messages}
        except grpc.RpcError as error:
            seen["stream"] = dict(failure(error), messages=messages)
        codes = {}
        for _ in range(repeats):
            try:
                unary(b"", timeout=10)
                codes["OK"] = codes.get("OK", 0) + 1
            except grpc.RpcError as error:
                codes[error.code().name] = codes.get(error.code().name, 0) + 1
        seen["repeated"] = codes
    print(json.dumps(seen))


main()
