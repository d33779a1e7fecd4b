"""CURVE encryption and the controller allow-list, over real sockets; key generation."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import zmq
from bridge_support import serving

from bridge.client import BridgeClient, BridgeUnavailable, ClientConfig
from bridge.keys import ClientKeys, KeyFileError, ServerKeys, generate_keypair, load_public_key, load_secret_keypair

OBS = np.array([0.1, -0.2, 0.3, 0.2, -0.1, 0.2], dtype=np.float32)


@pytest.fixture
def keys(tmp_path):
    """server + two controllers; only 'cell-1' is on the server's allow-list."""
    generate_keypair(tmp_path / "server", "server")
    generate_keypair(tmp_path / "cell-1", "cell-1")
    generate_keypair(tmp_path / "intruder", "intruder")
    allow = tmp_path / "allowed"
    allow.mkdir()
    shutil.copy(tmp_path / "cell-1" / "cell-1.key", allow)
    return tmp_path


def curve_server(bundle, keys):
    return serving(bundle, keys=ServerKeys(keys / "server" / "server.key_secret", keys / "allowed"))


def client_for(server, bundle, keys, name):
    client_keys = None
    if name is not None:
        client_keys = ClientKeys(keys / name / f"{name}.key_secret", keys / "server" / "server.key")
    return BridgeClient(ClientConfig(server.endpoint, bundle.name, bundle.spec_hash, keys=client_keys, handshake_timeout_s=0.3))


def test_allowed_controller_is_served_over_curve(bundle, keys):
    with curve_server(bundle, keys) as server:
        with client_for(server, bundle, keys, "cell-1") as client:
            client.connect(5.0)
            result = client.step(OBS, deadline_s=2.0)
    assert result.status == "ok"
    np.testing.assert_array_equal(result.action, bundle.act(OBS))


@pytest.mark.parametrize("who", ["intruder", None], ids=["key-not-allowed", "no-curve"])
def test_unauthorized_controller_gets_no_action(bundle, keys, who):
    with curve_server(bundle, keys) as server:
        with client_for(server, bundle, keys, who) as client:
            with pytest.raises(BridgeUnavailable, match="public key in its allow-list"):
                client.connect(1.0)
            result = client.step(OBS, deadline_s=0.3)
        assert server.sessions == {}
        # The allowed controller is served meanwhile.
        with client_for(server, bundle, keys, "cell-1") as allowed:
            allowed.connect(5.0)
            assert allowed.step(OBS, deadline_s=2.0).status == "ok"
    assert result.status == "disconnected" and result.action is None


def test_raw_socket_with_the_wrong_server_key_receives_nothing(bundle, keys, tmp_path):
    generate_keypair(tmp_path / "fake", "server")  # a server key pair that is not the real one
    with curve_server(bundle, keys) as server:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        public, secret = load_secret_keypair(keys / "cell-1" / "cell-1.key_secret")
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.curve_serverkey = load_public_key(tmp_path / "fake" / "server.key")
        sock.connect(server.endpoint)
        sock.send_multipart([b"\x80"], zmq.NOBLOCK)  # queued: the CURVE handshake never completes
        assert sock.poll(500, zmq.POLLIN) == 0
        sock.close()
        ctx.term()


def test_keygen_writes_a_pair_and_refuses_to_overwrite(tmp_path):
    public, secret = generate_keypair(tmp_path, "cell-9")
    assert (public.name, secret.name) == ("cell-9.key", "cell-9.key_secret")
    assert secret.stat().st_mode & 0o777 == 0o600
    pub, sec = load_secret_keypair(secret)
    assert load_public_key(public) == pub and len(pub) == 40 and len(sec) == 40  # Z85 text of 32-byte keys
    with pytest.raises(KeyFileError, match="already exists; pick another --name or pass --force"):
        generate_keypair(tmp_path, "cell-9")
    generate_keypair(tmp_path, "cell-9", overwrite=True)
    assert load_public_key(public) != pub


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.key_secret", "not found (create one with `genba bridge keygen`)"),
        (lambda d: generate_keypair(d, "pub")[0], "holds only a public key"),
    ],
)
def test_key_loading_errors_name_the_fix(tmp_path, make, message):
    with pytest.raises(KeyFileError) as info:
        load_secret_keypair(make(tmp_path))
    assert message in str(info.value)


