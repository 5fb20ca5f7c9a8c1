"""Request/response messages on ``$cbs`` and ``$management`` nodes."""

from __future__ import annotations

from dataclasses import dataclass

from .codec import decode
from .message import (
    Properties,
    decode_application_properties,
    decode_properties,
    encode_application_properties,
    encode_properties,
    encode_value_section,
    split_sections,
)
from .types import Described, Int


@dataclass(slots=True)
class Request:
    properties: Properties
    application_properties: dict[str, object]
    body: object

    def prop(self, name: str) -> object:
        for key, value in self.application_properties.items():
            if str(key) == name:
                return value
        return None


def parse_request(raw: bytes) -> Request:
    sections = split_sections(raw)
    properties = decode_properties(sections.properties) if sections.properties else Properties()
    app = (
        decode_application_properties(sections.application_properties)
        if sections.application_properties
        else {}
    )
    body: object = None
    if sections.body:
        value, _ = decode(sections.body)
        body = value.value if isinstance(value, Described) else value
    return Request(properties, {str(k): v for k, v in app.items()}, body)


def encode_response(
    request: Request,
    status_code: int,
    description: str,
    body: object,
    *,
    status_code_key: str,
    status_description_key: str,
    extra_properties: dict[str, object] | None = None,
) -> bytes:
    properties = Properties(correlation_id=request.properties.message_id)
    application = {status_code_key: Int(status_code), status_description_key: description}
    application.update(extra_properties or {})
    return (
        encode_properties(properties)
        + encode_application_properties(application)
        + encode_value_section(body)
    )


def map_get(value: object, key: str) -> object:
    """Look a key up in a request map whose keys may be str or Symbol."""
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k) == key:
                return v
    return None
