"""The least a Python grpc.aio hop can cost here: the bench's floor for the gateway.

Serves ``saxgateway.v1.SaxGateway/Generate`` and makes the one Sax ``lm.Generate`` call it
stands for, with nothing else: no checks, no routing, no telemetry, no error mapping. It runs
with the gateway's own tuning (grpc experiments, event loop, channel options), so
``floor-grpc`` minus ``gateway-grpc`` is what the gateway's own code costs per call, and
``floor-grpc`` itself is what this machine charges for the two grpc.aio RPCs every gateway
call is made of.

    python -m bench._floor_proxy --port 50999 --model-server 127.0.0.1:10001
"""

from __future__ import annotations

import argparse

import grpc
from saxgateway.v1 import gateway_pb2
from saxml.protobuf import lm_pb2

from gateway.client._channels import insecure_channel
from gateway.launch import tuning


async def serve(port: int, model_server: str) -> None:
    channel = insecure_channel(model_server)  # the gateway's own channel options
    generate = channel.unary_unary(
        "/sax.server.lm.LMService/Generate",
        request_serializer=lm_pb2.GenerateRequest.SerializeToString,
        response_deserializer=lm_pb2.GenerateResponse.FromString,
    )

    async def handler(
        request: gateway_pb2.GenerateRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> gateway_pb2.GenerateResponse:
        sax = lm_pb2.GenerateRequest(model_key=request.model, text=request.query)
        reply = await generate(sax, timeout=60)
        return gateway_pb2.GenerateResponse(
            texts=[gateway_pb2.DecodedText(text=t.text, score=t.score) for t in reply.texts]
        )

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "saxgateway.v1.SaxGateway",
                {
                    "Generate": grpc.unary_unary_rpc_method_handler(
                        handler,
                        request_deserializer=gateway_pb2.GenerateRequest.FromString,
                        response_serializer=gateway_pb2.GenerateResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-server", required=True)
    args = parser.parse_args()
    tuning.run(serve(args.port, args.model_server))


if __name__ == "__main__":
    main()
