"""edgecnn makes no network request the user did not ask for (OpenVINO's telemetry included)."""

import os
import subprocess
import sys
import textwrap

import pytest

from edgecnn.runtime import available

# Runs the CLI in a child process with an audit hook that records every attempt to resolve a host
# name or open a connection, from any thread and from any process forked from it (OpenVINO's
# telemetry sends from a forked child), in the file AUDIT_LOG names.
AUDIT = textwrap.dedent(
    """
    import os, sys, threading, time
    LOG = os.environ["AUDIT_LOG"]
    EVENTS = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
              "socket.sendto", "socket.sendmsg", "urllib.Request", "http.client.connect"}
    def hook(event, args):
        if event in EVENTS:
            with open(LOG, "a") as f:
                f.write(f"{os.getpid()} {event} {repr(args)[:120]}\\n")
    sys.addaudithook(hook)
    from edgecnn.cli import main
    sys.argv[0] = "edgecnn"
    try:
        main()
        rc = 0
    except SystemExit as e:
        rc = e.code or 0
    time.sleep(2.0)  # a telemetry sender (thread, then forked process) would be sending by now
    sys.exit(rc)
    """
)


def _audited(*args, cwd):
    """(completed process, network attempts it and its children made)."""
    log = cwd / f"audit-{len(list(cwd.glob('audit-*')))}.log"
    env = {**os.environ, "AUDIT_LOG": str(log)}
    r = subprocess.run(
        [sys.executable, "-c", AUDIT, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )
    return r, (log.read_text().splitlines() if log.exists() else [])


@pytest.mark.skipif(not available("openvino"), reason="OpenVINO is not installed")
def test_openvino_export_and_bench_make_no_network_request(tmp_path):
    r, attempts = _audited("export", "lenet5", "-t", "openvino", "-o", str(tmp_path / "x"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert attempts == []
    xml = next((tmp_path / "x").rglob("*.xml"))
    r, attempts = _audited("bench", str(xml), "--duration", "0.2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert attempts == []


def test_the_audit_sees_a_connection_attempt_even_from_a_forked_child(tmp_path):
    """The probe itself works, for a lookup made in a forked process as OpenVINO's telemetry makes it
    (no traffic leaves: 'localhost' resolves from the hosts file, or fails; the attempt is seen)."""
    forked_lookup = textwrap.dedent(
        """
        import multiprocessing, socket
        def lookup():
            try:
                socket.getaddrinfo("localhost", 9)
            except OSError:
                pass
        def main():
            p = multiprocessing.get_context("fork").Process(target=lookup)
            p.start()
            p.join()
        """
    )
    probe = AUDIT.replace("from edgecnn.cli import main", forked_lookup)
    log = tmp_path / "audit.log"
    env = {**os.environ, "AUDIT_LOG": str(log)}
    r = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )
    assert r.returncode == 0, r.stderr
    assert "socket.getaddrinfo" in log.read_text()
