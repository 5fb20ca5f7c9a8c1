"""The baseline: a trivial AMQP peer built on Qpid Proton that does no broker work.

It answers ``$cbs`` put-token with 202, accepts every transfer, and serves an endless supply of
one pre-encoded message to any receiver, settling whatever the client settles. Measuring the
same SDK calls against it and against the emulator shows whether the emulator is the bottleneck.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime, timedelta

from proton import Delivery, Message, symbol, timestamp
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Sink(MessagingHandler):  # type: ignore[misc]
    def __init__(self, url: str) -> None:
        super().__init__(prefetch=1000, auto_accept=True, auto_settle=True)
        self.url = url
        until = datetime.now(UTC) + timedelta(days=1)
        body = Message(
            body=b"x" * 100,
            annotations={
                symbol("x-opt-sequence-number"): 1,
                symbol("x-opt-enqueued-time"): timestamp(int(datetime.now(UTC).timestamp() * 1000)),
                symbol("x-opt-locked-until"): timestamp(int(until.timestamp() * 1000)),
            },
        )
        self.encoded = body.encode()

    def on_start(self, event) -> None:  # type: ignore[no-untyped-def]
        self.acceptor = event.container.listen(self.url)
        print("ready", flush=True)

    def on_link_opening(self, event) -> None:  # type: ignore[no-untyped-def]
        link = event.link
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if link.is_sender:
            # The SDK needs an initial delivery count on links where the peer sends.
            pass

    def on_sendable(self, event) -> None:  # type: ignore[no-untyped-def]
        sender = event.sender
        address = sender.remote_source.address or ""
        if address.endswith("$cbs") or address.endswith("$management"):
            return
        while sender.credit > 0:
            sender.delivery(uuid.uuid4().bytes_le)
            sender.send(self.encoded)
            sender.advance()

    def on_message(self, event) -> None:  # type: ignore[no-untyped-def]
        link = event.link
        address = link.remote_target.address or ""
        if not (address.endswith("$cbs") or address.endswith("$management")):
            return
        request = event.message
        reply = Message(
            correlation_id=request.id,
            properties={
                "status-code": 202,
                "status-description": "Accepted",
                "statusCode": 200,
                "statusDescription": "OK",
            },
            body={},
        )
        candidate = link.connection.link_head(0)
        while candidate is not None:
            if candidate.is_sender and (candidate.remote_source.address or "") == address:
                candidate.send(reply)
                return
            candidate = candidate.next(0)

    def on_disposition(self, event) -> None:  # type: ignore[no-untyped-def]
        pass

    def on_accepted(self, event) -> None:  # type: ignore[no-untyped-def]
        self._echo(event.delivery, Delivery.ACCEPTED)

    def on_released(self, event) -> None:  # type: ignore[no-untyped-def]
        self._echo(event.delivery, Delivery.RELEASED)

    def on_rejected(self, event) -> None:  # type: ignore[no-untyped-def]
        self._echo(event.delivery, Delivery.REJECTED)

    @staticmethod
    def _echo(delivery: Delivery, state: int) -> None:
        if not delivery.settled:
            delivery.update(state)
            delivery.settle()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    Container(Sink(f"127.0.0.1:{args.port}")).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