def doc_key_files() -> dict[str, str]:
    """The example certificate bodies in docs/bridge-protocol.md (```text key / ```text key_secret)."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "bridge-protocol.md").read_text()
    return dict(re.findall(r"```text (key|key_secret)\n(.*?)```", doc, flags=re.S))


def write_per_doc(path: Path, public: bytes, secret: bytes | None = None) -> Path:
    """A certificate as the doc describes it, written by hand (no pyzmq writer) with fresh keys."""
    examples = doc_key_files()
    example_public = re.search(r'public-key = "(.*)"', examples["key"]).group(1)
    body = examples["key" if secret is None else "key_secret"].replace(example_public, public.decode())
    if secret is not None:
        body = body.replace(re.search(r'secret-key = "(.*)"', body).group(1), secret.decode())
    path.write_text(body)
    return path


def test_doc_example_key_files_load_and_form_a_pair(tmp_path):
    examples = doc_key_files()
    public_file, secret_file = tmp_path / "example.key", tmp_path / "example.key_secret"
    public_file.write_text(examples["key"])
    secret_file.write_text(examples["key_secret"])
    public, secret = load_secret_keypair(secret_file)
    assert load_public_key(public_file) == public and len(public) == len(secret) == 40
    assert zmq.curve_public(secret) == public  # the example's public key is its secret key's


def test_a_controller_with_key_files_written_per_the_doc_is_served(bundle, keys, tmp_path):
    public, secret = zmq.curve_keypair()
    mine = tmp_path / "vendor"
    mine.mkdir()
    write_per_doc(mine / "cell-c.key_secret", public, secret)
    write_per_doc(keys / "allowed" / "cell-c.key", public)  # the server's allow-list
    with curve_server(bundle, keys) as server:
        client_keys = ClientKeys(mine / "cell-c.key_secret", keys / "server" / "server.key")
        with BridgeClient(ClientConfig(server.endpoint, bundle.name, bundle.spec_hash, keys=client_keys)) as client:
            client.connect(5.0)
            result = client.step(OBS, deadline_s=2.0)
    assert load_secret_keypair(mine / "cell-c.key_secret") == (public, secret)
    assert result.status == "ok"


@pytest.mark.parametrize("key", [b"tooshort", b'"' * 40, b"#" * 40], ids=["length", "not-z85", "overflow"])
def test_a_key_that_is_not_40_z85_characters_is_refused(tmp_path, key):
    path = write_per_doc(tmp_path / "bad.key", key)
    with pytest.raises(KeyFileError, match=r"bad.key: public-key is not a CURVE key \(\d+ characters; expected 40 "
                                           r"Z85 characters encoding 32 bytes\)") as info:
        load_public_key(path)
    assert key.decode() not in str(info.value)  # key material never goes into messages


def test_a_secret_key_file_whose_public_line_is_another_pairs_is_refused(tmp_path):
    """Loaded before: the peer was told one key, the handshake signed with another, and no controller got through."""
    public, secret = zmq.curve_keypair()
    other_public, _ = zmq.curve_keypair()
    path = write_per_doc(tmp_path / "mixed.key_secret", other_public, secret)
    with pytest.raises(KeyFileError, match=r"mixed.key_secret: its public-key line is not the public half of its secret key") as info:
        load_secret_keypair(path)
    assert secret.decode() not in str(info.value)
    assert load_secret_keypair(write_per_doc(tmp_path / "pair.key_secret", public, secret)) == (public, secret)


def test_a_bad_file_in_the_allow_list_stops_the_server_at_start(tmp_path, keys):
    (keys / "allowed" / "notes.key").write_text("just some notes\n")
    with pytest.raises(KeyFileError, match="notes.key: not a ZeroMQ certificate"):
        ServerKeys(keys / "server" / "server.key_secret", keys / "allowed")


def test_an_empty_allow_list_stops_the_server_at_start(tmp_path, keys):
    """CURVE with nobody allowed served 'ready' and refused every controller, without a word."""
    (tmp_path / "nobody").mkdir()
    with pytest.raises(KeyFileError, match="nobody holds no controller .key files, so no controller could connect"):
        ServerKeys(keys / "server" / "server.key_secret", tmp_path / "nobody")


def test_keygen_rejects_odd_names(tmp_path):
    with pytest.raises(KeyFileError, match="use letters, digits"):
        generate_keypair(tmp_path, "../escape")
