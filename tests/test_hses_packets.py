"""HSES bytes on the wire, written out by hand from the manual's layout tables (see docs/hses.md).

Every command genba speaks: the exact request the client sends (captured by a plain UDP socket on
loopback playing the controller) and the reply it decodes, plus the decoder's refusals of broken
datagrams, each naming the field and byte offset.
"""

from __future__ import annotations

import math
import socket
import threading

import pytest

from bridge.hses import errors
from bridge.hses.client import HsesClient
from bridge.hses.packets import Reply, Request, decode_reply, decode_request
from bridge.hses.payloads import Alarm, CartesianMotion, CycleMode, Position, PulseMotion, ResetKind, StatusBits
from bridge.hses.units import MoveSpeed


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


# Bytes 0-23, written once: "YERC", header size 0x0020, data size, reserve 3, division 1, ACK, request ID,
# block number, "99999999".
def head(data_size: str, ack: str, request_id: str, block: str) -> str:
    return f"59455243 2000 {data_size} 03 01 {ack} {request_id} {block} 3939393939393939"


def request_hex(data_size: str, sub: str, data: str = "", request_id: str = "00") -> bytes:
    return h(head(data_size, "00", request_id, "00000000") + sub + data)


def reply_hex(data_size: str, sub: str, data: str = "", request_id: str = "00") -> bytes:
    return h(head(data_size, "01", request_id, "00000080") + sub + data)


