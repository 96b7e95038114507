import pytest
from rotator.bounded import Answer, clip, read_capped


def reader(data, chunk=7):
    def read(amount):
        nonlocal data
        piece, data = data[: min(amount, chunk)], data[min(amount, chunk) :]
        return piece

    return read


def test_read_capped_returns_the_whole_body_up_to_the_cap():
    assert read_capped(reader(b"x" * 100), 100) == b"x" * 100
    assert read_capped(reader(b""), 10) == b""


def test_read_capped_stops_past_the_cap():
    assert read_capped(reader(b"x" * 101), 100) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("tab\tnew\nline\x1b[0m", "tab?new?line?[0m"),
        ("caf\u00e9 \u202e", "caf? ?"),
        ("y" * 200, "y" * 200),
        ("y" * 201, "y" * 197 + "..."),
    ],
)
def test_clip_keeps_printable_ascii_of_bounded_length(text, expected):
    assert clip(text) == expected


@pytest.mark.parametrize(
    ("status", "ok"), [(200, True), (204, True), (299, True), (301, False), (308, False), (404, False)]
)
def test_only_a_2xx_answer_is_ok(status, ok):
    assert Answer(status, "").ok is ok


@pytest.mark.parametrize(("body", "decoded"), [(b'{"a": 1}', {"a": 1}), (b"not json", None), (b"[" * 100_000, None)])
def test_answer_json_is_none_for_anything_undecodable(body, decoded):
    assert Answer(200, "", {}, body).json() == decoded
