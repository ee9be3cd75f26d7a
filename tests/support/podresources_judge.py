"""A real gRPC implementation (Python grpcio) of the kubelet PodResources v1 `List` call, used as an
independent judge of our hand-written client (src/k8s/podresources.rs) and fake kubelet
(tests/support/kubelet.rs): both of ours could agree on a wrong wire format, grpcio cannot.

Stubs are generated at run time by grpc_tools.protoc from tests/fixtures/podresources/api.proto.

  judge.py STUBS serve SOCKET RESPONSE.json   serve List on unix:SOCKET with that answer; prints
                                              "ready" once listening; stops on SIGTERM or stdin EOF
  judge.py STUBS fail SOCKET CODE MESSAGE     serve List failing with that status code name
  judge.py STUBS list SOCKET                  call List, print the answer as JSON (proto field
                                              names) or {"error": CODE, "details": MESSAGE}
  judge.py STUBS normalize RESPONSE.json      print the answer as `list` would print it
  judge.py STUBS decode ANSWER.bin            print a binary answer as `list` would print it
  judge.py STUBS encode RESPONSE.json OUT     write the binary encoding of the answer (golden files)

RESPONSE.json is the proto3 JSON mapping of a ListPodResourcesResponse.
"""

import json
import os
import signal
import sys
import threading
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "fixtures", "podresources")


def load_stubs(stub_dir):
    os.makedirs(stub_dir, exist_ok=True)
    if not os.path.exists(os.path.join(stub_dir, "api_pb2_grpc.py")):
        from grpc_tools import protoc

        rc = protoc.main(
            ["protoc", "-I" + PROTO_DIR, "--python_out=" + stub_dir, "--grpc_python_out=" + stub_dir, "api.proto"]
        )
        if rc != 0:
            sys.exit("protoc failed with %d" % rc)
    sys.path.insert(0, stub_dir)
    import api_pb2
    import api_pb2_grpc

    return api_pb2, api_pb2_grpc


def read_response(pb2, path):
    from google.protobuf import json_format

    with open(path) as f:
        return json_format.ParseDict(json.load(f), pb2.ListPodResourcesResponse())


def serve(pb2, pb2_grpc, socket, handler):
    import grpc

    class Lister(pb2_grpc.PodResourcesListerServicer):
        def List(self, request, context):
            return handler(request, context)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb2_grpc.add_PodResourcesListerServicer_to_server(Lister(), server)
    if server.add_insecure_port("unix:" + socket) == 0:
        sys.exit("cannot listen on " + socket)
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    # The test holds our stdin: when it goes away (test ended, even by a panic), so do we.
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print("ready", flush=True)
    done.wait()
    server.stop(0)


def main():
    stub_dir, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    pb2, pb2_grpc = load_stubs(stub_dir)
    import grpc

    if cmd == "serve":
        socket, response = args
        answer = read_response(pb2, response)
        serve(pb2, pb2_grpc, socket, lambda request, context: answer)
    elif cmd == "fail":
        socket, code, message = args

        def fail(request, context):
            context.abort(getattr(grpc.StatusCode, code), message)

        serve(pb2, pb2_grpc, socket, fail)
    elif cmd == "list":
        from google.protobuf import json_format

        (socket,) = args
        # grpc-core names a unix channel's :authority after the percent-encoded socket path, which
        # hyper's HTTP/2 server (our fake kubelet) refuses as a malformed authority; grpc-go, the
        # kubelet's own client library, sends "localhost", and so do we here.
        with grpc.insecure_channel("unix:" + socket, options=[("grpc.default_authority", "localhost")]) as channel:
            stub = pb2_grpc.PodResourcesListerStub(channel)
            try:
                answer = stub.List(pb2.ListPodResourcesRequest(), timeout=10)
            except grpc.RpcError as e:
                print(json.dumps({"error": e.code().name, "details": e.details()}))
                return
        print(json.dumps(json_format.MessageToDict(answer, preserving_proto_field_name=True), sort_keys=True))
    elif cmd == "normalize":
        from google.protobuf import json_format

        (response,) = args
        answer = read_response(pb2, response)
        print(json.dumps(json_format.MessageToDict(answer, preserving_proto_field_name=True), sort_keys=True))
    elif cmd == "decode":
        from google.protobuf import json_format

        (binary,) = args
        answer = pb2.ListPodResourcesResponse()
        with open(binary, "rb") as f:
            answer.ParseFromString(f.read())
        print(json.dumps(json_format.MessageToDict(answer, preserving_proto_field_name=True), sort_keys=True))
    elif cmd == "encode":
        response, out = args
        with open(out, "wb") as f:
            f.write(read_response(pb2, response).SerializeToString())
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
