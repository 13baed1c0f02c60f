import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("message", "version")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    message: str
    version: str
    def __init__(self, message: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class PublishModelRequest(_message.Message):
    __slots__ = ("model", "model_path", "checkpoint", "replicas", "overrides")
    class OverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_path: str
    checkpoint: str
    replicas: int
    overrides: _containers.ScalarMap[str, str]
    def __init__(self, model: _Optional[str] = ..., model_path: _Optional[str] = ..., checkpoint: _Optional[str] = ..., replicas: _Optional[int] = ..., overrides: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PublishModelResponse(_message.Message):
    __slots__ = ("model", "path", "checkpoint", "replicas")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    model: str
    path: str
    checkpoint: str
    replicas: int
    def __init__(self, model: _Optional[str] = ..., path: _Optional[str] = ..., checkpoint: _Optional[str] = ..., replicas: _Optional[int] = ...) -> None: ...

class ListCellRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ListCellResponse(_message.Message):
    __slots__ = ("model", "model_path", "checkpoint", "max_replicas", "active_replicas")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_path: str
    checkpoint: str
    max_replicas: int
    active_replicas: int
    def __init__(self, model: _Optional[str] = ..., model_path: _Optional[str] = ..., checkpoint: _Optional[str] = ..., max_replicas: _Optional[int] = ..., active_replicas: _Optional[int] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model", "model_path", "checkpoint", "max_replicas", "active_replicas", "overrides", "addresses", "methods", "load_error")
    class OverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    LOAD_ERROR_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_path: str
    checkpoint: str
    max_replicas: int
    active_replicas: int
    overrides: _containers.ScalarMap[str, str]
    addresses: _containers.RepeatedScalarFieldContainer[str]
    methods: _containers.RepeatedScalarFieldContainer[str]
    load_error: str
    def __init__(self, model: _Optional[str] = ..., model_path: _Optional[str] = ..., checkpoint: _Optional[str] = ..., max_replicas: _Optional[int] = ..., active_replicas: _Optional[int] = ..., overrides: _Optional[_Mapping[str, str]] = ..., addresses: _Optional[_Iterable[str]] = ..., methods: _Optional[_Iterable[str]] = ..., load_error: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("sax_cell",)
    SAX_CELL_FIELD_NUMBER: _ClassVar[int]
    sax_cell: str
    def __init__(self, sax_cell: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("sax_cell", "models")
    SAX_CELL_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    sax_cell: str
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, sax_cell: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ListCellsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCellsResponse(_message.Message):
    __slots__ = ("cells",)
    CELLS_FIELD_NUMBER: _ClassVar[int]
    cells: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cells: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateModelRequest(_message.Message):
    __slots__ = ("model", "model_path", "checkpoint", "replicas", "overrides", "clear_overrides")
    class OverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    CLEAR_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_path: str
    checkpoint: str
    replicas: int
    overrides: _containers.ScalarMap[str, str]
    clear_overrides: bool
    def __init__(self, model: _Optional[str] = ..., model_path: _Optional[str] = ..., checkpoint: _Optional[str] = ..., replicas: _Optional[int] = ..., overrides: _Optional[_Mapping[str, str]] = ..., clear_overrides: _Optional[bool] = ...) -> None: ...

class UpdateModelResponse(_message.Message):
    __slots__ = ("model", "path", "checkpoint", "replicas", "overrides")
    class OverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    model: str
    path: str
    checkpoint: str
    replicas: int
    overrides: _containers.ScalarMap[str, str]
    def __init__(self, model: _Optional[str] = ..., path: _Optional[str] = ..., checkpoint: _Optional[str] = ..., replicas: _Optional[int] = ..., overrides: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UnpublishModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class UnpublishModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "query", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    query: str
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., query: _Optional[str] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DecodedText(_message.Message):
    __slots__ = ("text", "score")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    text: str
    score: float
    def __init__(self, text: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedCompositeFieldContainer[DecodedText]
    def __init__(self, texts: _Optional[_Iterable[_Union[DecodedText, _Mapping]]] = ...) -> None: ...

class GenerateStreamRequest(_message.Message):
    __slots__ = ("model", "query", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    query: str
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., query: _Optional[str] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("index", "backtrack", "text", "score")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    BACKTRACK_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    index: int
    backtrack: int
    text: str
    score: float
    def __init__(self, index: _Optional[int] = ..., backtrack: _Optional[int] = ..., text: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class GenerateStreamResponse(_message.Message):
    __slots__ = ("deltas", "done", "texts", "error")
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    deltas: _containers.RepeatedCompositeFieldContainer[TextDelta]
    done: bool
    texts: _containers.RepeatedCompositeFieldContainer[DecodedText]
    error: _status_pb2.Status
    def __init__(self, deltas: _Optional[_Iterable[_Union[TextDelta, _Mapping]]] = ..., done: _Optional[bool] = ..., texts: _Optional[_Iterable[_Union[DecodedText, _Mapping]]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("model", "prefix", "suffix", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    prefix: str
    suffix: _containers.RepeatedScalarFieldContainer[str]
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., prefix: _Optional[str] = ..., suffix: _Optional[_Iterable[str]] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("logp",)
    LOGP_FIELD_NUMBER: _ClassVar[int]
    logp: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, logp: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("model", "text", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embedding",)
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class GradientRequest(_message.Message):
    __slots__ = ("model", "prefix", "suffix", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    prefix: str
    suffix: str
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., prefix: _Optional[str] = ..., suffix: _Optional[str] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GradientValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class GradientResponse(_message.Message):
    __slots__ = ("score", "gradients")
    class GradientsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: GradientValues
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[GradientValues, _Mapping]] = ...) -> None: ...
    SCORE_FIELD_NUMBER: _ClassVar[int]
    GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    score: _containers.RepeatedScalarFieldContainer[float]
    gradients: _containers.MessageMap[str, GradientValues]
    def __init__(self, score: _Optional[_Iterable[float]] = ..., gradients: _Optional[_Mapping[str, GradientValues]] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("model", "image_bytes", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    image_bytes: bytes
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., image_bytes: _Optional[bytes] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedCompositeFieldContainer[DecodedText]
    def __init__(self, texts: _Optional[_Iterable[_Union[DecodedText, _Mapping]]] = ...) -> None: ...

class TextToImageRequest(_message.Message):
    __slots__ = ("model", "text", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GeneratedImage(_message.Message):
    __slots__ = ("image", "score")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    score: float
    def __init__(self, image: _Optional[bytes] = ..., score: _Optional[float] = ...) -> None: ...

class TextToImageResponse(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[GeneratedImage]
    def __init__(self, images: _Optional[_Iterable[_Union[GeneratedImage, _Mapping]]] = ...) -> None: ...

class EmbedImageRequest(_message.Message):
    __slots__ = ("model", "image_bytes", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    image_bytes: bytes
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., image_bytes: _Optional[bytes] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class EmbedImageResponse(_message.Message):
    __slots__ = ("embedding",)
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("model", "image_bytes", "text", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    image_bytes: bytes
    text: _containers.RepeatedScalarFieldContainer[str]
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., image_bytes: _Optional[bytes] = ..., text: _Optional[_Iterable[str]] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class BoundingBox(_message.Message):
    __slots__ = ("cx", "cy", "w", "h", "text", "score")
    CX_FIELD_NUMBER: _ClassVar[int]
    CY_FIELD_NUMBER: _ClassVar[int]
    W_FIELD_NUMBER: _ClassVar[int]
    H_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    cx: float
    cy: float
    w: float
    h: float
    text: str
    score: float
    def __init__(self, cx: _Optional[float] = ..., cy: _Optional[float] = ..., w: _Optional[float] = ..., h: _Optional[float] = ..., text: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("boxes",)
    BOXES_FIELD_NUMBER: _ClassVar[int]
    boxes: _containers.RepeatedCompositeFieldContainer[BoundingBox]
    def __init__(self, boxes: _Optional[_Iterable[_Union[BoundingBox, _Mapping]]] = ...) -> None: ...

class ImageToTextRequest(_message.Message):
    __slots__ = ("model", "image_bytes", "text", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    image_bytes: bytes
    text: str
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., image_bytes: _Optional[bytes] = ..., text: _Optional[str] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ImageToTextResponse(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedCompositeFieldContainer[DecodedText]
    def __init__(self, texts: _Optional[_Iterable[_Union[DecodedText, _Mapping]]] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("model", "audio_bytes", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    AUDIO_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    audio_bytes: bytes
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., audio_bytes: _Optional[bytes] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RecognizeResponse(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedCompositeFieldContainer[DecodedText]
    def __init__(self, texts: _Optional[_Iterable[_Union[DecodedText, _Mapping]]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ServerTypeStat(_message.Message):
    __slots__ = ("chip_type", "chip_topology", "replicas")
    CHIP_TYPE_FIELD_NUMBER: _ClassVar[int]
    CHIP_TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    chip_type: str
    chip_topology: str
    replicas: int
    def __init__(self, chip_type: _Optional[str] = ..., chip_topology: _Optional[str] = ..., replicas: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("server_types", "servers_by_model_path")
    class ServersByModelPathEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SERVER_TYPES_FIELD_NUMBER: _ClassVar[int]
    SERVERS_BY_MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    server_types: _containers.RepeatedCompositeFieldContainer[ServerTypeStat]
    servers_by_model_path: _containers.ScalarMap[str, int]
    def __init__(self, server_types: _Optional[_Iterable[_Union[ServerTypeStat, _Mapping]]] = ..., servers_by_model_path: _Optional[_Mapping[str, int]] = ...) -> None: ...

class WaitForReadyRequest(_message.Message):
    __slots__ = ("model", "replicas", "timeout")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    replicas: int
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., replicas: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WaitForReadyResponse(_message.Message):
    __slots__ = ("model", "active_replicas")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    model: str
    active_replicas: int
    def __init__(self, model: _Optional[str] = ..., active_replicas: _Optional[int] = ...) -> None: ...

class GetAclRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetAclResponse(_message.Message):
    __slots__ = ("name", "acl")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACL_FIELD_NUMBER: _ClassVar[int]
    name: str
    acl: str
    def __init__(self, name: _Optional[str] = ..., acl: _Optional[str] = ...) -> None: ...

class SetAclRequest(_message.Message):
    __slots__ = ("name", "acl")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACL_FIELD_NUMBER: _ClassVar[int]
    name: str
    acl: str
    def __init__(self, name: _Optional[str] = ..., acl: _Optional[str] = ...) -> None: ...

class SetAclResponse(_message.Message):
    __slots__ = ("name", "acl")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACL_FIELD_NUMBER: _ClassVar[int]
    name: str
    acl: str
    def __init__(self, name: _Optional[str] = ..., acl: _Optional[str] = ...) -> None: ...

class WatchAddressesRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class WatchAddressesResponse(_message.Message):
    __slots__ = ("addresses", "error")
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    addresses: _containers.RepeatedScalarFieldContainer[str]
    error: _status_pb2.Status
    def __init__(self, addresses: _Optional[_Iterable[str]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class MultimodalItem(_message.Message):
    __slots__ = ("text", "image_bytes", "video")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    text: str
    image_bytes: bytes
    video: bytes
    def __init__(self, text: _Optional[str] = ..., image_bytes: _Optional[bytes] = ..., video: _Optional[bytes] = ...) -> None: ...

class MultimodalGenerateRequest(_message.Message):
    __slots__ = ("model", "items", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    items: _containers.RepeatedCompositeFieldContainer[MultimodalItem]
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., items: _Optional[_Iterable[_Union[MultimodalItem, _Mapping]]] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class MultimodalSample(_message.Message):
    __slots__ = ("items", "score")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[MultimodalItem]
    score: float
    def __init__(self, items: _Optional[_Iterable[_Union[MultimodalItem, _Mapping]]] = ..., score: _Optional[float] = ...) -> None: ...

class MultimodalGenerateResponse(_message.Message):
    __slots__ = ("samples",)
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[MultimodalSample]
    def __init__(self, samples: _Optional[_Iterable[_Union[MultimodalSample, _Mapping]]] = ...) -> None: ...

class MultimodalScoreRequest(_message.Message):
    __slots__ = ("model", "prefix_items", "suffix_items", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PREFIX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    prefix_items: _containers.RepeatedCompositeFieldContainer[MultimodalItem]
    suffix_items: _containers.RepeatedCompositeFieldContainer[MultimodalItem]
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., prefix_items: _Optional[_Iterable[_Union[MultimodalItem, _Mapping]]] = ..., suffix_items: _Optional[_Iterable[_Union[MultimodalItem, _Mapping]]] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class MultimodalScoreResponse(_message.Message):
    __slots__ = ("scores",)
    SCORES_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, scores: _Optional[_Iterable[float]] = ...) -> None: ...

class MultimodalEmbedRequest(_message.Message):
    __slots__ = ("model", "items", "extra_inputs", "timeout")
    class ExtraInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    items: _containers.RepeatedCompositeFieldContainer[MultimodalItem]
    extra_inputs: _containers.MessageMap[str, _struct_pb2.Value]
    timeout: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., items: _Optional[_Iterable[_Union[MultimodalItem, _Mapping]]] = ..., extra_inputs: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class MultimodalEmbedResponse(_message.Message):
    __slots__ = ("embedding",)
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, embedding: _Optional[_Iterable[float]] = ...) -> None: ...
