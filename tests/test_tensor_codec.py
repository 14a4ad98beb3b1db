"""Open Inference Protocol tensors on the wire, every data type, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from seqserve.kserve import grpc_predict_v2_pb2 as pb
from service.errors import InvalidArgument
from service.grpc_api.tensor_codec import decode_inputs, encode_response, join_bytes, split_bytes
from service.tasks.open_inference import DATATYPES, InferResult, Tensor

NUMERIC = [name for name in DATATYPES if name != "BYTES"]


def _values(datatype: str) -> np.ndarray:
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    return np.array([[0, 1, 2], [3, 4, 5]]).astype(DATATYPES[datatype])


@pytest.mark.parametrize("datatype", NUMERIC)
def test_raw_numeric_tensors_decode_little_endian_in_their_shape(datatype):
    values = _values(datatype)
    request = pb.ModelInferRequest(inputs=[{"name": "x", "datatype": datatype, "shape": [2, 3]}])
    request.raw_input_contents.append(values.astype(DATATYPES[datatype]).tobytes())
    (tensor,) = decode_inputs(request)
    assert tensor.datatype == datatype and tensor.shape == [2, 3]
    assert tensor.data.tolist() == values.tolist()


@pytest.mark.parametrize("datatype", [d for d in NUMERIC if d != "FP16"])
def test_typed_contents_decode_from_their_datatypes_field(datatype):
    values = _values(datatype)
    request = pb.ModelInferRequest()
    field = {"BOOL": "bool_contents", "INT64": "int64_contents", "UINT64": "uint64_contents",
             "FP32": "fp32_contents", "FP64": "fp64_contents"}.get(
        datatype, "int_contents" if datatype.startswith("INT") else "uint_contents")
    request.inputs.add(name="x", datatype=datatype, shape=[2, 3], contents={field: values.ravel().tolist()})
    (tensor,) = decode_inputs(request)
    assert tensor.data.dtype == DATATYPES[datatype] and tensor.data.tolist() == values.tolist()


def test_values_a_datatype_cannot_hold_and_fp16_contents_are_refused():
    request = pb.ModelInferRequest()
    request.inputs.add(name="x", datatype="INT8", shape=[1], contents={"int_contents": [300]})
    with pytest.raises(InvalidArgument, match="input 'x' holds 300, which does not fit INT8"):
        decode_inputs(request)
    request = pb.ModelInferRequest()
    request.inputs.add(name="h", datatype="FP16", shape=[1])
    with pytest.raises(InvalidArgument, match="FP16 travels in raw_input_contents only"):
        decode_inputs(request)
    request = pb.ModelInferRequest()
    request.inputs.add(name="x", datatype="INT64", shape=[-1])
    with pytest.raises(InvalidArgument, match="cannot be negative"):
        decode_inputs(request)


def test_bytes_elements_round_trip_including_empty_and_binary_ones():
    items = np.array([b"", b"caf\xc3\xa9", b"\x00\xff" * 300], dtype=object)
    assert split_bytes(join_bytes(items), "x") == list(items)
    request = pb.ModelInferRequest(inputs=[{"name": "t", "datatype": "BYTES", "shape": [3, 1]}])
    request.raw_input_contents.append(join_bytes(items))
    (tensor,) = decode_inputs(request)
    assert tensor.shape == [3, 1] and tensor.data[:, 0].tolist() == list(items)
    with pytest.raises(InvalidArgument, match="has 3 BYTES elements; shape \\[2\\] needs 2"):
        request.inputs[0].shape[:] = [2]
        decode_inputs(request)
    with pytest.raises(InvalidArgument, match="4-byte length"):
        split_bytes(b"\x01\x00", "x")


@pytest.mark.parametrize("raw", [False, True])
def test_responses_carry_outputs_raw_or_typed_in_order(raw):
    result = InferResult("sentiment-lstm", "2", [
        Tensor("probabilities", "FP32", np.array([[0.25, 0.75]], dtype=np.float32)),
        Tensor("label", "BYTES", np.array([b"positive"], dtype=object)),
    ])
    reply = encode_response(result, "id-1", raw=raw)
    assert (reply.model_name, reply.model_version, reply.id) == ("sentiment-lstm", "2", "id-1")
    assert [(o.name, o.datatype, list(o.shape)) for o in reply.outputs] == [
        ("probabilities", "FP32", [1, 2]), ("label", "BYTES", [1])]
    if raw:
        assert np.frombuffer(reply.raw_output_contents[0], "<f4").tolist() == [0.25, 0.75]
        assert split_bytes(reply.raw_output_contents[1], "label") == [b"positive"]
        assert not reply.outputs[0].contents.ByteSize()
    else:
        assert not reply.raw_output_contents
        assert list(reply.outputs[0].contents.fp32_contents) == [0.25, 0.75]
        assert list(reply.outputs[1].contents.bytes_contents) == [b"positive"]
