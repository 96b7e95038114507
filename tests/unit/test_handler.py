import pytest
from rotator.errors import BadRequestError
from rotator.handler import parse_body


@pytest.mark.parametrize(
    ("raw", "dry_run"),
    [(b"", False), (b"  ", False), (b"{}", False), (b'{"dry_run": true}', True), (b'{"dry_run": false}', False)],
)
def test_parse_body_accepts(raw, dry_run):
    assert parse_body(raw) is dry_run


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"force": true}', "unknown field"),
        (b'{"dry_run": "yes"}', "true or false"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_parse_body_rejects(raw, match):
    with pytest.raises(BadRequestError, match=match):
        parse_body(raw)
