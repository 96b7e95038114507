import base64
import gc
import json
import logging
import sys
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import functions_framework
import pytest
from rotator import logs, secret
from rotator.dockerconfig import RegistryLogin, apply_manifest, merged_dockerconfig
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
    logs.configure("DEBUG")
    logs.configure("INFO")
    assert len([h for h in logging.getLogger().handlers if isinstance(h, logs._StdoutHandler)]) == 1


# -- redaction: every form, every logger, for the whole request ------------------------------------------------

PEM = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQ"quoted"\u00e9\n-----END PRIVATE KEY-----\n'
TOKEN = "ccr-tok-0123456789abcdef0123"


def lines_of(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def leaked_forms(value):
    """Every spelling a leak could take, so a test can scan a whole output for them."""
    return [form for form in secret.forms(value) if len(form) >= 8]


def assert_clean(output, *values):
    for value in values:
        for form in leaked_forms(value):
            assert form not in output, f"{form!r} leaked"


def revealed_copy(value):
    """A revealed copy of a secret whose wrapper is gone at once (as in a message built by a helper)."""
    return SecretStr(value).reveal()


def test_a_secret_stays_redacted_for_the_request_after_its_wrapper_is_collected(capsys):
    logger = logs.configure("INFO")
    token = logs.bind({})
    try:
        leaked = revealed_copy("tok-collected-0123456789")
        gc.collect()
        logger.info("inside the request: %s", leaked)
    finally:
        logs.unbind(token)
    logger.info("after the request: %s", leaked)  # a traceback logged by the framework comes after the handler
    out = capsys.readouterr().out
    assert "tok-collected" not in out
    assert [line["message"] for line in lines_of(out)] == [
        "inside the request: [REDACTED]",
        "after the request: [REDACTED]",
    ]


def test_redaction_runs_before_json_encoding_so_pem_keys_are_found(capsys):
    logger = logs.configure("INFO")
    key = SecretStr(PEM)
    logger.info("key: %s", key.reveal(), extra={"fields": {"key": key.reveal(), "nested": {"list": [key.reveal()]}}})
    out = capsys.readouterr().out
    assert_clean(out, PEM)
    (line,) = lines_of(out)
    assert line["message"] == "key: [REDACTED]"
    assert line["key"] == "[REDACTED]"
    assert line["nested"] == {"list": ["[REDACTED]"]}


@pytest.mark.parametrize(
    "spell",
    [
        json.dumps,
        repr,
        lambda v: json.dumps({"a": v}),
        lambda v: base64.b64encode(v.encode()).decode(),
        lambda v: base64.b64encode(v.encode()).decode().rstrip("="),
        lambda v: base64.urlsafe_b64encode(v.encode()).decode(),
        lambda v: base64.urlsafe_b64encode(v.encode()).decode().rstrip("="),
        lambda v: base64.b64encode(b"user:" + v.encode()).decode(),  # a docker config auth field
        lambda v: base64.b64encode(b"ab:" + v.encode() + b"\n").decode(),
        lambda v: base64.urlsafe_b64encode(b"x" + v.encode()).decode(),
        lambda v: urllib.parse.quote(v, safe=""),
    ],
)
@pytest.mark.parametrize("value", [TOKEN, PEM, 'p\u00e4ss w\u00f6rd "quoted" \\ 0123'])
def test_escaped_encoded_and_embedded_forms_are_redacted(capsys, spell, value):
    logger = logs.configure("INFO")
    wrapper = SecretStr(value)
    logger.info("payload %s", spell(wrapper.reveal()), extra={"fields": {"payload": spell(wrapper.reveal())}})
    out = capsys.readouterr().out
    assert_clean(out, value)
    assert "[REDACTED]" in lines_of(out)[0]["payload"]


def test_the_docker_config_the_rotator_builds_is_redacted_in_every_layer(capsys):
    logger = logs.configure("INFO")
    token = logs.bind({})
    try:
        login = RegistryLogin("reg.example", "ops@example.com", SecretStr(TOKEN), "alias", datetime.now(UTC))
        config = merged_dockerconfig(None, login)
        manifest = apply_manifest(
            namespace="a",
            name="b",
            dockerconfig=config,
            login=login,
            rotated_at=datetime.now(UTC),
            resource_version=None,
        )
        auth = json.loads(config)["auths"]["reg.example"]["auth"]
        gc.collect()
        logger.info("auth %s config %s manifest %s", auth, config.decode(), json.dumps(manifest))
    finally:
        logs.unbind(token)
    out = capsys.readouterr().out
    assert_clean(out, TOKEN, auth)  # the auth field is base64 again inside the manifest's data


@pytest.mark.parametrize(
    "name", ["urllib3.connectionpool", "kubernetes.client.rest", "werkzeug", "gunicorn.error", "flask.app"]
)
def test_other_libraries_records_go_through_the_same_formatter(capsys, name):
    logs.configure("INFO")
    logging.getLogger("gunicorn.error").addHandler(logging.StreamHandler(sys.stderr))  # as gunicorn sets it up
    logs.configure("INFO")
    wrapper = SecretStr("lib-secret-0123456789")
    logging.getLogger(name).error("sent %s", wrapper.reveal())
    captured = capsys.readouterr()
    assert "lib-secret" not in captured.out + captured.err
    assert [(line["logger"], line["message"]) for line in lines_of(captured.out)] == [(name, "sent [REDACTED]")]


def test_an_exception_is_logged_as_its_type_and_locations_never_its_message(capsys):
    logger = logs.configure("INFO")
    try:
        raise ValueError("unregistered secret: hunter2-and-more")  # noqa: TRY301 - the point of the test
    except ValueError:
        logger.exception("failed")
    (line,) = lines_of(capsys.readouterr().out)
    assert line["exception"] == "ValueError"
    assert "hunter2" not in json.dumps(line)
    assert any("test_logs.py" in frame for frame in line["stack"])


def test_a_record_that_cannot_be_formatted_never_prints_its_arguments(capsys):
    handler = logs._StdoutHandler()
    handler.setFormatter(logs.JsonFormatter())
    wrapper = SecretStr("arg-secret-0123456789")
    record = logging.LogRecord("rotator", logging.INFO, __file__, 1, "two %s %s", (wrapper.reveal(),), None)
    handler.handle(record)  # one argument short: the standard handler prints the format and its arguments
    captured = capsys.readouterr()
    assert "arg-secret" not in captured.out + captured.err
    assert json.loads(captured.err)["message"] == "a log record could not be written"


APP_SOURCE = """
import functions_framework
from rotator import logs
from rotator.secret import SecretStr

logs.configure("INFO")


def _credential():
    return SecretStr({value!r}).reveal()  # the wrapper is gone when this returns


@functions_framework.http
def boom(request):
    token = logs.bind({{}})
    try:
        raise RuntimeError("could not use " + _credential())
    finally:
        logs.unbind(token)
"""


def test_an_uncaught_exception_in_a_request_prints_no_secret(tmp_path, capfd):
    value = "uncaught-secret-0123456789"
    source = tmp_path / "app.py"
    source.write_text(APP_SOURCE.format(value=value))
    app = functions_framework.create_app(target="boom", source=str(source))
    response = app.test_client().post("/")
    captured = capfd.readouterr()
    output = captured.out + captured.err + response.get_data(as_text=True)
    assert response.status_code == 500
    assert_clean(output, value)
    errors = [line for line in lines_of(captured.out) if line.get("exception")]
    assert [line["exception"] for line in errors] == ["RuntimeError"]
