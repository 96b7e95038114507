import json
from concurrent.futures import ThreadPoolExecutor

from rotator import logs
from rotator.secret import SecretStr


def test_log_lines_are_json_with_severity_context_and_redaction(capsys):
    logger = logs.configure("INFO")
    secret = SecretStr("tok-0123456789abcdef")
    context = logs.request_context(
        {"Function-Execution-Id": "exec-1", "X-Cloud-Trace-Context": "abc123/456;o=1"}, "proj"
    )
    token = logs.bind(context)
    try:
        logger.info("hello %s", secret.reveal(), extra={"fields": {"namespace": "a"}})
        with ThreadPoolExecutor(1) as pool:
            pool.submit(logs.in_context(lambda: logger.warning("from a worker"))).result()
    finally:
        logs.unbind(token)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["severity"] for line in lines] == ["INFO", "WARNING"]
    assert lines[0]["message"] == "hello [REDACTED]"
    assert lines[0]["namespace"] == "a"
    for line in lines:
        assert line["logging.googleapis.com/labels"] == {"execution_id": "exec-1"}
        assert line["logging.googleapis.com/trace"] == "projects/proj/traces/abc123"
        assert line["logging.googleapis.com/spanId"] == "456"


def test_secret_str_never_shows_its_value():
    secret = SecretStr("sk-very-secret-value")
    assert "sk-very" not in repr(secret)
    assert "sk-very" not in str(secret)
    assert "sk-very" not in f"{secret}"
    assert secret.reveal() == "sk-very-secret-value"


def test_configure_is_idempotent():
    logger = logs.configure("DEBUG")
    logs.configure("INFO")
    assert len([h for h in logger.handlers if isinstance(h, logs._StdoutHandler)]) == 1
