"""The emulated controller's state and its answer to each HSES request.

State: the mode key (play / teach), command remote, servo power, command hold, HLOCK, the cycle mode,
the active alarms (up to 4, newest first), the major-alarm history (up to 100) and an error code.
Requests are checked in this order (genba's; the manual gives none): instance (0xA001), service (status 0x08),
attribute (0xA002), data size (0xB003); then, for commands that act, the controller's state (see
`_check_may_move`); then the values (speed 0xB009, control group 0xB008, frame 0xB00B, tool 0xB00D,
user frame 0xB00E, anything else out of range 0xB004). A command this controller does not know gets
0xA000. Every refusal leaves the state as it was.

Which of two plausible codes a real controller picks is not always public (e.g. servo on during an
alarm: 0x3450 here); docs/hses.md lists these choices.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from bridge.hses.errors import STATUS_ADDED, PacketError
from bridge.hses.packets import DIVISION_ROBOT, Command, Reply, Request, Service, error_reply, reply_to
from bridge.hses.payloads import (
    CYCLE_MODE_INSTANCE,
    MOVE_CARTESIAN_SIZE,
    MOVE_PULSE_SIZE,
    OFF,
    ON,
    POSITION_CARTESIAN_R1,
    POSITION_PULSE_R1,
    WRITABLE_IO,
    Alarm,
    CartesianMotion,
    CycleMode,
    Frame,
    MoveCartesianData,
    MovePulseData,
    Position,
    PowerSwitch,
    PulseMotion,
    ResetKind,
    SpeedClass,
    StatusBits,
    decode_io_write,
    decode_u32,
    encode_torque,
    io_group_kind,
)
from bridge.hses.units import (
    TORQUE_UNITS_PER_PERCENT,
    HsesAxes,
    MoveSpeed,
    angle_units_to_radians,
    metres_to_micrometres,
    micrometres_to_metres,
    radians_to_angle_units,
)
from genba.hses.kinematics import tool_down_yaw
from genba.hses.motion import DATA_RANGE, CellMotion
from genba.hses.refusal import Refusal

log = logging.getLogger("genba.hses")

STATUS_NOT_SUPPORTED = 0x08  # the command has no such service (stand-alone status byte)
OTHER_ERROR = 0xCFFF  # the manual's "Other error": what an internal failure answers
MAX_ALARMS, MAX_HISTORY = 4, 100
# Speed ranges genba's controller accepts, in wire units: 0.01-100 %, 0.1-2000 mm/s, 0.1-360 deg/s.
SPEED_RANGE = {SpeedClass.PERCENT: (1, 10_000), SpeedClass.LINEAR: (1, 20_000), SpeedClass.ANGULAR: (1, 3_600)}
# Alarm history instances of 0x71: major failure, monitor, user (system), user (user), off-line.
HISTORY_RANGES = ((1, 100), (1001, 1100), (2001, 2100), (3001, 3100), (4001, 4100))


@dataclass
class ControllerState:
    play: bool = True  # the pendant's mode key: play, or teach
    remote: bool = True  # command remote: HSES may command the robot
    servo: bool = False
    hold: bool = False  # command hold (0x83 instance 1)
    hlock: bool = False  # interlock of the pendant and I/O (recorded; it does nothing here)
    cycle: CycleMode = CycleMode.CONTINUOUS
    alarms: list[Alarm] = field(default_factory=list)  # active, newest first
    history: list[Alarm] = field(default_factory=list)  # major failures, newest first
    error: int = 0  # an operator error code; 0 none
    io: dict[int, int] = field(default_factory=dict)  # I/O group -> its byte (absent: 0)
    replace_moves: bool = False  # a move while one runs: refused (0x2010), or replaces it (streaming; docs/hses.md)


class Controller:
    """Answers requests from the state and the cell. Call ``handle`` and ``motion.step`` from one thread."""

    def __init__(self, motion: CellMotion, axes: HsesAxes, state: ControllerState | None = None) -> None:
        if axes.count != len(motion.robot.arm_ids):
            raise ValueError(f"{axes.count} HSES axes for a robot with {len(motion.robot.arm_ids)} joints")
        self.motion, self.axes = motion, axes
        self.state = state or ControllerState()
        self._handlers = {
            Command.READ_ALARM: self._read_alarm, Command.READ_ALARM_HISTORY: self._read_history,
            Command.READ_STATUS: self._read_status, Command.READ_POSITION: self._read_position,
            Command.READ_TORQUE: self._read_torque, Command.ALARM_RESET: self._alarm_reset,
            Command.HOLD_SERVO: self._hold_servo, Command.CYCLE_MODE: self._cycle_mode,
            Command.MOVE_CARTESIAN: self._move_cartesian, Command.MOVE_PULSE: self._move_pulse,
            Command.IO_DATA: self._io_data,
        }

    # --- the one entry point --------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        if request.division != DIVISION_ROBOT:
            return error_reply(request, STATUS_ADDED, 0xE4A3)  # file commands are served on port 10041, not here
        handler = self._handlers.get(request.command)
        if handler is None:
            return error_reply(request, STATUS_ADDED, 0xA000)
        try:
            return reply_to(request, handler(request))
        except Refusal as refusal:  # the detail stays here: the wire has room for the code only
            log.debug("refused command 0x%02X instance %d: %s", request.command, request.instance, refusal)
            return error_reply(request, refusal.status, refusal.added_status)
        except Exception:  # a bug must cost one request, not the server: "other error", logged with its trace
            log.exception("command 0x%02X instance %d failed", request.command, request.instance)
            return error_reply(request, STATUS_ADDED, OTHER_ERROR)

    # --- fault injection and the pendant ----------------------------------------------------------
    def raise_alarm(self, code: int, name: str, data: int = 0, kind: int = 0) -> Alarm:
        """An alarm as the controller raises one: the arm stops, servo power drops, the alarm is listed."""
        alarm = Alarm(code, data, kind, time.strftime("%Y/%m/%d %H:%M"), name)
        self.state.alarms = [alarm, *self.state.alarms][:MAX_ALARMS]
        self.state.history = [alarm, *self.state.history][:MAX_HISTORY]
        self.servo_off()
        return alarm

    def servo_off(self) -> None:
        """Servo power off from outside HSES (emergency stop, the pendant): the arm stops where it is."""
        self.state.servo = False
        self.motion.stop()

    def status_bits(self) -> StatusBits:
        s = self.state
        return StatusBits(
            step=s.cycle == CycleMode.STEP, one_cycle=s.cycle == CycleMode.ONE_CYCLE,
            continuous=s.cycle == CycleMode.CONTINUOUS, running=self.motion.busy, teach=not s.play, play=s.play,
            command_remote=s.remote, hold_command=s.hold, alarm=bool(s.alarms), error=bool(s.error), servo_on=s.servo,
        )

    # --- reads ------------------------------------------------------------------------------------
    def _read_status(self, request: Request) -> bytes:
        _instance(request, {1})
        return _select(request, self.status_bits().fields())

    def _read_position(self, request: Request) -> bytes:
        _instance(request, {POSITION_PULSE_R1, POSITION_CARTESIAN_R1})
        if request.instance == POSITION_PULSE_R1:
            position = Position(Frame.PULSE, self.axes.radians_to_pulses(self.motion.joints()))
        else:
            xyz, rotation = self.motion.tool_pose()
            pose = tuple(metres_to_micrometres(v) for v in xyz) + tuple(radians_to_angle_units(v) for v in rotation)
            position = Position(Frame.BASE, pose)
        return _select(request, position.fields())

    def _read_torque(self, request: Request) -> bytes:
        _instance(request, {1})
        words = [int(round(v * TORQUE_UNITS_PER_PERCENT)) for v in self.motion.torque_percent()]
        words += [0] * (8 - len(words))  # axis 7-8 words, as for an 8-axis group
        return _select(request, [encode_torque((w,)) for w in words])

    def _read_alarm(self, request: Request) -> bytes:
        _instance(request, {1, 2, 3, 4})
        alarms = self.state.alarms
        return _select(request, (alarms[request.instance - 1] if request.instance <= len(alarms) else Alarm()).fields())

    def _read_history(self, request: Request) -> bytes:
        if not any(lo <= request.instance <= hi for lo, hi in HISTORY_RANGES):
            raise Refusal(0xA001, f"alarm history instance {request.instance}")
        history = self.state.history  # only major failures are kept; the other lists stay empty
        found = history[request.instance - 1] if request.instance <= len(history) else Alarm()
        return _select(request, found.fields())

    def _io_data(self, request: Request) -> bytes:
        """0x78: read any I/O group's byte; write the groups HSES may write (universal outputs, network inputs)."""
        kind = io_group_kind(request.instance)
        if kind is None:
            raise Refusal(0xA001, f"I/O group {request.instance}: no such group")
        if request.attribute != 1:
            raise Refusal(0xA002, f"attribute {request.attribute}: use 1")
        if request.service == Service.GET_SINGLE:
            if request.payload:
                raise Refusal(0xB003, f"a read carries no data, got {len(request.payload)} bytes")
            return bytes([self.state.io.get(request.instance, 0)])
        if request.service != Service.SET_SINGLE:
            raise Refusal(0, f"service 0x{request.service:02X}: I/O takes 0x0E or 0x10", status=STATUS_NOT_SUPPORTED)
        try:
            value = decode_io_write(request.payload)
        except PacketError as exc:
            raise Refusal(0xB003, exc.detail) from None
        if kind not in WRITABLE_IO:
            raise Refusal(0xA001, f"I/O group {request.instance} ({kind}) is not writable over HSES")
        self._need_remote()
        self.state.io[request.instance] = value
        self.motion.set_outputs(self.state.io)
        return b""

    # --- switches ---------------------------------------------------------------------------------
    def _alarm_reset(self, request: Request) -> bytes:
        _instance(request, {ResetKind.ALARM, ResetKind.ERROR})
        if _set_word(request) != 1:
            raise Refusal(DATA_RANGE, "alarm reset / error cancel takes the value 1")
        self._need_remote()
        if request.instance == ResetKind.ALARM:
            self.state.alarms = []
        else:
            self.state.error = 0
        return b""

    def _hold_servo(self, request: Request) -> bytes:
        _instance(request, {PowerSwitch.HOLD, PowerSwitch.SERVO, PowerSwitch.HLOCK})
        value = _set_word(request)
        if value not in (ON, OFF):
            raise Refusal(DATA_RANGE, f"switch value {value}: 1 on, 2 off")
        self._need_remote()
        on = value == ON
        if request.instance == PowerSwitch.HOLD:
            self.state.hold = on
            if on:
                self.motion.stop()  # a held move is over; a new move command continues
        elif request.instance == PowerSwitch.SERVO:
            if on and self.state.alarms:
                raise Refusal(0x3450, "an alarm is active: reset it first")
            if on and not self.state.play:
                raise Refusal(0x2080, "teach mode: servo power is the pendant's")
            if on:
                self.state.servo = True
            else:
                self.servo_off()
        else:
            self.state.hlock = on
        return b""

    def _cycle_mode(self, request: Request) -> bytes:
        _instance(request, {CYCLE_MODE_INSTANCE})
        value = _set_word(request)
        if value not in tuple(CycleMode):
            raise Refusal(DATA_RANGE, f"cycle mode {value}: 1 step, 2 one cycle, 3 continuous")
        self._need_remote()
        self.state.cycle = CycleMode(value)
        return b""

    # --- moves ------------------------------------------------------------------------------------
    def _move_cartesian(self, request: Request) -> bytes:
        _instance(request, set(CartesianMotion))
        data = MoveCartesianData.decode(_move_payload(request, MOVE_CARTESIAN_SIZE))
        self._check_may_move()
        _check_groups(data.robot_group, data.station_group)
        motion = CartesianMotion(request.instance)
        joint = motion == CartesianMotion.JOINT_ABSOLUTE
        speed = _speed(data.speed_class, data.speed, joint)
        if data.frame not in (Frame.BASE, Frame.ROBOT):  # no base axis: the robot frame is the base frame
            raise Refusal(0xB00B, f"coordinate {data.frame}: this cell moves in the base (16) or robot (17) frame")
        if data.tool != 0:
            raise Refusal(0xB00D, f"tool {data.tool}: the cell has tool 0 only")
        position = np.array([micrometres_to_metres(v) for v in data.pose[:3]])
        rotation = [angle_units_to_radians(v) for v in data.pose[3:]]
        if motion == CartesianMotion.LINEAR_INCREMENTAL:
            if abs(rotation[0]) > 1e-9 or abs(rotation[1]) > 1e-9:
                raise Refusal(DATA_RANGE, "an incremental Rx or Ry would tip the tool; this cell keeps it pointing down")
            start, yaw = self.motion.planned_pose()
            if yaw is None:
                raise Refusal(DATA_RANGE, "the tool does not point down: no incremental move from here")
            position, target_yaw = start + position, yaw + rotation[2]
        else:
            target_yaw = tool_down_yaw(rotation)
            if target_yaw is None:
                raise Refusal(DATA_RANGE, "the cell reaches tool-down poses only (Rx 180 deg, Ry 0)")
        if joint:
            self.motion.move_joints_to_pose(position, target_yaw, speed[1])
        else:
            self._linear(position, target_yaw, speed)
        return b""

    def _move_pulse(self, request: Request) -> bytes:
        _instance(request, set(PulseMotion))
        data = MovePulseData.decode(_move_payload(request, MOVE_PULSE_SIZE))
        self._check_may_move()
        _check_groups(data.robot_group, data.station_group)
        joint = request.instance == PulseMotion.JOINT
        speed = _speed(data.speed_class, data.speed, joint)
        if data.tool != 0:
            raise Refusal(0xB00D, f"tool {data.tool}: the cell has tool 0 only")
        target = self.axes.pulses_to_radians(data.pulses)
        if joint:
            self.motion.move_joints(target, speed[1])
        else:
            self.motion.check_limits(target, "target joints")
            position, yaw = self.motion.pose_of(target)
            if yaw is None:
                raise Refusal(DATA_RANGE, "a linear move ends in a tool-down pose in this emulator")
            self._linear(position, yaw, speed)
        return b""

    def _linear(self, position: np.ndarray, yaw: float, speed: tuple[SpeedClass, float]) -> None:
        kind, value = speed
        if kind == SpeedClass.LINEAR:
            self.motion.move_linear(position, yaw, mm_per_s=value)
        else:
            self.motion.move_linear(position, yaw, deg_per_s=value)

    def _check_may_move(self) -> None:
        """A move needs: no alarm, play mode, command remote, servo on, no hold, no move under way."""
        s = self.state
        if s.alarms or s.error:
            raise Refusal(0x2060, "an alarm or error is active")
        if not s.play:
            raise Refusal(0x2080, "teach mode: moves need play mode")
        self._need_remote()
        if not s.servo:
            raise Refusal(0x2070, "servo power is off")
        if s.hold:
            raise Refusal(0x2050, "command hold is on")
        if self.motion.busy and not s.replace_moves:
            raise Refusal(0x2010, "the previous move has not ended (poll the running bit)")

    def _need_remote(self) -> None:
        if not self.state.remote:
            raise Refusal(0x2100, "command remote is off")


