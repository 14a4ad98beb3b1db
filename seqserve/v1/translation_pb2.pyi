from seqserve.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TranslateRequest(_message.Message):
    __slots__ = ("text", "model", "beam_size", "max_length", "n_best")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BEAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    N_BEST_FIELD_NUMBER: _ClassVar[int]
    text: str
    model: _common_pb2.ModelSelector
    beam_size: int
    max_length: int
    n_best: int
    def __init__(self, text: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelSelector, _Mapping]] = ..., beam_size: _Optional[int] = ..., max_length: _Optional[int] = ..., n_best: _Optional[int] = ...) -> None: ...

class Hypothesis(_message.Message):
    __slots__ = ("text", "score", "log_prob", "length", "truncated")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LOG_PROB_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    text: str
    score: float
    log_prob: float
    length: int
    truncated: bool
    def __init__(self, text: _Optional[str] = ..., score: _Optional[float] = ..., log_prob: _Optional[float] = ..., length: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...

class TranslateResponse(_message.Message):
    __slots__ = ("hypotheses", "model", "source_length")
    HYPOTHESES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    hypotheses: _containers.RepeatedCompositeFieldContainer[Hypothesis]
    model: _common_pb2.ModelId
    source_length: int
    def __init__(self, hypotheses: _Optional[_Iterable[_Union[Hypothesis, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelId, _Mapping]] = ..., source_length: _Optional[int] = ...) -> None: ...

class TranslateStreamResponse(_message.Message):
    __slots__ = ("text", "result")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    text: str
    result: TranslateResponse
    def __init__(self, text: _Optional[str] = ..., result: _Optional[_Union[TranslateResponse, _Mapping]] = ...) -> None: ...
