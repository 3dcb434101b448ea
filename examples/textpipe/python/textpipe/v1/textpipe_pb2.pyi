from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers

DESCRIPTOR: _descriptor.FileDescriptor

class CountRequest(_message.Message):
    __slots__ = ("fail_first_attempt", "line_delay_ms", "text", "top")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    LINE_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    FAIL_FIRST_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    text: str
    top: int
    line_delay_ms: int
    fail_first_attempt: bool
    def __init__(self, text: str | None = ..., top: int | None = ..., line_delay_ms: int | None = ..., fail_first_attempt: bool | None = ...) -> None: ...

class WordCount(_message.Message):
    __slots__ = ("count", "word")
    WORD_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    word: str
    count: int
    def __init__(self, word: str | None = ..., count: int | None = ...) -> None: ...

class CountResult(_message.Message):
    __slots__ = ("lines", "top", "words")
    LINES_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    lines: int
    words: int
    top: _containers.RepeatedCompositeFieldContainer[WordCount]
    def __init__(self, lines: int | None = ..., words: int | None = ..., top: _Iterable[WordCount | _Mapping] | None = ...) -> None: ...