# --- request checks -------------------------------------------------------------------------------


def _instance(request: Request, allowed: set[int]) -> None:
    if request.instance not in allowed:
        raise Refusal(0xA001, f"instance {request.instance} of command 0x{request.command:02X}")


def _select(request: Request, fields: list[bytes]) -> bytes:
    """A read: every field (Get_Attribute_All, attribute 0) or one field (Get_Attribute_Single, attribute 1..n)."""
    if request.service not in (Service.GET_ALL, Service.GET_SINGLE):
        raise Refusal(0, f"service 0x{request.service:02X} on a read", status=STATUS_NOT_SUPPORTED)
    if request.payload:
        raise Refusal(0xB003, f"a read carries no data, got {len(request.payload)} bytes")
    if request.service == Service.GET_ALL:
        if request.attribute != 0:
            raise Refusal(0xA002, f"attribute {request.attribute} with Get_Attribute_All (0x01): use 0")
        return b"".join(fields)
    if not 1 <= request.attribute <= len(fields):
        raise Refusal(0xA002, f"attribute {request.attribute}: 1..{len(fields)}")
    return fields[request.attribute - 1]


def _set_word(request: Request) -> int:
    """The one data word of a Set_Attribute_Single switch command (attribute 1)."""
    if request.service != Service.SET_SINGLE:
        raise Refusal(0, f"service 0x{request.service:02X}: this command takes Set_Attribute_Single (0x10)",
                      status=STATUS_NOT_SUPPORTED)
    if request.attribute != 1:
        raise Refusal(0xA002, f"attribute {request.attribute}: use 1")
    if len(request.payload) != 4:
        raise Refusal(0xB003, f"{len(request.payload)} data bytes, expected 4")
    return decode_u32(request.payload, "switch data")


