"""The HSES adapter end to end: a real policy server process, the emulator and its cell channel on loopback
threads, real time. A reach bundle for the GP7 is cloned from the expert in the test (seconds).

Also: the gripper's I/O command (0x78) byte for byte and against the emulator, and the cell channel's
answers to bad requests.
"""

from __future__ import annotations

import threading
import time

import msgpack
import pytest
import zmq
from twin_support import bridge_server

from bridge.hses import errors
from bridge.hses.adapter import AdapterConfig
from bridge.hses.cell_link import CellLink, CellLinkError
from bridge.hses.client import HsesClient
from bridge.hses.packets import Command, Request, Service, decode_request
from bridge.hses.payloads import decode_io_write, encode_io_write, io_group_kind
from genba.hses import Faults, HsesEmulator
from genba.hses.cell_channel import CellChannel
from genba.hses.motion import GRIP_CLOSED, GRIP_OPEN
from genba.hses.run import HsesRunError, parse_controller, run_hses

# --- 0x78 I/O data: bytes ------------------------------------------------------------------------------


def test_io_write_request_bytes():
    # Group 1001 (universal outputs 10010-10017), attribute 1, Set_Attribute_Single, one byte padded to a word.
    raw = Request(Command.IO_DATA, 1001, 1, Service.SET_SINGLE, 7, encode_io_write(0x01)).encode()
    assert raw[6:8] == b"\x04\x00"  # data size 4
    assert raw[11] == 7
    assert raw[24:32] == bytes([0x78, 0x00, 0xE9, 0x03, 0x01, 0x10, 0x00, 0x00])  # command, instance 1001, attr, service
    assert raw[32:] == b"\x01\x00\x00\x00"
    assert decode_io_write(decode_request(raw).payload) == 1
    assert decode_io_write(b"\x05") == 5  # the manual's one byte, unpadded


def test_io_read_request_and_groups():
    raw = Request(Command.IO_DATA, 1, 1, Service.GET_SINGLE, 0).encode()
    assert raw[24:30] == bytes([0x78, 0x00, 0x01, 0x00, 0x01, 0x0E]) and len(raw) == 32
    assert io_group_kind(1001) == "robot user output" and io_group_kind(2701) == "network input"
    assert io_group_kind(1000) is None and io_group_kind(1513) is None
    with pytest.raises(errors.BadPayload, match="0-255"):
        encode_io_write(256)
    with pytest.raises(errors.BadPayload, match="padded"):
        decode_io_write(b"\x01\x01\x00\x00")


@pytest.fixture
def quick_emulator():
    with HsesEmulator("reach", port=0, speed=0) as emu:
        yield emu
        assert emu.stats["crashed"] == 0


def test_gripper_follows_output_10010(quick_emulator):
    with HsesClient(*quick_emulator.address, timeout=1.0) as robot:
        assert robot.read_io(1001) == 0
        robot.write_io(1001, 0x01)
        assert robot.read_io(1001) == 1
        assert quick_emulator.motion.grip == GRIP_CLOSED
        robot.write_io(1001, 0x02)  # OT#2 on, OT#1 off: the gripper opens
        assert quick_emulator.motion.grip == GRIP_OPEN
        with pytest.raises(errors.InstanceOutOfRange):
            robot.write_io(1, 1)  # a robot user input is the cell's, not HSES's
        with pytest.raises(errors.InstanceOutOfRange):
            robot.read_io(1000)  # no such group
        with pytest.raises(errors.DataSizeError):
            robot.request(Command.IO_DATA, 1001, 1, Service.SET_SINGLE, b"\x01\x00")
        assert robot.read_io(1001) == 2  # refusals changed nothing


# --- the cell channel -------------------------------------------------------------------------------------


def test_cell_channel_answers_bad_requests_and_keeps_serving(quick_emulator):
    with CellChannel(quick_emulator, "tcp://127.0.0.1:*") as channel, CellLink(channel.endpoint, 5.0) as link:
        with pytest.raises(CellLinkError, match="op 'teleport'"):
            link.call("teleport")
        with pytest.raises(CellLinkError, match="'seed' must be a non-negative integer"):
            link.call("reset", seed="one")
        with pytest.raises(CellLinkError, match="fault kind 'meteor'"):
            link.fault("meteor")
        context = zmq.Context()
        try:
            raw = context.socket(zmq.REQ)
            raw.linger = 0
            raw.connect(channel.endpoint)
            raw.send(b"\xc1not msgpack")
            assert raw.poll(5000)
            reply = msgpack.unpackb(raw.recv())
            assert reply["ok"] is False and "not msgpack" in reply["error"]
            raw.send_multipart([msgpack.packb({"op": "sense"}), b"a second frame"])  # this ended the channel's thread
            assert raw.poll(5000)
            reply = msgpack.unpackb(raw.recv())
            assert reply["ok"] is False and "one msgpack frame, got 2" in reply["error"]
        finally:
            context.destroy(linger=0)
        link.reset(1_000_000)
        sensed = link.sense()
        assert sensed["step"] == 0 and sensed["done"] is False and len(sensed["task"]) > 0
        assert link.describe()["robot"]["model"] == "gp7"
        assert channel.errors == 5


