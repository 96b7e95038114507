"""``make run``'s launcher: ``.env`` is parsed as data (never run by a shell) and the bind address is loopback."""

from __future__ import annotations

import pytest

from devkit.run_local import DEFAULT_HOST, DotenvError, bind_host, is_loopback, parse_dotenv


def test_parse_dotenv_reads_the_readme_example_and_common_forms():
    text = """
# Crusoe key
CRUSOE_ACCESS_KEY=AbC+/=
export CRUSOE_SECRET_KEY = c2VjcmV0
TARGET_NAMESPACES=web, ml ,batch   # three teams
REGISTRY_USERNAME='you@example.com'
KUBECONFIG="/home/you/my dir/kubeconfig"
   INDENTED=yes
EMPTY=
HASH_IN_VALUE=a#b
"""
    assert parse_dotenv(text) == {
        "CRUSOE_ACCESS_KEY": "AbC+/=",
        "CRUSOE_SECRET_KEY": "c2VjcmV0",
        "TARGET_NAMESPACES": "web, ml ,batch",
        "REGISTRY_USERNAME": "you@example.com",
        "KUBECONFIG": "/home/you/my dir/kubeconfig",
        "INDENTED": "yes",
        "EMPTY": "",
        "HASH_IN_VALUE": "a#b",
    }


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("X='single # not a comment' # a comment", "single # not a comment"),
        ('X="double \\"quoted\\" \\\\ \\n end" # a comment', 'double "quoted" \\ \n end'),
        ("X='$HOME and \\n stay literal'", "$HOME and \\n stay literal"),
        ("X=$(touch /tmp/owned) `id` $HOME", "$(touch /tmp/owned) `id` $HOME"),
        ("X=a=b=c", "a=b=c"),
        ("X=  spaced value  ", "spaced value"),
    ],
)
def test_parse_dotenv_values_are_data_never_shell(line, value):
    assert parse_dotenv(line) == {"X": value}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("JUST_A_NAME", "line 1: expected KEY=VALUE"),
        ("# ok\n1BAD=x", "line 2: expected KEY=VALUE"),
        ("BAD KEY=x", "line 1: expected KEY=VALUE"),
        ("X='unterminated", "line 1: the single-quoted value has no closing quote"),
        ('X="unterminated secret', "line 1: the double-quoted value has no closing quote"),
    ],
)
def test_parse_dotenv_names_the_bad_line_without_its_value(text, match):
    with pytest.raises(DotenvError, match=match) as caught:
        parse_dotenv(text)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(("env", "host"), [({}, "127.0.0.1"), ({"HOST": " "}, "127.0.0.1"), ({"HOST": "::1"}, "::1")])
def test_bind_host_defaults_to_loopback(env, host):
    assert bind_host(env) == host
    assert DEFAULT_HOST == "127.0.0.1"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("::", False)],  # noqa: S104 - the refusal is tested
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
