"""make.sh's traffic for `mlserver`: inference over REST (V2 protocol) and gRPC, OK, slow and failing, a model that
does not exist, a malformed request, and the health, metadata and repository endpoints.
Usage: python traffic.py HTTP_PORT GRPC_PORT"""

import json
import sys
import urllib.error
import urllib.request

import grpc
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc

http, grpc_port = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{http}"


def rest(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            print(method, path, answer.status)
    except urllib.error.HTTPError as error:
        print(method, path, error.code)


def tensor(name, values):
    return {"inputs": [{"name": name, "shape": [len(values)], "datatype": "FP32", "data": values}]}


for _ in range(5):
    rest("POST", "/v2/models/price/infer", tensor("quantity", [1, 2]))
    rest("POST", "/v2/models/fraud/versions/v2/infer", tensor("amount", [20, 250]))
rest("POST", "/v2/models/price/infer", tensor("quantity", [1, 2, 3, 4, 5]))
rest("POST", "/v2/models/price/infer", tensor("quantity", [-1]))
rest("POST", "/v2/models/fraud/infer", tensor("amount", []))
rest("POST", "/v2/models/churn/infer", tensor("x", [1]))
rest("POST", "/v2/models/price/infer", {"inputs": "not a list"})
for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/price/ready", "/v2/models/price", "/v2"):
    rest("GET", path)
rest("POST", "/v2/repository/index", {})

stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))


def infer(model, values, version=""):
    request = pb.ModelInferRequest(
        model_name=model,
        model_version=version,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="x", datatype="FP32", shape=[len(values)], contents=pb.InferTensorContents(fp32_contents=values)
            )
        ],
    )
    try:
        stub.ModelInfer(request, timeout=30)
        print("grpc", model, "OK")
    except grpc.RpcError as error:
        print("grpc", model, error.code().name)


for _ in range(4):
    infer("price", [3, 4])
infer("fraud", [500], "v2")
infer("price", [-2])
infer("churn", [1])
stub.ServerLive(pb.ServerLiveRequest(), timeout=10)
stub.ServerReady(pb.ServerReadyRequest(), timeout=10)
stub.ModelMetadata(pb.ModelMetadataRequest(name="price"), timeout=10)
