"""The schema registry: versions of user message types, checked for compatibility, decoded strictly.

- `_descriptors`: descriptor sets — validated, fingerprinted, compiled from .proto, message classes.
- `_compat`: the compatibility rules (at least buf's WIRE_JSON) and the modes.
- `_decode`: strict binary and JSON decoding that names the field path of what does not fit.
- `_json`: mesh messages to JSON with the user messages their Any fields hold.
- `_store`: `SchemaRegistry` over the NATS KV bucket ``tm_schemas``.
"""

from mesh.schemas._compat import MODE_NAMES, Violation, check, compare, mode_from_name, mode_name
from mesh.schemas._decode import check_no_unknown_fields, decode_strict, from_json, to_json
from mesh.schemas._descriptors import (
    check_subject,
    compile_proto,
    descriptor_set_of,
    fingerprint,
    load_descriptor_set,
    message_class,
)
from mesh.schemas._json import to_dict, type_urls
from mesh.schemas._store import SCHEMAS_BUCKET, IncompatibleSchema, SchemaRegistry, Subject

__all__ = [
    "MODE_NAMES",
    "SCHEMAS_BUCKET",
    "IncompatibleSchema",
    "SchemaRegistry",
    "Subject",
    "Violation",
    "check",
    "check_no_unknown_fields",
    "check_subject",
    "compare",
    "compile_proto",
    "decode_strict",
    "descriptor_set_of",
    "fingerprint",
    "from_json",
    "load_descriptor_set",
    "message_class",
    "mode_from_name",
    "mode_name",
    "to_dict",
    "to_json",
    "type_urls",
]
