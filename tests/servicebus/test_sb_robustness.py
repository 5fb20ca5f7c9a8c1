"""A misbehaving peer costs only its own connection; health and CLI start-up."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request

from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulator.servicebus import PROJECT_CONFIG, ServiceBusEmulator

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"


def _read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_malformed_frame_closes_only_that_connection(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage("before"))
            with socket.create_connection((emulator.host, emulator.port)) as sock:
                sock.sendall(AMQP_HEADER)
                # a 16-byte frame whose body is not an AMQP value
                sock.sendall(b"\x00\x00\x00\x10\x02\x00\x00\x00" + b"\xff" * 8)
                reply = _read_until_closed(sock)
            assert reply.startswith(AMQP_HEADER)  # answered, then closed
            sender.send_messages(ServiceBusMessage("after"))
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            got = []
            while len(got) < 2:
                batch = receiver.receive_messages(max_message_count=2, max_wait_time=2)
                assert batch
                got.extend(batch)
            assert [str(m) for m in got] == ["before", "after"]


def test_wrong_protocol_header_is_answered_and_closed(emulator: ServiceBusEmulator) -> None:
    with socket.create_connection((emulator.host, emulator.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert _read_until_closed(sock) == AMQP_HEADER


def test_oversized_frame_closes_the_connection(emulator: ServiceBusEmulator) -> None:
    with socket.create_connection((emulator.host, emulator.port)) as sock:
        sock.sendall(AMQP_HEADER + b"\x7f\xff\xff\xff\x02\x00\x00\x00")
        assert _read_until_closed(sock).startswith(AMQP_HEADER)


def test_health_endpoint(emulator: ServiceBusEmulator) -> None:
    with urllib.request.urlopen(emulator.health_url, timeout=5) as response:
        assert response.status == 200
        assert json.load(response) == {"status": "healthy", "message": "Service is healthy."}


def test_many_emulators_in_one_process() -> None:
    from sb_topology import sample_topology

    with ServiceBusEmulator(sample_topology()) as a, ServiceBusEmulator(sample_topology()) as b:
        assert a.port != b.port
        with ServiceBusClient.from_connection_string(a.connection_string) as client:
            with client.get_queue_sender("q") as sender:
                sender.send_messages(ServiceBusMessage("only-a"))
        with ServiceBusClient.from_connection_string(b.connection_string) as client:
            with client.get_queue_receiver("q") as receiver:
                assert receiver.peek_messages(max_message_count=5) == []


def test_cli_starts_on_project_topology_and_prints_connection_string() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator.servicebus",
            "--config",
            str(PROJECT_CONFIG),
            "--port",
            "0",
            "--admin-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "connection string:" in line:
                break
        conn = lines[-1].split("connection string:", 1)[1].strip()
        assert "UseDevelopmentEmulator=true" in conn
        with ServiceBusClient.from_connection_string(conn) as client:
            with client.get_topic_sender("huntaze-jobs") as sender:
                sender.send_messages(
                    ServiceBusMessage("{}", application_properties={"jobType": "chat.suggest"})
                )
            with client.get_subscription_receiver(
                "huntaze-jobs", "chat-suggestions", max_wait_time=2
            ) as receiver:
                (msg,) = receiver.receive_messages(max_wait_time=2)
                receiver.complete_message(msg)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cli_rejects_invalid_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "Config.json"
    bad.write_text(
        '{"UserConfig": {"Namespaces": [{"Name": "x", "Queues": [{"Name": "q", '
        '"Properties": {"LockDuration": "PT2X"}}]}]}}'
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator.servicebus",
            "--config",
            str(bad),
            "--port",
            "0",
            "--admin-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "LockDuration" in result.stderr


def test_cli_reports_a_busy_port_clearly() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "emulator.servicebus", "--port", str(port), "--admin-port", "0"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 3
    assert "--port 0" in result.stderr
