from seqserve.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Sentence(_message.Message):
    __slots__ = ("text", "tokens")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    text: str
    tokens: Tokens
    def __init__(self, text: _Optional[str] = ..., tokens: _Optional[_Union[Tokens, _Mapping]] = ...) -> None: ...

class Tokens(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class TagRequest(_message.Message):
    __slots__ = ("sentences", "model")
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    sentences: _containers.RepeatedCompositeFieldContainer[Sentence]
    model: _common_pb2.ModelSelector
    def __init__(self, sentences: _Optional[_Iterable[_Union[Sentence, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelSelector, _Mapping]] = ...) -> None: ...

class TaggedToken(_message.Message):
    __slots__ = ("index", "token", "tag", "probability")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    index: int
    token: str
    tag: str
    probability: float
    def __init__(self, index: _Optional[int] = ..., token: _Optional[str] = ..., tag: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class TaggedSentence(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TaggedToken]
    def __init__(self, tokens: _Optional[_Iterable[_Union[TaggedToken, _Mapping]]] = ...) -> None: ...

class TagResponse(_message.Message):
    __slots__ = ("sentences", "model")
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    sentences: _containers.RepeatedCompositeFieldContainer[TaggedSentence]
    model: _common_pb2.ModelId
    def __init__(self, sentences: _Optional[_Iterable[_Union[TaggedSentence, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelId, _Mapping]] = ...) -> None: ...

class TagStreamRequest(_message.Message):
    __slots__ = ("model", "tokens", "text", "flush")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelSelector
    tokens: Tokens
    text: str
    flush: Flush
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelSelector, _Mapping]] = ..., tokens: _Optional[_Union[Tokens, _Mapping]] = ..., text: _Optional[str] = ..., flush: _Optional[_Union[Flush, _Mapping]] = ...) -> None: ...

class Flush(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamStarted(_message.Message):
    __slots__ = ("model", "mode", "lookahead")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_UNSPECIFIED: _ClassVar[StreamStarted.Mode]
        IMMEDIATE: _ClassVar[StreamStarted.Mode]
        LOOKAHEAD: _ClassVar[StreamStarted.Mode]
    MODE_UNSPECIFIED: StreamStarted.Mode
    IMMEDIATE: StreamStarted.Mode
    LOOKAHEAD: StreamStarted.Mode
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    LOOKAHEAD_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelId
    mode: StreamStarted.Mode
    lookahead: int
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelId, _Mapping]] = ..., mode: _Optional[_Union[StreamStarted.Mode, str]] = ..., lookahead: _Optional[int] = ...) -> None: ...

class TagStreamResponse(_message.Message):
    __slots__ = ("started", "tags")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    started: StreamStarted
    tags: TaggedSentence
    def __init__(self, started: _Optional[_Union[StreamStarted, _Mapping]] = ..., tags: _Optional[_Union[TaggedSentence, _Mapping]] = ...) -> None: ...
