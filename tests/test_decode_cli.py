"""``dap-decode``: in-process through ``main([...])``, once through the installed script."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_codec_fixtures import INIT_REQ_BYTES, JOB_RESP_BYTES, REPORT_BYTES

from dap.codec import to_jsonable
from dap.decode_cli import main
from dap.messages import AggregationJobInitReq, AggregationJobResp, Report


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_tree_from_hex(capsys):
    rc, out, err = run(capsys, "--type", "aggregationjobinitreq", "--hex", INIT_REQ_BYTES.hex())
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "AggregationJobInitReq (application/dap-aggregation-job-init-req, 94 bytes)"
    assert "  agg_param: (0 bytes)" in lines
    assert "    query_type: fixed_size (2)" in lines
    assert "  prepare_inits: 1 item" in lines
    assert "          report_id: 8PHy8_T19vf4-fr7_P3-_w (hex f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff)" in lines
    assert "          time: 1700000000 (2023-11-14T22:13:20Z)" in lines
    assert "          enc: aabb (2 bytes)" in lines
    # the ping-pong payload is decoded underneath
    assert "        = PingPongMessage" in lines
    assert "          type: initialize (0)" in lines
    assert "          prep_share: 01020304 (4 bytes)" in lines


def test_long_bytes_are_shortened_unless_full(capsys):
    rc, out, _ = run(capsys, "-t", "Report", "--hex", REPORT_BYTES.hex())
    assert rc == 0
    assert f"    payload: {'22' * 32}… (70 bytes)" in out.splitlines()
    rc, out, _ = run(capsys, "-t", "Report", "--full", "--hex", REPORT_BYTES.hex())
    assert f"    payload: {'22' * 70} (70 bytes)" in out.splitlines()


def test_json_output(capsys):
    rc, out, _ = run(capsys, "--media-type", "application/dap-aggregation-job-resp", "--json", "--hex", JOB_RESP_BYTES.hex())
    assert rc == 0
    doc = json.loads(out)
    assert list(doc) == ["type", "media_type", "length", "message"]
    assert doc["type"] == "AggregationJobResp" and doc["length"] == len(JOB_RESP_BYTES)
    assert doc["message"] == to_jsonable(AggregationJobResp.decode(JOB_RESP_BYTES))
    resps = doc["message"]["prepare_resps"]
    assert resps[0] == {"report_id": "CgoKCgoKCgoKCgoKCgoKCg", "prepare_resp_state": "continue", "payload": "0200000000"}
    assert resps[1] == {"report_id": "CwsLCwsLCwsLCwsLCwsLCw", "prepare_resp_state": "finished"}
    assert resps[2]["prepare_error"] == "vdaf_prep_error"


def test_base64url_file_and_stdin(capsys, tmp_path, monkeypatch):
    b64 = base64.urlsafe_b64encode(REPORT_BYTES).decode().rstrip("=")
    rc, by_b64, _ = run(capsys, "-t", "report", "--base64url", b64)
    assert rc == 0
    path = tmp_path / "report.bin"
    path.write_bytes(REPORT_BYTES)
    rc, by_file, _ = run(capsys, "-t", "report", str(path))
    assert rc == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(REPORT_BYTES)))
    rc, by_stdin, _ = run(capsys, "-t", "report", "-")
    assert rc == 0
    assert by_b64 == by_file == by_stdin
    assert by_file.startswith("Report (application/dap-report, 230 bytes)\n")


def test_decode_error_is_one_line_exit_2(capsys):
    rc, out, err = run(capsys, "-t", "AggregationJobInitReq", "--hex", INIT_REQ_BYTES[:60].hex())
    assert rc == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(
        "dap-decode: error: AggregationJobInitReq.prepare_inits[0].report_share.report_metadata.time @ 57: "
        "truncated (need 8 bytes, have 3)"
    )
    rc, _, err = run(capsys, "-t", "Report", "--hex", (REPORT_BYTES + b"\x00").hex())
    assert rc == 2 and err == "dap-decode: error: Report @ 230: 1 byte left over after the message\n"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--hex", "00"], "give the message type"),
        (["-t", "nosuch", "--hex", "00"], "unknown message type 'nosuch'"),
        (["--media-type", "text/plain", "--hex", "00"], "unknown media type 'text/plain'"),
        (["-t", "report"], "give exactly one input"),
        (["-t", "report", "--hex", "00", "--base64url", "AA"], "give exactly one input"),
        (["-t", "report", "--hex", "zz"], "--hex: not a hex string"),
        (["-t", "report", "--base64url", "a+b/"], "--base64url: not URL-safe base64"),
        (["-t", "report", "/nonexistent/dir/file.bin"], "cannot read /nonexistent/dir/file.bin"),
        (["-t", "report", "--media-type", "application/dap-report", "--hex", "00"], "not allowed with argument"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line_exit_2(capsys, argv, fragment):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("dap-decode: error: ")
    assert fragment in err


def test_unreadable_directory_is_a_usage_error(capsys, tmp_path):
    rc, _, err = run(capsys, "-t", "report", str(tmp_path))
    assert rc == 2 and err.startswith(f"dap-decode: error: cannot read {tmp_path}")


def test_list_types(capsys):
    rc, out, _ = run(capsys, "--list-types")
    assert rc == 0
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()}
    assert rows["CollectionReq"] == "application/dap-collect-req"
    assert rows["PingPongMessage"] == "-"
    assert len(rows) == 26


def test_help_exits_zero(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0 and "--base64url" in out and "--list-types" in out


def test_installed_script(tmp_path):
    script = Path(sys.executable).with_name("dap-decode")
    assert script.exists(), f"entry point missing: {script} (pip install -e .)"
    path = tmp_path / "req.bin"
    path.write_bytes(INIT_REQ_BYTES)
    ok = subprocess.run([str(script), "-t", "AggregationJobInitReq", "--json", str(path)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["message"] == to_jsonable(AggregationJobInitReq.decode(INIT_REQ_BYTES))
    bad = subprocess.run([str(script), "-t", "Report", "-"], input=REPORT_BYTES[:-1], capture_output=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.decode().startswith("dap-decode: error: Report.helper_encrypted_input_share.payload @ 172: truncated")
    assert b"Traceback" not in bad.stderr and bad.stderr.count(b"\n") == 1
    assert Report.decode(REPORT_BYTES)  # the untruncated fixture is fine
