"""Open Inference Protocol tensors on the wire <-> numpy ``Tensor``s.

A tensor travels either in its typed ``contents`` field or as one entry of
``raw_input_contents`` / ``raw_output_contents`` (little-endian, row-major; a
BYTES element is a 4-byte little-endian length, then its bytes). Anything that
does not add up to the declared shape is the client's mistake: INVALID_ARGUMENT.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from seqserve.kserve import grpc_predict_v2_pb2 as pb
from service.errors import InvalidArgument
from service.tasks.open_inference import DATATYPES, InferResult, Tensor

# The typed field that carries each data type (FP16 has none: raw only).
_CONTENTS_FIELD = {
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
_LENGTH = struct.Struct("<I")


def decode_inputs(request: pb.ModelInferRequest) -> list[Tensor]:
    """The request's input tensors, from typed contents or from raw_input_contents."""
    raw = request.raw_input_contents
    if raw:
        if len(raw) != len(request.inputs):
            raise InvalidArgument(
                f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: send one per input, in order"
            )
        with_contents = [t.name for t in request.inputs if t.contents.ByteSize()]
        if with_contents:
            raise InvalidArgument(
                f"input {with_contents[0]!r} has contents and the request has raw_input_contents: use one or the other"
            )
        return [_from_raw(t, data) for t, data in zip(request.inputs, raw)]
    return [_from_contents(t) for t in request.inputs]


def _shape(tensor: pb.ModelInferRequest.InferInputTensor) -> tuple[list[int], int]:
    if tensor.datatype not in DATATYPES:
        raise InvalidArgument(
            f"input {tensor.name!r} has datatype {tensor.datatype!r}; known: {', '.join(DATATYPES)}"
        )
    shape = list(tensor.shape)
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"input {tensor.name!r} has shape {shape}; sizes cannot be negative")
    return shape, math.prod(shape)


def _from_raw(tensor: pb.ModelInferRequest.InferInputTensor, data: bytes) -> Tensor:
    shape, count = _shape(tensor)
    if tensor.datatype == "BYTES":
        items = split_bytes(data, f"input {tensor.name!r}")
        if len(items) != count:
            raise InvalidArgument(f"input {tensor.name!r} has {len(items)} BYTES elements; shape {shape} needs {count}")
        return Tensor(tensor.name, "BYTES", _object_array(items, shape))
    dtype = DATATYPES[tensor.datatype]
    if len(data) != count * dtype.itemsize:
        raise InvalidArgument(
            f"input {tensor.name!r} has {len(data)} raw bytes; shape {shape} of {tensor.datatype} needs "
            f"{count * dtype.itemsize}"
        )
    return Tensor(tensor.name, tensor.datatype, np.frombuffer(data, dtype=dtype).reshape(shape))


def _from_contents(tensor: pb.ModelInferRequest.InferInputTensor) -> Tensor:
    shape, count = _shape(tensor)
    field = _CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        raise InvalidArgument(f"input {tensor.name!r}: {tensor.datatype} travels in raw_input_contents only")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidArgument(
            f"input {tensor.name!r} has {len(values)} values in contents.{field}; shape {shape} needs {count}"
        )
    if tensor.datatype == "BYTES":
        return Tensor(tensor.name, "BYTES", _object_array(list(values), shape))
    dtype = DATATYPES[tensor.datatype]
    if dtype.kind in "iu" and values:
        # INT8/16 and UINT8/16 share 32-bit fields; numpy would wrap 300 into an INT8 silently.
        info, low, high = np.iinfo(dtype), min(values), max(values)
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InvalidArgument(f"input {tensor.name!r} holds {bad}, which does not fit {tensor.datatype}")
    return Tensor(tensor.name, tensor.datatype, np.array(values, dtype=dtype).reshape(shape))


def _object_array(items: list[bytes], shape: list[int]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)  # np.array() would split nested bytes oddly
    array[:] = items
    return array.reshape(shape)


def split_bytes(data: bytes, what: str) -> list[bytes]:
    """The elements of a raw BYTES tensor: each a 4-byte length, then that many bytes."""
    items: list[bytes] = []
    at = 0
    while at < len(data):
        if at + _LENGTH.size > len(data):
            raise InvalidArgument(f"{what}: raw BYTES end inside an element's 4-byte length (at byte {at})")
        (size,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        if at + size > len(data):
            raise InvalidArgument(f"{what}: a raw BYTES element says {size} bytes but {len(data) - at} are left")
        items.append(bytes(data[at : at + size]))
        at += size
    return items


def join_bytes(items: np.ndarray) -> bytes:
    return b"".join(_LENGTH.pack(len(b)) + b for b in items.ravel())


def encode_response(result: InferResult, request_id: str, raw: bool) -> pb.ModelInferResponse:
    """The response, raw when the request was raw (Triton's client reads only
    raw_output_contents) and typed otherwise (readable in grpcurl's JSON)."""
    response = pb.ModelInferResponse(
        model_name=result.model_name, model_version=result.model_version, id=request_id
    )
    for tensor in result.outputs:
        out = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if raw:
            response.raw_output_contents.append(_to_raw(tensor))
        else:
            getattr(out.contents, _CONTENTS_FIELD[tensor.datatype]).extend(tensor.data.ravel().tolist())
    return response


def _to_raw(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return join_bytes(tensor.data)
    return np.ascontiguousarray(tensor.data, dtype=DATATYPES[tensor.datatype]).tobytes()
