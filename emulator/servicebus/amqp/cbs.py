"""Claims-based security: the ``$cbs`` put-token exchange."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..auth import AuthError, entity_path_from_audience, parse_sas_token, validate_token
from ..core.errors import EntityNotFoundError
from .requests import Request, encode_response, parse_request

if TYPE_CHECKING:
    from .connection import AmqpConnection
    from .links import Session
    from .server import AmqpServer

log = logging.getLogger("emulator.servicebus.cbs")


class CbsNode:
    def __init__(self, server: AmqpServer) -> None:
        self.server = server

    def handle(self, connection: AmqpConnection, session: Session, raw: bytes) -> None:
        request = parse_request(raw)
        status, description = self._put_token(connection, request)
        reply_link = connection.find_link(session, "$cbs")
        if reply_link is None:
            log.warning("put-token without a $cbs receiver link; dropping the reply")
            return
        connection.send_reply(
            reply_link,
            encode_response(
                request,
                status,
                description,
                None,
                status_code_key="status-code",
                status_description_key="status-description",
            ),
        )

    def _put_token(self, connection: AmqpConnection, request: Request) -> tuple[int, str]:
        if str(request.prop("operation")) != "put-token":
            return 400, f"unsupported $cbs operation {request.prop('operation')!r}"
        audience = str(request.prop("name") or "")
        token = request.body
        if isinstance(token, bytes):
            token = token.decode("utf-8", "replace")
        if not isinstance(token, str):
            return 400, "the put-token body must be the token string"
        try:
            rights = validate_token(token, audience, self.server.topology.policies, time.time())
            scope = entity_path_from_audience(parse_sas_token(token).sr)
        except AuthError as exc:
            log.info("put-token refused for %s: %s", audience, exc)
            return 401, f"InvalidSignature: {exc}"
        path = entity_path_from_audience(audience)
        if path:
            try:
                self.server.broker.resolve(path.removesuffix("/$management"))
            except EntityNotFoundError as exc:
                return 404, str(exc)
        connection.tokens[scope.casefold()] = (rights, float(parse_sas_token(token).se))
        return 202, "Accepted"
