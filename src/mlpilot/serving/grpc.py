"""Open Inference Protocol v2 over gRPC (``inference.GRPCInferenceService``) on the same :class:`DataPlane`.

Messages come from the compiled descriptor ``proto/oip_v2.desc`` loaded into a private pool (no generated code,
no clash with other copies of these messages in the process). Outputs are always sent as
``raw_output_contents``, which is what tritonclient's gRPC client reads.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from mlpilot.errors import ErrorKind, InvalidArgument, MlpilotError
from mlpilot.protocol.signature import datatype_of
from mlpilot.serving.codec import (
    DecodedRequest,
    RequestedOutput,
    _from_json_data,
    tensor_from_bytes,
    tensor_to_bytes,
)
from mlpilot.serving.dataplane import DataPlane
from mlpilot.serving.limits import CALLER

log = logging.getLogger("mlpilot.serving")
SERVICE = "inference.GRPCInferenceService"

GRPC_STATUS: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.CONFLICT: grpc.StatusCode.ABORTED,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorKind.DATA_LOSS: grpc.StatusCode.DATA_LOSS,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}

# Which InferTensorContents field holds each datatype (when raw contents are not used).
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _messages() -> dict[str, Any]:
    fds = descriptor_pb2.FileDescriptorSet.FromString((Path(__file__).parent / "proto" / "oip_v2.desc").read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    names = [
        "ServerLiveRequest",
        "ServerLiveResponse",
        "ServerReadyRequest",
        "ServerReadyResponse",
        "ModelReadyRequest",
        "ModelReadyResponse",
        "ServerMetadataRequest",
        "ServerMetadataResponse",
        "ModelMetadataRequest",
        "ModelMetadataResponse",
        "ModelInferRequest",
        "ModelInferResponse",
    ]
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{n}")) for n in names}


def _param(p: Any) -> Any:
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


#: ``authorize(method, model, metadata)``: raises ``MlpilotError`` (unauthenticated, permission denied) to refuse a
#: call; supplied by the server when authentication is on (``mlpilot.auth.gate``), the data plane never checks keys.
#: checks a call's credentials (raises Unauthenticated / PermissionDenied); returns the principal (with an ``actor``)
#: or None when no key was checked.
Authorize = Callable[[str, "str | None", Mapping[str, str]], Awaitable[Any]]


class InferenceServicer:
    """Handlers of ``inference.GRPCInferenceService``."""

    def __init__(
        self,
        dataplane: DataPlane,
        server_name: str = "mlpilot",
        server_version: str = "",
        authorize: Authorize | None = None,
    ) -> None:
        self.dp = dataplane
        self.authorize = authorize
        self.m = _messages()
        self.server_name = server_name
        self.server_version = server_version

    def handler(self) -> grpc.GenericRpcHandler:
        m = self.m
        methods = {
            "ServerLive": (self.server_live, "ServerLiveRequest", "ServerLiveResponse"),
            "ServerReady": (self.server_ready, "ServerReadyRequest", "ServerReadyResponse"),
            "ModelReady": (self.model_ready, "ModelReadyRequest", "ModelReadyResponse"),
            "ServerMetadata": (self.server_metadata, "ServerMetadataRequest", "ServerMetadataResponse"),
            "ModelMetadata": (self.model_metadata, "ModelMetadataRequest", "ModelMetadataResponse"),
            "ModelInfer": (self.model_infer, "ModelInferRequest", "ModelInferResponse"),
        }
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                name: grpc.unary_unary_rpc_method_handler(
                    self._guard(fn, name),
                    request_deserializer=m[req].FromString,
                    response_serializer=m[resp].SerializeToString,
                )
                for name, (fn, req, resp) in methods.items()
            },
        )

    def _guard(self, fn: Any, method: str) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                principal = None
                if self.authorize is not None:
                    model = getattr(request, "model_name", None) or getattr(request, "name", None)
                    principal = await self.authorize(method, model, dict(context.invocation_metadata() or ()))
                if self.dp.limiter.caller_rate is not None:
                    CALLER.set(principal.actor if principal is not None else _peer_address(context.peer()))
                return await fn(request, context)
            except MlpilotError as exc:
                after = exc.retry_after_header()
                if after is not None:
                    context.set_trailing_metadata((("retry-after", after),))
                await context.abort(GRPC_STATUS[exc.kind], exc.message)
            except Exception:
                log.exception("unexpected gRPC error")
                await context.abort(grpc.StatusCode.INTERNAL, "internal error; this is a bug")

        return call

    async def server_live(self, request: Any, context: Any) -> Any:
        return self.m["ServerLiveResponse"](live=True)

    async def server_ready(self, request: Any, context: Any) -> Any:
        return self.m["ServerReadyResponse"](ready=self.dp.ready())

    async def model_ready(self, request: Any, context: Any) -> Any:
        return self.m["ModelReadyResponse"](ready=self.dp.model_ready(request.name, request.version or None))

    async def server_metadata(self, request: Any, context: Any) -> Any:
        return self.m["ServerMetadataResponse"](
            name=self.server_name, version=self.server_version, extensions=["binary_tensor_data"]
        )

    async def model_metadata(self, request: Any, context: Any) -> Any:
        meta = self.dp.metadata(request.name, request.version or None)
        resp = self.m["ModelMetadataResponse"](name=meta["name"], versions=meta["versions"], platform=meta["platform"])
        for group in ("inputs", "outputs"):
            for t in meta[group]:
                getattr(resp, group).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return resp

    def _decode(self, request: Any) -> DecodedRequest:
        if not request.inputs:
            raise InvalidArgument("the request has no inputs")
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise InvalidArgument(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
        inputs: dict[str, np.ndarray] = {}
        for i, t in enumerate(request.inputs):
            if t.name in inputs:
                raise InvalidArgument(f"input {t.name!r} appears twice")
            shape = tuple(int(d) for d in t.shape)
            if any(d < 0 for d in shape):
                raise InvalidArgument(f"input {t.name!r}: negative dimension in shape {list(shape)}")
            if t.datatype not in _CONTENTS and t.datatype != "FP16":
                raise InvalidArgument(f"input {t.name!r}: unknown datatype {t.datatype!r}")
            if raw:
                inputs[t.name] = tensor_from_bytes(t.name, t.datatype, shape, raw[i])
            else:
                field = _CONTENTS.get(t.datatype)
                if field is None:
                    raise InvalidArgument(f"input {t.name!r}: FP16 must be sent in raw_input_contents")
                inputs[t.name] = _from_json_data(list(getattr(t.contents, field)), t.datatype, shape, t.name)
        outputs = None
        if request.outputs:
            outputs = [RequestedOutput(o.name, True) for o in request.outputs]
        return DecodedRequest(
            inputs=inputs,
            id=request.id or None,
            parameters={k: _param(v) for k, v in request.parameters.items()},
            outputs=outputs,
            binary_output=True,
        )

    async def model_infer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        inflight = self.dp.metrics.inflight
        inflight.inc()
        try:
            return await self._model_infer(request, context)
        finally:
            inflight.dec()

    async def _model_infer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        t0 = time.perf_counter()
        name = request.model_name
        d = self.dp.deployment(name)
        metadata = dict(context.invocation_metadata() or ())
        request_id = str(metadata.get("x-request-id") or request.id or os.urandom(12).hex())
        sticky = metadata.get(d.route.sticky_header.lower()) if d.route.sticky_header else None
        decoded = self._decode(request)
        t1 = time.perf_counter()
        d, lv = self.dp.choose(name, request.model_version or None, sticky)
        if d.quarantine is not None:
            lv = self.dp.screen(d, lv, decoded, request_id, sticky)
        try:
            result = await self.dp.infer(d, lv, decoded, request_id, sticky, arrived=t0)
            t2 = time.perf_counter()
            outputs = result.outputs
            if decoded.outputs is not None:
                for o in decoded.outputs:
                    if o.name not in outputs:
                        raise InvalidArgument(f"unknown output {o.name!r}; the model returns {list(outputs)}")
                outputs = {o.name: outputs[o.name] for o in decoded.outputs}
            resp = self.m["ModelInferResponse"](model_name=name, model_version=lv.version, id=request.id)
            for out_name, arr in outputs.items():
                datatype = datatype_of(arr)
                resp.outputs.add(name=out_name, datatype=datatype, shape=list(arr.shape))
                resp.raw_output_contents.append(tensor_to_bytes(arr, datatype))
        except MlpilotError as exc:
            lv.metrics.requests["server_error" if exc.kind is ErrorKind.INTERNAL else "client_error"].inc()
            raise
        t3 = time.perf_counter()
        lv.metrics.stages["decode"].observe(t1 - t0)
        lv.metrics.stages["predict"].observe(result.predict_s)
        lv.metrics.stages["encode"].observe(t3 - t2)
        lv.metrics.stages["total"].observe(t3 - t0)
        lv.metrics.requests["ok"].inc()
        await context.send_initial_metadata((("x-request-id", request_id), ("x-mlpilot-variant", lv.route.name)))
        return resp


async def start_grpc_server(
    dataplane: DataPlane, host: str, port: int, server_version: str = "", authorize: Authorize | None = None
) -> grpc.aio.Server:
    """Start the gRPC server on the running event loop; returns it (``await server.stop(grace)`` to stop)."""
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", 64 * 1024**2), ("grpc.max_send_message_length", 64 * 1024**2)]
    )
    server.add_generic_rpc_handlers(
        (InferenceServicer(dataplane, server_version=server_version, authorize=authorize).handler(),)
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    await server.start()
    return server


def _peer_address(peer: str) -> str:
    """``addr:<host>`` of a gRPC peer (``ipv4:127.0.0.1:5123``, ``ipv6:[::1]:5123``): the client, not its port."""
    host = peer.split(":", 1)[1] if ":" in peer else peer
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    return f"addr:{host.strip('[]')}"
