"""Claims-based security: the ``$cbs`` put-token exchange."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..auth import AuthError, entity_path_from_audience, parse_sas_token, validate_token
from ..core.errors import EntityNotFoundError
from ..topology import SasPolicy
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
        audience = str(request.prop("name") or "")
        effect = connection.fault("put-token", entity_path_from_audience(audience))
        if connection.closed:
            return
        if effect is not None and effect.condition is not None:
            status, description = 503, effect.description
        else:
            status, description = self._put_token(connection, request)
        reply_link = connection.find_link(session, "$cbs")
        if reply_link is None:
            log.warning("put-token without a $cbs receiver link; dropping the reply")
            return
        reply = encode_response(
            request,
            status,
            description,
            None,
            status_code_key="status-code",
            status_description_key="status-description",
        )
        connection.after_fault(effect, lambda: connection.send_reply(reply_link, reply))

    def _put_token(self, connection: AmqpConnection, request: Request) -> tuple[int, str]:
        if str(request.prop("operation")) != "put-token":
            return 400, f"unsupported $cbs operation {request.prop('operation')!r}"
        audience = str(request.prop("name") or "")
        token = request.body
        if isinstance(token, bytes):
            token = token.decode("utf-8", "replace")
        if not isinstance(token, str):
            return 400, "the put-token body must be the token string"
        path = entity_path_from_audience(audience).removesuffix("/$management")
        entity_name, entity_policies = self._entity_policies(path)
        try:
            rights = validate_token(
                token, audience, [*self.server.topology.policies, *entity_policies], time.time()
            )
            parsed = parse_sas_token(token)
        except AuthError as exc:
            log.info("put-token refused for %s: %s", audience, exc)
            return 401, f"InvalidSignature: {exc}"
        if path:
            try:
                self.server.broker.resolve(path)
            except EntityNotFoundError as exc:
                return 404, str(exc)
        scope = entity_path_from_audience(parsed.sr)
        namespace_names = {p.name.casefold() for p in self.server.topology.policies}
        if parsed.skn.casefold() not in namespace_names and entity_name is not None:
            scope = entity_name  # an entity rule never reaches beyond its entity
        connection.tokens.grant(scope, rights, float(parsed.se))
        return 202, "Accepted"

    def _entity_policies(self, path: str) -> tuple[str | None, list[SasPolicy]]:
        """The queue or topic a path belongs to, and its entity-level SAS rules."""
        if not path:
            return None, []
        broker = self.server.broker
        first = path.split("/", 1)[0]
        for candidate in (path, first):
            entity = broker.queues.get(candidate.casefold()) or broker.topics.get(
                candidate.casefold()
            )
            if entity is not None:
                return entity.name, list(entity.description.policies)
        return None, []
