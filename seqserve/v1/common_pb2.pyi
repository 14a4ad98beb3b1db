from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ModelSelector(_message.Message):
    __slots__ = ("arch", "version")
    ARCH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    arch: str
    version: int
    def __init__(self, arch: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ModelId(_message.Message):
    __slots__ = ("task", "arch", "version")
    TASK_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    task: str
    arch: str
    version: int
    def __init__(self, task: _Optional[str] = ..., arch: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...
