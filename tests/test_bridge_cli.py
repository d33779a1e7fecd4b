"""`genba bridge serve|keygen` as users run them: separate processes, signals, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zmq

from bridge.client import BridgeClient, ClientConfig
from genba.server_process import stop_process
from policies.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
OBS = np.array([0.1, -0.2, 0.3, 0.2, -0.1, 0.2], dtype=np.float32)


def genba(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "genba", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout, cwd=ROOT)


def start_server(*args):
    proc = subprocess.Popen([sys.executable, "-m", "genba", "bridge", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"server exited before it was ready: {proc.stderr.read()}")
    return proc, json.loads(line)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_answers_then_shuts_down_cleanly_on_signal(bundle_dir, signum):
    proc, ready = start_server(str(bundle_dir), "--bind", "tcp://127.0.0.1:*", "--telemetry", "tcp://127.0.0.1:*",
                               "--device", "cpu")
    try:
        assert ready["event"] == "ready" and ready["bundles"] == ["gantry-reach"]
        assert (ready["device"], ready["backend"], ready["curve"]) == ("cpu", "onnx", False)
        assert ready["executors"] == {"gantry-reach": "onnxruntime"}  # the default; --executor kernel opts in
        assert ready["endpoint"].startswith("tcp://127.0.0.1:") and ready["telemetry"].startswith("tcp://127.0.0.1:")
        bundle = load_bundle(bundle_dir)
        with BridgeClient(ClientConfig(ready["endpoint"], bundle.name, bundle.spec_hash)) as client:
            client.connect(10.0)
            result = client.step(OBS, deadline_s=5.0)
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=15)
            after = client.step(OBS, deadline_s=0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result.status == "ok"
    np.testing.assert_array_equal(result.action, bundle.act(OBS))
    assert proc.returncode == 0, err
    stopped = json.loads(out.strip().splitlines()[-1])
    assert stopped["event"] == "stopped" and stopped["totals"]["served"] == 1
    assert f"signal {int(signum)}: shutting down" in err and "Traceback" not in err
    assert after.status == "disconnected"  # the client read the server's bye


@pytest.mark.parametrize(
    "args, message",
    [
        (["serve", "/nonexistent/bundle"], "error: /nonexistent/bundle: no such bundle directory"),
        (["serve", "{bundle}", "--bind", "tcp://0.0.0.0:5555", "--device", "cpu"],
         "error: tcp://0.0.0.0:5555 is not loopback: pass --curve-secret/--allow"),
        (["serve", "{bundle}", "--curve-secret", "x.key_secret"], "error: CURVE needs both --curve-secret"),
        (["serve", "{bundle}", "--bind", "bogus", "--device", "cpu"], "error: --bind 'bogus': expected tcp://HOST:PORT"),
        # libzmq would bind port 99999 modulo 2^16 and announce that port
        (["serve", "{bundle}", "--bind", "tcp://127.0.0.1:99999", "--device", "cpu"],
         "error: --bind 'tcp://127.0.0.1:99999': expected tcp://HOST:PORT with PORT 1-65535"),
        # a connect to a malformed address would be retried for ever: the twin hung without a word
        (["twin", "reach", "--connect", "bogus", "--episodes", "1"], "error: --connect 'bogus': expected tcp://HOST:PORT"),
        (["twin", "reach", "--connect", "tcp://127.0.0.1", "--episodes", "1"], "error: --connect 'tcp://127.0.0.1': expected"),
        (["run", "--controller", "hses://127.0.0.1", "--cell", "bogus", "--connect", "tcp://127.0.0.1:5555"],
         "error: --cell 'bogus': expected tcp://HOST:PORT"),
        (["serve", "{bundle}", "--bind", "tcp://127.0.0.1:5599", "--telemetry", "tcp://127.0.0.1:5599", "--device", "cpu"],
         "error: --telemetry tcp://127.0.0.1:5599 is --bind's endpoint"),  # said 'is another server using it?'
        # limits that served no one (every hello TOO_LARGE or BUSY) or failed deep inside (NaN), and a traceback
        (["serve", "{bundle}", "--max-sessions", "0", "--device", "cpu"], "error: --max-sessions must be an integer >= 1, got 0"),
        (["serve", "{bundle}", "--max-message-bytes", "-1", "--device", "cpu"], "error: --max-message-bytes must be an integer >= 1"),
        (["serve", "{bundle}", "--session-timeout", "nan", "--device", "cpu"], "error: --session-timeout must be a number > 0, got nan"),
        (["serve", "{bundle}", "--log-level", "bogus"], "error: --log-level 'bogus': use DEBUG, INFO"),
        (["twin", "reach", "--connect", "tcp://127.0.0.1:5555", "--speed", "nan"], "error: --speed must be >= 0, got nan"),
        (["run", "--controller", "hses://127.0.0.1", "--cell", "tcp://127.0.0.1:5590", "--connect", "tcp://127.0.0.1:5555",
          "--hses-timeout", "nan"], "error: --hses-timeout must be > 0, got nan"),  # ran, then 'in 1 tries of nan s'
        (["serve", "{bundle}", "--bind", "ipc:///nonexistent-dir/x.sock", "--telemetry", "off", "--device", "cpu"],
         "error: cannot bind ipc:///nonexistent-dir/x.sock: No such file or directory"),  # without 'another server?'
    ],
)
def test_bridge_user_errors_are_one_line_exit_1(bundle_dir, args, message):
    result = genba("bridge", *[a.format(bundle=bundle_dir) for a in args])
    assert result.returncode == 1
    (line,) = [l for l in result.stderr.strip().splitlines() if not l.startswith(("20", "pybullet build time"))]  # skip log lines
    assert line.startswith(message), result.stderr
    assert "another server" not in line or "in use" in line, line
    assert "Traceback" not in result.stderr


def test_serve_on_an_ipc_path_in_use_or_holding_a_file_is_refused(bundle_dir, tmp_path):
    """libzmq unlinks the path before binding: a second server took a live one's address (both 'ready'), and a file
    there was deleted."""
    from bridge.endpoints import check_ipc_path_free

    ctx = zmq.Context()
    live = ctx.socket(zmq.ROUTER)
    live.linger = 0
    endpoint = f"ipc://{tmp_path / 'srv.ipc'}"
    live.bind(endpoint)
    try:
        result = genba("bridge", "serve", str(bundle_dir), "--bind", endpoint, "--telemetry", "off", "--device", "cpu")
    finally:
        live.close()
        ctx.term()
    assert result.returncode == 1, result.stderr
    assert f"error: cannot bind {endpoint}: Address already in use, a process listens on it" in result.stderr
    check_ipc_path_free(endpoint)  # the closed socket's file is left behind: a stopped server's, free to take
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    result = genba("bridge", "serve", str(bundle_dir), "--bind", f"ipc://{notes}", "--telemetry", "off", "--device", "cpu")
    assert result.returncode == 1 and f"{notes} exists and is not a socket (binding would delete it)" in result.stderr
    assert notes.read_text() == "mine"


def test_serve_on_a_port_in_use_says_so(bundle_dir):
    ctx = zmq.Context()
    taken = ctx.socket(zmq.ROUTER)
    taken.linger = 0
    taken.bind("tcp://127.0.0.1:*")
    endpoint = taken.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        result = genba("bridge", "serve", str(bundle_dir), "--bind", endpoint, "--telemetry", "off", "--device", "cpu")
    finally:
        taken.close()
        ctx.term()
    assert result.returncode == 1
    assert f"error: cannot bind {endpoint}: Address already in use (is another server using it?)" in result.stderr


def test_serve_with_the_kernel_opted_in_gives_onnxruntimes_actions(bundle_dir):
    proc, ready = start_server(str(bundle_dir), "--bind", "tcp://127.0.0.1:*", "--telemetry", "off", "--device", "cpu",
                               "--executor", "kernel")
    try:
        assert ready["executors"] == {"gantry-reach": "native"}  # the compiled kernel (tests/test_bundle_executor.py)
        reference = load_bundle(bundle_dir)  # onnxruntime
        with BridgeClient(ClientConfig(ready["endpoint"], reference.name, reference.spec_hash)) as client:
            client.connect(10.0)
            for k in range(5):
                result = client.step(OBS * k, deadline_s=5.0)
                assert result.status == "ok"
                np.testing.assert_allclose(result.action, reference.act(OBS * k), rtol=0, atol=1e-6)
    finally:
        stop_process(proc)


def test_keygen_cli(tmp_path):
    first = genba("bridge", "keygen", str(tmp_path), "--name", "cell-2")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"public key: {tmp_path / 'cell-2.key'}",
                                         f"secret key: {tmp_path / 'cell-2.key_secret'} (keep private)"]
    again = genba("bridge", "keygen", str(tmp_path), "--name", "cell-2")
    assert again.returncode == 1
    assert again.stderr.strip() == f"error: {tmp_path / 'cell-2.key'} already exists; pick another --name or pass --force to replace it"


def test_two_servers_on_their_own_ipc_paths_each_get_telemetry_beside_them(bundle_dir, tmp_path):
    """Telemetry defaulted to tcp://127.0.0.1:5556 whatever --bind was: the second server on its own ipc path failed
    with 'cannot bind tcp://127.0.0.1:5556: Address already in use', a port nobody had asked for."""
    from genba.server_process import ServerProcess

    with ServerProcess([bundle_dir], "--bind", f"ipc://{tmp_path}/s1", "--device", "cpu") as first, \
            ServerProcess([bundle_dir], "--bind", f"ipc://{tmp_path}/s2", "--device", "cpu") as second:
        assert first.ready["telemetry"] == f"ipc://{tmp_path}/s1.telemetry"
        assert second.ready["telemetry"] == f"ipc://{tmp_path}/s2.telemetry"
