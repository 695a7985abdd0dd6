"""``paxostob serve --tls-cert/--tls-key/--tls-ca``: mutual TLS between real node processes.

A test CA and certificates are made with the ``openssl`` command (the test
fails if it is missing: CI must install it). Three nodes run with a
certificate signed by the CA, and broadcast over TLS. Then a hand-made TLS
client that knows the cluster secret dials node 3's peer port as node 1:
with a certificate signed by the CA it gets node 3's ``Hello`` (the
control); without a client certificate, or with one signed by another CA,
node 3 refuses it before any handshake message.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from paxostob.transport.auth import (
    HANDSHAKE_FRAME_BYTES_MAX,
    Hello,
    decode_hello,
    encode_hello,
    new_nonce,
)
from paxostob.transport.frames import FrameDecoder, encode_frame

from .cluster import Cluster

HOST = "127.0.0.1"
#: ``paxostob serve``'s default cluster id.
CLUSTER_ID = "paxostob"
TIMEOUT_S = 15.0

OPENSSL_CONFIG = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[node]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"""


def openssl(*args: str) -> None:
    tool = shutil.which("openssl")
    assert tool is not None, "this test needs the openssl command (apt-get install openssl)"
    subprocess.run([tool, *args], check=True, capture_output=True, timeout=30)


def make_ca(directory: Path, name: str, config: Path) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    openssl(
        "req", "-x509", "-config", str(config), "-extensions", "ca",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
    )  # fmt: skip
    return cert, key


def make_cert(directory: Path, name: str, ca: tuple[Path, Path], config: Path) -> tuple[Path, Path]:
    cert, key, csr = (directory / f"{name}{ext}" for ext in (".pem", ".key", ".csr"))
    openssl(
        "req", "-new", "-config", str(config),
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-set_serial", "1", "-days", "2", "-out", str(cert),
        "-extfile", str(config), "-extensions", "node",
    )  # fmt: skip
    return cert, key


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    config = tmp_path / "openssl.cnf"
    config.write_text(OPENSSL_CONFIG)
    ca = make_ca(tmp_path, "cluster-ca", config)
    rogue_ca = make_ca(tmp_path, "rogue-ca", config)
    return {
        "ca": ca,
        "node": make_cert(tmp_path, "node", ca, config),
        "rogue": make_cert(tmp_path, "rogue", rogue_ca, config),
    }


@pytest.fixture
def tls_cluster(tmp_path: Path, pki: dict[str, tuple[Path, Path]]) -> Iterator[Cluster]:
    cert, key = pki["node"]
    args = ("--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(pki["ca"][0]))
    cluster = Cluster(tmp_path, extra_args=args)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def hello_from_listener(port: int, ca: Path, client_cert: tuple[Path, Path] | None) -> Hello:
    """Dial ``port`` over TLS as node 1 and return node 3's Hello (raises if refused).

    The first message needs no secret: a refusal comes before it is answered.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.check_hostname = False
    if client_cert is not None:
        context.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    with (
        socket.create_connection((HOST, port), timeout=TIMEOUT_S) as raw,
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(encode_frame(encode_hello(Hello(CLUSTER_ID, "1", "3", new_nonce()))))
        decoder = FrameDecoder(HANDSHAKE_FRAME_BYTES_MAX)
        while (payload := decoder.next_payload()) is None:
            data = tls.recv(4096)
            if not data:
                raise ConnectionResetError("node 3 closed the connection")
            decoder.feed(data)
        return decode_hello(payload)


def test_tls_peers_broadcast_and_a_peer_without_a_cert_from_the_ca_is_refused(
    tls_cluster: Cluster, pki: dict[str, tuple[Path, Path]]
) -> None:
    node1, node3 = tls_cluster.nodes["1"], tls_cluster.nodes["3"]
    pos, _ = node1.call("PAXOS.BROADCAST", "over-tls")
    node3.call("PAXOS.WAIT", int(pos), 10_000, timeout_s=TIMEOUT_S)
    ca = pki["ca"][0]
    # The control: a client certificate from the CA gets node 3's Hello.
    hello = hello_from_listener(node3.peer_port, ca, pki["node"])
    assert (hello.sender, hello.receiver) == ("3", "1")
    for cert in (None, pki["rogue"]):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            hello_from_listener(node3.peer_port, ca, cert)
    # Still serving its real peers.
    pos, _ = node3.call("PAXOS.BROADCAST", "after-the-strangers")
    node1.call("PAXOS.WAIT", int(pos), 10_000, timeout_s=TIMEOUT_S)
