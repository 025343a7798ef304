"""Joining a Ray cluster: an unreachable address ends the command within the timeout, in one line (issue 33, item 4)."""

import socket
import time

import pytest

from rewardlab.cli import main
from rewardlab.distributed.cluster import ClusterUnreachable, probe


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_probe_refused_port_is_reported():
    with pytest.raises(ClusterUnreachable, match=r"no Ray cluster at 127\.0\.0\.1:\d+"):
        probe(f"127.0.0.1:{_closed_port()}", timeout=2)


def test_probe_listening_port_passes():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        probe(f"ray://127.0.0.1:{server.getsockname()[1]}", timeout=2)


@pytest.mark.parametrize("address", ["ray://192.0.2.1:10001", "127.0.0.1:{port}"])  # TEST-NET-1: never routed
def test_score_with_unreachable_cluster_ends_quickly(address, tmp_path, capsys):
    pytest.importorskip("ray")
    data = tmp_path / "items.jsonl"
    data.write_text('{"prompt": "hi", "response": "hello"}\n')
    start = time.monotonic()
    code = main(["score", "--model", "builtin:minilm", "--data", str(data), "--output", str(tmp_path / "s.jsonl"),
                 "--ray", address.format(port=_closed_port()), "--ray-timeout", "1.5"])
    assert code == 2 and time.monotonic() - start < 20
    err = capsys.readouterr().err
    assert "no Ray cluster at" in err and "--ray-timeout" in err and "Traceback" not in err
    assert not (tmp_path / "s.jsonl").exists()
