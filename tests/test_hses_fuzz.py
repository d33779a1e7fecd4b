"""Fuzzing the HSES decoder and the emulator: broken datagrams get a format-error reply or are dropped and
counted, never crash the server, and a valid request is answered afterwards."""

from __future__ import annotations

import random
import socket

import pytest

from bridge.hses.client import HsesClient
from bridge.hses.errors import PacketError
from bridge.hses.packets import HEADER_SIZE, Request, decode_reply, decode_request
from bridge.hses.payloads import MoveCartesianData, MovePulseData
from genba.hses import HsesEmulator

VALID = [
    Request(0x72, 1, 0, 0x01, 1),
    Request(0x75, 101, 0, 0x01, 2),
    Request(0x77, 1, 0, 0x01, 3),
    Request(0x70, 1, 0, 0x01, 4),
    Request(0x83, 1, 1, 0x10, 5, (1).to_bytes(4, "little")),
    Request(0x84, 2, 1, 0x10, 6, (3).to_bytes(4, "little")),
    Request(0x8A, 2, 1, 0x02, 7, MoveCartesianData(1, 1000, 16, (450000, 0, 300000, 1800000, 0, 0)).encode()),
    Request(0x8B, 1, 1, 0x02, 8, MovePulseData(0, 1000, (0, 0, 0, 0, 0, 0)).encode()),
]


def fuzzed(rng: random.Random) -> bytes:
    """One broken (or, by chance, valid) datagram of a randomly chosen kind."""
    valid = rng.choice(VALID).encode()
    kind = rng.randrange(6)
    if kind == 0:  # random bytes, any length up to oversize
        return rng.randbytes(rng.randrange(0, 700))
    if kind == 1:  # a valid request cut short
        return valid[: rng.randrange(0, len(valid))]
    if kind == 2:  # bit flips of a valid request
        data = bytearray(valid)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 3:  # oversize: a data part beyond 479 bytes, with the header saying so or not
        extra = rng.randbytes(rng.randrange(480, 1400))
        size = len(extra) if rng.random() < 0.5 else rng.randrange(0, 479)
        return valid[:6] + (size & 0xFFFF).to_bytes(2, "little") + valid[8:HEADER_SIZE] + extra
    if kind == 4:  # a wrong identifier on an otherwise valid request
        return rng.randbytes(4) + valid[4:]
    return valid + rng.randbytes(rng.randrange(1, 40))  # trailing bytes beyond the data size


def test_decoder_raises_only_packet_errors():
    rng = random.Random(7)
    for _ in range(20_000):
        data = fuzzed(rng)
        try:
            request = decode_request(data)
        except PacketError as exc:
            assert 0 <= exc.offset <= len(data) and exc.field
        else:  # whatever decodes is a request that survives its own round trip (reserve bytes are not checked)
            assert decode_request(request.encode()) == request and len(request.encode()) == len(data)


@pytest.fixture
def emulator():
    with HsesEmulator("conveyor-pick", port=0, speed=0) as emu:
        yield emu


def test_a_thousand_broken_datagrams_never_stop_the_emulator(emulator):
    rng = random.Random(11)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    try:
        sock.connect(emulator.address)
        answered = unanswered = 0
        for _ in range(1000):
            data = fuzzed(rng)
            sock.send(data)
            if len(data) < HEADER_SIZE:
                unanswered += 1  # no header: nothing to answer, dropped and counted
                continue
            reply = decode_reply(sock.recv(65535))  # a header: always an answer, and a well-formed one
            assert reply.request_id == data[11]
            answered += 1
        with HsesClient(*emulator.address, timeout=2.0, retries=0) as client:
            assert client.read_status().play  # still serving
    finally:
        sock.close()
    stats = emulator.stats
    assert stats["crashed"] == 0 and stats["datagrams"] == 1001
    assert stats["unanswerable"] == unanswered and answered > 500
    assert stats["malformed"] >= unanswered and stats["malformed"] > 300