def test_controller_address_is_checked():
    assert parse_controller("hses://10.0.0.2") == ("10.0.0.2", 10040)
    assert parse_controller("hses://[::1]:10041") == ("::1", 10041)
    with pytest.raises(HsesRunError, match="hses://HOST"):
        parse_controller("udp://10.0.0.2")
    with pytest.raises(HsesRunError, match="port 1-65535"):
        parse_controller("hses://host:99999")
    for url in ("hses://[::1", "hses://user@127.0.0.1:10778"):  # taken as ::1, and a socket.gaierror traceback
        with pytest.raises(HsesRunError, match="expected hses://HOST"):
            parse_controller(url)
    with pytest.raises(HsesRunError, match="cannot resolve host '256.1.1.1'"):  # was found only after the cell and server
        parse_controller("hses://256.1.1.1")


# --- the adapter end to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reach_gp7_server(tmp_path_factory):
    from policies.config import resolve_config
    from policies.run_export import export_run
    from policies.train import train

    root = tmp_path_factory.mktemp("hses-reach")
    cfg = resolve_config("reach", "bc", {"seed": 0, "robot": "gp7", "eval_episodes": 2,
                                         "bc": {"demo_episodes": 40, "iterations": 4000, "rounds": 0}})
    train(cfg, root / "run", progress=False)
    bundle = export_run(root / "run", root / "reach-gp7-bc")
    with bridge_server(bundle) as endpoint:
        yield endpoint


@pytest.fixture
def cell(request):
    """A real-time reach emulator that takes streamed moves, with its cell channel; faults from the test's marker."""
    faults = getattr(request, "param", Faults())
    with HsesEmulator("reach", port=0, speed=1.0, faults=faults, replace_moves=True) as emu:
        with CellChannel(emu, "tcp://127.0.0.1:*") as channel:
            yield emu, channel
        assert emu.stats["crashed"] == 0


def _run(emu, channel, endpoint, episodes, **config):
    lines = []
    report = run_hses(f"hses://{emu.address[0]}:{emu.address[1]}", channel.endpoint, endpoint, episodes,
                      config=AdapterConfig(**config), log=lines.append)
    return report, lines


def _at_step(emu, step: int, action) -> threading.Thread:
    """Run ``action`` once the emulator's episode reaches ``step`` (a real fault mid-episode)."""
    def watch():
        end = time.monotonic() + 30.0
        while time.monotonic() < end:
            with emu.lock:
                now = emu.motion.episode.steps if emu.motion.episode.seed is not None else -1
            if now >= step:
                action()
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_adapter_reaches_over_hses(cell, reach_gp7_server):
    emu, channel = cell
    report, _ = _run(emu, channel, reach_gp7_server, 4)
    assert report.stop is None and report.episodes == 4
    assert report.successes >= 3, report.lines()
    assert report.hses_rtt_ms["count"] > 4 * 5 * 4 and report.hses_rtt_ms["p50"] < 20.0
    assert report.held_periods == 0 and report.policy_status.get("ok", 0) > 0


# 1% of the replies, with a seed whose drops fall early (replies 13, 16, 60, 81, 108, ...): a short run sees them.
@pytest.mark.parametrize("cell", [Faults(drop_rate=0.01, seed=32)], indirect=True)
def test_adapter_holds_through_dropped_replies(cell, reach_gp7_server):
    emu, channel = cell
    report, _ = _run(emu, channel, reach_gp7_server, 4)
    assert emu.stats["replies_dropped"] >= 1
    assert report.lost_replies >= 1 and report.held_periods >= 1  # counted, not hidden
    assert report.stop is None and report.successes >= 3, report.lines()


def test_adapter_stops_the_episode_after_an_outage_and_goes_on(cell, reach_gp7_server):
    emu, channel = cell
    watcher = _at_step(emu, 5, lambda: emu.outage(2.0))
    report, lines = _run(emu, channel, reach_gp7_server, 2, outage_limit_s=1.0)
    watcher.join(5)
    assert report.stop is None and report.episodes == 2
    first = report.episode_stops[0]
    assert first["episode"] == 0 and "link lost" in first["reason"] and first["ends_run"] is False
    assert report.held_periods >= 15  # about 1 s of 50 ms periods held before the stop
    assert not report.episode_success[0]
    assert any("stopped: link lost" in line for line in lines)


@pytest.mark.parametrize("fault, reason, code", [
    ("servo_off", "servo off", "0x2070"),
    ("alarm", "alarm 4107", "0x2060"),
])
def test_adapter_stops_on_servo_off_and_alarm(cell, reach_gp7_server, fault, reason, code):
    emu, channel = cell
    action = emu.servo_off if fault == "servo_off" else emu.raise_alarm
    watcher = _at_step(emu, 8, action)
    report, _ = _run(emu, channel, reach_gp7_server, 3)
    watcher.join(5)
    assert report.stop is not None and report.stop["ends_run"] is True
    assert report.stop["reason"].startswith(reason) and report.stop["added_status"] == code
    assert report.episodes < 3 and not report.episode_success[-1]  # the policy stopped mid-episode: the run ends
    with HsesClient(*emu.address, timeout=1.0) as robot:
        assert not robot.read_status().running  # and the arm stands


def test_a_controller_that_refuses_moves_while_one_runs_stops_the_run_with_the_fix_named(reach_gp7_server):
    """Without --replace-moves the emulator answers the second streamed move 0x2010, which said no more than that."""
    with HsesEmulator("reach", port=0, speed=1.0, replace_moves=False) as emu:
        with CellChannel(emu, "tcp://127.0.0.1:*") as channel:
            report, lines = _run(emu, channel, reach_gp7_server, 2)
    assert report.stop is not None and report.stop["added_status"] == "0x2010"
    assert report.stop["reason"].startswith("move refused: MANIPULATOR_OPERATING")
    assert "genba hses-sim --replace-moves" in report.stop["reason"]
    assert any("replaces the running move" in line for line in lines)