@pytest.fixture
def controller_socket():
    """A bare UDP socket on loopback that plays the controller: receives the client's datagram, sends ours."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def client(controller_socket):
    with HsesClient(*controller_socket.getsockname(), timeout=2.0, retries=0) as c:
        yield c


def exchange(controller_socket, call, reply: bytes | list[bytes]) -> tuple[bytes, object]:
    """Run ``call`` (a client method) while the socket answers its request with ``reply``; (request bytes, result)."""
    result: dict = {}

    def run():
        try:
            result["value"] = call()
        except Exception as exc:  # handed to the test below
            result["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    try:
        request, address = controller_socket.recvfrom(65535)
        for datagram in reply if isinstance(reply, list) else [reply]:
            controller_socket.sendto(datagram, address)
    finally:
        worker.join(10.0)
    assert not worker.is_alive()
    if "error" in result:
        raise result["error"]
    return request, result.get("value")


# --- reads ----------------------------------------------------------------------------------------


def test_read_status(controller_socket, client):
    # 0x72, instance 1, attribute 0, service 0x01 (Get_Attribute_All); no data.
    expected = request_hex("0000", "7200 0100 00 01 0000")
    # Data 1 0xC4: continuous (bit 2), play (bit 6), command remote (bit 7); Data 2 0x48: command hold (bit 3), servo on (bit 6).
    reply = reply_hex("0800", "81 00 00 00 0000 0000", "c4000000 48000000")
    sent, status = exchange(controller_socket, client.read_status, reply)
    assert sent == expected
    assert status == StatusBits(continuous=True, play=True, command_remote=True, hold_command=True, servo_on=True)
    assert StatusBits.decode(h("c4000000 48000000")).encode() == h("c4000000 48000000")


def test_read_status_bits_one_by_one():
    names = ["step", "one_cycle", "continuous", "running", "in_guard_safe_operation", "teach", "play", "command_remote"]
    for bit, name in enumerate(names):
        assert StatusBits(**{name: True}).words() == (1 << bit, 0)
    for bit, name in enumerate(["hold_pendant", "hold_external", "hold_command", "alarm", "error", "servo_on"], start=1):
        assert StatusBits(**{name: True}).words() == (0, 1 << bit)


def test_read_position_pulse(controller_socket, client):
    expected = request_hex("0000", "7500 0100 00 01 0000")  # instance 1: robot 1, pulses
    data = ("00000000 00000000 00000000 00000000 00000000"  # data type 0 (pulse), form, tool, user frame, ext form
            "e8030000 30f8ffff b80b0000 00000000 00000000 00000000 00000000 00000000")  # 1000, -2000, 3000, 0 ...
    sent, position = exchange(controller_socket, lambda: client.read_position("pulse"),
                              reply_hex("3400", "81 00 00 00 0000 0000", data))
    assert sent == expected
    assert position == Position(0, (1000, -2000, 3000, 0, 0, 0, 0, 0))


def test_read_position_cartesian(controller_socket, client):
    expected = request_hex("0000", "7500 6500 00 01 0000")  # instance 101: robot 1, Cartesian
    data = ("10000000 00000000 00000000 00000000 00000000"  # data type 16: base frame
            "20a10700 6079feff e0930400 40771b00 00000000 6044f2ff 00000000 00000000")
    sent, position = exchange(controller_socket, lambda: client.read_position("cartesian"),
                              reply_hex("3400", "81 00 00 00 0000 0000", data))
    assert sent == expected
    assert position.frame == 16 and position.axes[:6] == (500000, -100000, 300000, 1800000, 0, -900000)


def test_read_tool_pose_converts_to_metres_and_radians(controller_socket, client):
    data = "10000000 00000000 00000000 00000000 00000000 20a10700 6079feff e0930400 40771b00 00000000 6044f2ff 00000000 00000000"
    _, (xyz, rotation) = exchange(controller_socket, client.read_tool_pose, reply_hex("3400", "81 00 00 00 0000 0000", data))
    assert xyz.tolist() == pytest.approx([0.5, -0.1, 0.3])
    assert rotation.tolist() == pytest.approx([math.pi, 0.0, -math.pi / 2])


def test_read_torque(controller_socket, client):
    expected = request_hex("0000", "7700 0100 00 01 0000")
    data = "05000000 fdffffff 00000000 00000000 00000000 00000000 00000000 00000000"
    sent, torque = exchange(controller_socket, client.read_torque, reply_hex("2000", "81 00 00 00 0000 0000", data))
    assert sent == expected
    assert torque == (5, -3, 0, 0, 0, 0, 0, 0)


ALARM_DATA = ("0b100000 02000000 01000000"  # code 4107, data 2, type 1
              "323032342f30312f30322030333a3034"  # "2024/01/02 03:04"
              "54455354" + "00" * 28)  # "TEST", zero-padded to 32


def test_read_alarm(controller_socket, client):
    expected = request_hex("0000", "7000 0100 00 01 0000")
    sent, alarm = exchange(controller_socket, client.read_alarm, reply_hex("3c00", "81 00 00 00 0000 0000", ALARM_DATA))
    assert sent == expected
    assert alarm == Alarm(4107, 2, 1, "2024/01/02 03:04", "TEST")
    assert alarm.encode() == h(ALARM_DATA)


def test_read_alarm_history(controller_socket, client):
    expected = request_hex("0000", "7100 e903 00 01 0000")  # instance 1001: the monitor alarm list
    sent, alarm = exchange(controller_socket, lambda: client.read_alarm_history(1001),
                           reply_hex("3c00", "81 00 00 00 0000 0000", ALARM_DATA))
    assert sent == expected and alarm.code == 4107


# --- writes -----------------------------------------------------------------------------------------

SET_SINGLE_OK = reply_hex("0000", "90 00 00 00 0000 0000")  # service 0x10 + 0x80, status 0


@pytest.mark.parametrize("call, sub, data", [
    (lambda c: c.alarm_reset(), "8200 0100 01 10 0000", "01000000"),
    (lambda c: c.alarm_reset(ResetKind.ERROR), "8200 0200 01 10 0000", "01000000"),
    (lambda c: c.hold(True), "8300 0100 01 10 0000", "01000000"),
    (lambda c: c.hold(False), "8300 0100 01 10 0000", "02000000"),
    (lambda c: c.servo(True), "8300 0200 01 10 0000", "01000000"),
    (lambda c: c.servo(False), "8300 0200 01 10 0000", "02000000"),
    (lambda c: c.cycle_mode(CycleMode.STEP), "8400 0200 01 10 0000", "01000000"),
    (lambda c: c.cycle_mode(CycleMode.CONTINUOUS), "8400 0200 01 10 0000", "03000000"),
], ids=["alarm-reset", "error-cancel", "hold-on", "hold-off", "servo-on", "servo-off", "cycle-step", "cycle-continuous"])
def test_switch_commands(controller_socket, client, call, sub, data):
    sent, _ = exchange(controller_socket, lambda: call(client), SET_SINGLE_OK)
    assert sent == request_hex("0400", sub, data)


def test_move_cartesian_linear_absolute(controller_socket, client):
    data = ("01000000 00000000 01000000 d0070000 10000000"  # robot 1, station 0, class 1 (0.1 mm/s), 2000, base frame
            "20a10700 6079feff e0930400 40771b00 00000000 6044f2ff"  # X 500 mm, Y -100 mm, Z 300 mm, Rx 180, Ry 0, Rz -90 deg
            + "00000000" * 15)  # 2 reservations, type, ext type, tool, user frame, base axis 1-3, station axis 1-6
    expected = request_hex("6800", "8a00 0200 01 02 0000", data)  # instance 2, attribute 1, service 0x02; 104 bytes
    sent, _ = exchange(controller_socket, lambda: client.move_cartesian(
        [0.5, -0.1, 0.3], [math.pi, 0.0, -math.pi / 2], MoveSpeed.linear_mm_s(200.0)),
        reply_hex("0000", "82 00 00 00 0000 0000"))
    assert sent == expected


def test_move_cartesian_joint_and_incremental_instances(controller_socket, client):
    sent, _ = exchange(controller_socket, lambda: client.move_cartesian(
        [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], MoveSpeed.joint_percent(10.0), motion=CartesianMotion.JOINT_ABSOLUTE),
        reply_hex("0000", "82 00 00 00 0000 0000"))
    assert sent[24:30] == h("8a00 0100 01 02") and sent[32:48] == h("01000000 00000000 00000000 e8030000")
    sent, _ = exchange(controller_socket, lambda: client.move_cartesian(
        [0.0, 0.0, -0.001], [0.0, 0.0, 0.0], MoveSpeed.angular_deg_s(30.0), motion=CartesianMotion.LINEAR_INCREMENTAL),
        reply_hex("0000", "82 00 00 00 0000 0000", request_id="01"))
    assert sent[11] == 1 and sent[24:30] == h("8a00 0300 01 02")
    assert sent[40:48] == h("02000000 2c010000") and sent[60:64] == h("18fcffff")  # class 2, 300; Z -1000 um


def test_move_pulse_joint(controller_socket, client):
    data = ("01000000 00000000 00000000 c4090000"  # robot 1, station 0, class 0 (0.01 %), 2500 = 25 %
            "e8030000 30f8ffff b80b0000" + "00000000" * 5  # axis 1-8: 1000, -2000, 3000, 0 ...
            + "00000000" * 10)  # tool, base axis 1-3, station axis 1-6
    expected = request_hex("5800", "8b00 0100 01 02 0000", data)  # 88 bytes
    sent, _ = exchange(controller_socket, lambda: client.move_pulse([1000, -2000, 3000, 0, 0, 0], MoveSpeed.joint_percent(25.0)),
                       reply_hex("0000", "82 00 00 00 0000 0000"))
    assert sent == expected


def test_move_pulse_linear_instance(controller_socket, client):
    sent, _ = exchange(controller_socket,
                       lambda: client.move_pulse([0] * 6, MoveSpeed.linear_mm_s(50.0), motion=PulseMotion.LINEAR),
                       reply_hex("0000", "82 00 00 00 0000 0000"))
    assert sent[24:30] == h("8b00 0200 01 02") and sent[40:48] == h("01000000 f4010000")


# --- replies with errors, stale replies ---------------------------------------------------------------


def test_error_reply_raises_the_typed_error(controller_socket, client):
    reply = reply_hex("0000", "82 1f 01 00 7020 0000")  # status 0x1F, one word of added status: 0x2070
    with pytest.raises(errors.ServoOff) as caught:
        exchange(controller_socket, lambda: client.move_pulse([0] * 6, MoveSpeed.joint_percent(10.0)), reply)
    assert (caught.value.status, caught.value.added_status, caught.value.command) == (0x1F, 0x2070, 0x8B)
    assert "0x2070" in str(caught.value) and "Servo OFF" in str(caught.value)


def test_stand_alone_status_byte(controller_socket, client):
    with pytest.raises(errors.CommandNotDefined):
        exchange(controller_socket, client.read_status, reply_hex("0000", "81 08 00 00 0000 0000"))


def test_stale_and_malformed_replies_are_skipped(controller_socket, client):
    stale = reply_hex("0800", "81 00 00 00 0000 0000", "00000000 00000000", request_id="07")  # another request's ID
    broken = h("59455244") + stale[4:]  # identifier "YERD"
    good = reply_hex("0800", "81 00 00 00 0000 0000", "40000000 40000000")
    _, status = exchange(controller_socket, client.read_status, [stale, broken, good])
    assert status.play and status.servo_on
    assert client.stats["stale"] == 1 and client.stats["malformed"] == 1


def test_request_ids_increment_per_command(controller_socket, client):
    for n in range(3):
        sent, _ = exchange(controller_socket, client.read_status,
                           reply_hex("0800", "81 00 00 00 0000 0000", "00000000 00000000", request_id=f"{n:02x}"))
        assert sent[11] == n


# --- decoding refusals ----------------------------------------------------------------------------------

GOOD_REQUEST = request_hex("0400", "8300 0200 01 10 0000", "01000000")


def test_decode_round_trip():
    request = decode_request(GOOD_REQUEST)
    assert request == Request(0x83, 2, 1, 0x10, 0, h("01000000"))
    assert request.encode() == GOOD_REQUEST
    reply = decode_reply(SET_SINGLE_OK)
    assert reply == Reply(0x10, 0, 0, 0) and reply.encode() == SET_SINGLE_OK


@pytest.mark.parametrize("data, kind, field, offset", [
    (GOOD_REQUEST[:20], errors.TruncatedPacket, "header", 20),
    (GOOD_REQUEST[:34], errors.TruncatedPacket, "data", 34),
    (b"YERD" + GOOD_REQUEST[4:], errors.BadIdentifier, "identifier", 0),
    (GOOD_REQUEST[:4] + h("2100") + GOOD_REQUEST[6:], errors.BadHeaderSize, "header size", 4),
    (GOOD_REQUEST[:6] + h("e001") + GOOD_REQUEST[8:], errors.OversizePacket, "data size", 6),  # 480 > 479
    (GOOD_REQUEST + b"\0\0", errors.OversizePacket, "data", 36),
    (GOOD_REQUEST[:10] + h("01") + GOOD_REQUEST[11:], errors.BadAck, "ACK", 10),
    (GOOD_REQUEST[:9] + h("05") + GOOD_REQUEST[10:], errors.BadDivision, "division", 9),
    (GOOD_REQUEST[:12] + h("01000000") + GOOD_REQUEST[16:], errors.BadBlockNumber, "block number", 12),
], ids=["short-header", "short-data", "identifier", "header-size", "data-size-over-479", "extra-bytes", "ack",
        "division", "block"])
def test_decode_request_refuses(data, kind, field, offset):
    with pytest.raises(kind) as caught:
        decode_request(data)
    assert (caught.value.field, caught.value.offset) == (field, offset)
    assert f"{field} at byte {offset}" in str(caught.value)
    assert isinstance(caught.value, errors.HsesError)


def test_decode_reply_refuses_a_request_and_a_service_without_0x80():
    with pytest.raises(errors.BadAck):
        decode_reply(GOOD_REQUEST)
    with pytest.raises(errors.PacketError, match="service at byte 24"):
        decode_reply(reply_hex("0000", "10 00 00 00 0000 0000"))