def _move_payload(request: Request, size: int) -> bytes:
    if request.service != Service.SET_ALL:
        raise Refusal(0, f"service 0x{request.service:02X}: moves take Set_Attribute_All (0x02)",
                      status=STATUS_NOT_SUPPORTED)
    if request.attribute != 1:
        raise Refusal(0xA002, f"attribute {request.attribute}: use 1")
    if len(request.payload) != size:
        raise Refusal(0xB003, f"{len(request.payload)} data bytes, expected {size}")
    return request.payload


def _check_groups(robot: int, station: int) -> None:
    if robot != 1 or station != 0:
        raise Refusal(0xB008, f"control group robot {robot}, station {station}: this cell has robot 1 and no station")


def _speed(speed_class: int, word: int, joint: bool) -> tuple[SpeedClass, float]:
    """(class, value in %, mm/s or deg/s): percent for joint moves, mm/s or deg/s for linear ones."""
    allowed = (SpeedClass.PERCENT,) if joint else (SpeedClass.LINEAR, SpeedClass.ANGULAR)
    if speed_class not in allowed:
        raise Refusal(0xB009, f"speed class {speed_class} on a {'joint' if joint else 'linear'} move: use "
                              f"{' or '.join(str(int(c)) for c in allowed)}")
    kind = SpeedClass(speed_class)
    low, high = SPEED_RANGE[kind]
    if not low <= word <= high:
        raise Refusal(0xB009, f"speed {word} ({kind.name}): {low}..{high} in wire units")
    return kind, MoveSpeed.from_wire(kind, word).value

