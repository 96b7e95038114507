"""The rotation's safety contract, proven with in-memory fakes of the Registry and Cluster protocols."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from rotator import bounded, logs
from rotator.bounded import run_deadline
from rotator.config import load_settings
from rotator.dockerconfig import EXPIRES_AT, MANAGED_BY_LABEL, REGISTRY, ROTATED_AT, TOKEN_ALIAS
from rotator.errors import CrusoeApiError, KubeError, NamespaceGoneError
from rotator.fleet import Target
from rotator.retry import Backoff
from rotator.rotation import plan, rotate
from rotator.status import status

from tests.unit.fakes import FakeCluster, FakeRegistry, Journal, pull_secret

HOST = "registry.us-east1-a.ccr.crusoecloudcompute.com"
NAMESPACES = ["web", "ml", "batch"]
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
OLD = [f"ccr-rotator-202611{day:02d}T000000Z-0{day:05x}" for day in (20, 21, 22)]  # oldest first


def settings(namespaces=NAMESPACES, **env):
    return load_settings(
        {
            "CRUSOE_ACCESS_KEY": "key-id",
            "CRUSOE_SECRET_KEY": "c2VjcmV0LWtleS0xMjM0NTY3OA",
            "REGISTRY_URL": HOST,
            "REGISTRY_USERNAME": "ops@example.com",
            "TARGET_NAMESPACES": ",".join(namespaces),
            "KUBECONFIG": "/nowhere/kubeconfig",
            **env,
        }
    )


class World:
    """The fakes one test drives, and the rotation run against them."""

    def __init__(self):
        self.journal = Journal()
        self.registry = FakeRegistry(self.journal)
        self.cluster = FakeCluster(self.journal)
        self.sleeps = []
        self.mint_backoff = Backoff(attempts=3, base_seconds=0.5)

    def targets(self, config):
        return [Target(cluster, lambda: self.cluster) for cluster in config.clusters]

    def rotate(self, config=None, **env):
        config = config or settings(**env)
        return rotate(
            config,
            self.registry,
            self.targets(config),
            clock=lambda: NOW,
            mint_backoff=self.mint_backoff,
            sleep=self.sleeps.append,
        )

    def plan(self, config=None, **env):
        config = config or settings(**env)
        return plan(config, self.registry, self.targets(config), clock=lambda: NOW)

    def status(self, config=None, **env):
        config = config or settings(**env)
        return status(config, self.targets(config), clock=lambda: NOW)


@pytest.fixture
def world():
    return World()


def api_error(status, *, retryable=None, retry_after=None, operation="createCcrToken"):
    retryable = status is None or status == 429 or status >= 500 if retryable is None else retryable
    return CrusoeApiError(operation, status=status, detail="x", retryable=retryable, retry_after=retry_after)


def kube_error(status, retryable):
    return KubeError(f"HTTP {status}", status=status, retryable=retryable)


def deliver(world, alias, namespaces=NAMESPACES):
    """Secrets that hold the token ``alias``, as an earlier run left them."""
    for namespace in namespaces:
        world.cluster.put(namespace, pull_secret({HOST: {"auth": "b2xkOm9sZA=="}}, alias=alias))


# -- the safety order ------------------------------------------------------------------------------------------


def test_rotate_reads_then_mints_then_writes_then_revokes(world):
    world.registry.seed(OLD[0])
    deliver(world, OLD[0])
    report = world.rotate(KEEP_PREVIOUS_TOKENS="0")
    assert report.status == "ok", report.to_json()
    assert world.journal.kinds() == ["read", "mint", "write", "event", "list", "revoke"] or set(
        world.journal.kinds()[2:-2]
    ) == {"write", "event"}
    assert world.journal.kinds()[:2] == ["read", "mint"]
    assert world.journal.kinds()[-2:] == ["list", "revoke"]
    assert sorted(world.journal.of("read")) == sorted(NAMESPACES)
    assert sorted(world.journal.of("write")) == sorted(NAMESPACES)
    assert report.revoked == [OLD[0]]
    assert [n.result for n in report.namespaces] == ["updated"] * 3
    assert [n.namespace for n in report.namespaces] == NAMESPACES
    token = world.registry.minted[0].token
    assert all(world.cluster.dockerconfig(ns)["auths"][HOST]["password"] == token for ns in NAMESPACES)
    assert report.http_status() == 200


def test_rotate_mints_nothing_when_no_namespace_is_readable(world):
    for namespace in NAMESPACES:
        world.cluster.read_failures[namespace] = kube_error(403, retryable=False)
    report = world.rotate()
    assert report.status == "failed"
    assert "no token was minted" in report.error
    assert world.journal.of("mint") == []
    assert world.journal.of("write") == []
    assert [n.result for n in report.namespaces] == ["failed"] * 3
    assert report.http_status() == 500


def test_rotate_mints_nothing_when_the_only_secret_has_the_wrong_type():
    world = World()
    world.cluster.put("web", {"type": "Opaque", "data": {"keep": "bWU="}})
    report = world.rotate(settings(["web"]))
    assert report.status == "failed"
    assert "'Opaque'" in report.namespaces[0].error
    assert world.journal.of("mint") == []
    assert world.journal.of("write") == []


def test_rotate_leaves_a_wrong_type_secret_alone_and_revokes_nothing(world):
    world.cluster.put("ml", {"type": "Opaque", "data": {"keep": "bWU="}})
    world.registry.seed(OLD[0])
    report = world.rotate(KEEP_PREVIOUS_TOKENS="0")
    results = {n.namespace: n for n in report.namespaces}
    assert results["ml"].result == "failed"
    assert (results["web"].result, results["batch"].result) == ("created", "created")
    assert "ml" not in world.journal.of("write")
    assert world.cluster.secrets["ml"]["type"] == "Opaque"
    assert report.revoked == []
    assert world.journal.of("revoke") == []


def test_rotate_revokes_nothing_when_any_write_failed(world):
    world.registry.seed(OLD[0])
    world.cluster.write_failures["ml"] = kube_error(403, retryable=False)
    report = world.rotate(KEEP_PREVIOUS_TOKENS="0")
    assert report.status == "failed"
    assert report.token is not None
    assert "1 namespace(s) do not hold the new token" in report.error
    assert "nothing was revoked" in report.error
    assert world.journal.of("list") == []
    assert world.journal.of("revoke") == []
    assert OLD[0] in world.registry.aliases()


@pytest.mark.parametrize(
    ("failures", "retryable", "http"),
    [
        ({"web": kube_error(503, retryable=True), "ml": kube_error(500, retryable=True)}, True, 503),
        ({"web": kube_error(503, retryable=True), "ml": kube_error(403, retryable=False)}, False, 500),
        ({"web": kube_error(403, retryable=False)}, False, 500),
    ],
)
def test_rotate_is_retryable_only_when_every_failure_is(world, failures, retryable, http):
    world.cluster.write_failures.update(failures)
    report = world.rotate()
    assert report.retryable is retryable
    assert report.http_status() == http


@pytest.mark.parametrize(
    ("failures", "retryable"),
    [
        ([kube_error(503, retryable=True), kube_error(503, retryable=True), kube_error(500, retryable=True)], True),
        ([kube_error(503, retryable=True), kube_error(403, retryable=False), kube_error(503, retryable=True)], False),
    ],
)
def test_unreadable_cluster_is_retryable_only_when_every_read_failure_is(world, failures, retryable):
    world.cluster.read_failures.update(dict(zip(NAMESPACES, failures, strict=True)))
    assert world.rotate().retryable is retryable


# -- minting -----------------------------------------------------------------------------------------------------


def test_rotate_retries_lost_mint_answers_with_new_aliases_and_revokes_the_strays(world):
    world.registry.mint_failures = [(api_error(503), True), (api_error(200, retryable=True), True)]
    report = world.rotate()
    assert report.status == "ok", report.to_json()
    tried = world.journal.of("mint")
    assert len(tried) == 3
    assert len(set(tried)) == 3  # a fresh alias for every try
    assert report.token["alias"] == tried[2]
    assert sorted(report.revoked) == sorted(tried[:2])
    assert world.registry.aliases() == {tried[2]}
    assert len(world.sleeps) == 2
    assert all(0 <= s <= 1.0 for s in world.sleeps)


def test_rotate_honours_retry_after_when_minting_is_throttled(world):
    world.registry.mint_failures = [(api_error(429, retry_after=2.0), False)]
    report = world.rotate()
    assert report.status == "ok"
    assert world.sleeps == [2.0]
    assert report.revoked == []


def test_rotate_gives_up_minting_after_the_backoffs_attempts_and_writes_nothing(world):
    world.registry.seed(OLD[-1])
    world.registry.mint_failures = [(api_error(503), True)] * 3
    report = world.rotate()
    assert report.status == "failed"
    assert "createCcrToken" in report.error
    assert report.http_status() == 503
    assert len(world.journal.of("mint")) == 3
    assert world.journal.of("write") == []
    # Only the tokens its own lost answers left are revoked: no run can deliver them; nothing else is touched.
    assert sorted(world.journal.of("revoke")) == sorted(world.journal.of("mint")) == sorted(report.revoked)
    assert OLD[-1] in world.registry.aliases()


def test_rotate_mints_with_the_given_backoff(world):
    world.mint_backoff = Backoff(attempts=2, base_seconds=0.001, cap_seconds=0.001)
    world.registry.mint_failures = [(api_error(503), True)] * 2
    report = world.rotate()
    assert report.status == "failed"
    assert len(world.journal.of("mint")) == 2
    assert len(world.sleeps) == 1
    assert world.sleeps[0] <= 0.001


def test_rotate_does_not_retry_a_permanent_mint_failure(world):
    world.registry.mint_failures = [(api_error(401), False)]
    report = world.rotate()
    assert report.http_status() == 500
    assert len(world.journal.of("mint")) == 1
    assert world.sleeps == []


def test_token_expiration_hours_sets_expires_at(world):
    report = world.rotate(TOKEN_EXPIRATION_HOURS="5")
    assert world.registry.minted[0].expires_at == NOW + timedelta(hours=5)
    assert report.token["expires_at"] == "2026-11-28T11:00:00Z"
    annotations = world.cluster.secrets["web"]["metadata"]["annotations"]
    assert annotations[EXPIRES_AT] == "2026-11-28T11:00:00Z"


# -- writing -----------------------------------------------------------------------------------------------------


def test_rotate_writes_the_rotated_at_registry_and_alias_annotations_and_the_label(world):
    report = world.rotate()
    for namespace in NAMESPACES:
        metadata = world.cluster.secrets[namespace]["metadata"]
        assert metadata["annotations"][ROTATED_AT] == "2026-11-28T06:00:00Z"
        assert metadata["annotations"][REGISTRY] == HOST
        assert metadata["annotations"][TOKEN_ALIAS] == report.token["alias"]
        assert metadata["labels"] == {MANAGED_BY_LABEL: "ccr-pull-secret-rotator"}


def test_rotate_writes_namespaces_concurrently():
    namespaces = ["a", "b", "c", "d"]
    world = World()
    world.cluster.gate = threading.Barrier(len(namespaces), timeout=10)  # breaks if written one at a time
    report = world.rotate(settings(namespaces))
    assert report.status == "ok"
    assert not world.cluster.gate.broken
    assert world.cluster.peak == len(namespaces)


def test_max_parallel_writes_bounds_the_writes_in_flight():
    namespaces = [f"team-{i}" for i in range(8)]
    world = World()
    world.cluster.gate = threading.Barrier(2, timeout=10)  # two at a time must be possible
    report = world.rotate(settings(namespaces, MAX_PARALLEL_WRITES="2"))
    assert report.status == "ok"
    assert not world.cluster.gate.broken
    assert world.cluster.peak == 2


def test_rotate_merges_again_after_a_conflicting_edit(world):
    world.cluster.put("web", pull_secret({}))
    world.cluster.edits["web"] = pull_secret({"quay.io": {"auth": "dTpw"}})
    report = world.rotate()
    assert report.status == "ok", report.to_json()
    assert len(world.cluster.manifests["web"]) == 2
    assert set(world.cluster.dockerconfig("web")["auths"]) == {"quay.io", HOST}


def test_rotate_gives_up_on_a_namespace_that_keeps_conflicting(world):
    world.cluster.write_failures["web"] = kube_error(409, retryable=True)
    report = world.rotate()
    assert report.namespaces[0].result == "failed"
    assert len(world.cluster.manifests["web"]) == 4
    assert report.retryable


# -- revoking ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("keep", "survivors"), [(0, set()), (1, {OLD[2]}), (2, {OLD[1], OLD[2]}), (5, set(OLD))])
def test_keep_previous_tokens_decides_what_survives(world, keep, survivors):
    for day, alias in enumerate(OLD):
        world.registry.seed(alias, created_at=NOW - timedelta(days=10 - day))
    deliver(world, OLD[2])
    report = world.rotate(KEEP_PREVIOUS_TOKENS=str(keep))
    assert world.registry.aliases() == survivors | {report.token["alias"]}
    assert set(report.revoked) == set(OLD) - survivors


def test_rotate_spares_tokens_that_are_not_its_own(world):
    foreign = [world.registry.seed("someone-elses"), world.registry.seed("ccr-rotator-manual")]
    world.registry.seed(OLD[0], usage="inference")
    world.rotate(KEEP_PREVIOUS_TOKENS="0")
    assert {key.alias for key in foreign} | {OLD[0]} <= world.registry.aliases()


def test_rotate_uses_the_delivered_aliases_to_revoke_a_token_that_was_never_written(world):
    world.registry.seed(OLD[0], created_at=NOW - timedelta(days=8))
    world.registry.seed(OLD[1], created_at=NOW - timedelta(days=7))  # minted by a run that stopped before writing
    deliver(world, OLD[0])
    report = world.rotate(KEEP_PREVIOUS_TOKENS="1")
    assert report.revoked == [OLD[1]]
    assert OLD[0] in world.registry.aliases()  # the delivered token keeps its grace window


def test_a_failed_token_listing_is_a_warning_not_a_failure(world):
    world.registry.list_failure = api_error(503, operation="getLimitedUsageAPIKeys")
    report = world.rotate()
    assert report.status == "ok"
    assert report.http_status() == 200
    assert report.revoked == []
    assert "not revoked this time" in report.warnings[0]
    assert "warnings" in report.to_json()


def test_one_failed_revocation_does_not_stop_the_others(world):
    keys = [world.registry.seed(alias, created_at=NOW - timedelta(days=9 - i)) for i, alias in enumerate(OLD)]
    world.registry.revoke_failures[keys[1].key_id] = api_error(500, operation="deleteLimitedUsageAPIKey")
    report = world.rotate(KEEP_PREVIOUS_TOKENS="0")
    assert report.status == "ok"
    assert sorted(report.revoked) == [OLD[0], OLD[2]]
    assert len(report.warnings) == 1
    assert OLD[1] in report.warnings[0]
    assert len(world.journal.of("revoke")) == 3


# -- dry run and status ------------------------------------------------------------------------------------------


def test_plan_says_would_update_for_existing_and_would_create_for_absent(world):
    world.cluster.put("ml", pull_secret({}))
    report = world.plan()
    assert report.to_json()["dry_run"] is True
    assert [(n.namespace, n.result) for n in report.namespaces] == [
        ("web", "would-create"),
        ("ml", "would-update"),
        ("batch", "would-create"),
    ]
    assert report.status == "ok"
    assert report.token is None
    assert set(world.journal.kinds()) == {"read", "dry-write", "list"}
    assert world.registry.minted == []


def test_plan_reports_namespaces_that_cannot_be_written(world):
    world.cluster.read_failures["ml"] = kube_error(503, retryable=True)
    world.cluster.put("batch", {"type": "Opaque"})
    report = world.plan()
    assert [n.result for n in report.namespaces] == ["would-create", "failed", "failed"]
    assert report.status == "failed"
    assert report.http_status() == 500  # the wrong-type secret will not go away by itself
    assert set(world.journal.kinds()) == {"read", "dry-write", "list"}
    assert world.registry.minted == []


def test_status_reports_read_errors_per_namespace_instead_of_raising(world):
    world.cluster.read_failures["ml"] = kube_error(403, retryable=False)
    answer = world.status().namespaces
    assert [entry["namespace"] for entry in answer] == NAMESPACES
    assert answer[1] == {"cluster": "default", "namespace": "ml", "error": "HTTP 403", "at_risk": True}
    assert answer[0]["exists"] is False


def test_status_claims_no_registry_entry_or_ownership_that_is_not_there(world):
    world.cluster.put("web", pull_secret({"ghcr.io": {"auth": "eDp5"}}))
    world.cluster.put("ml", {**pull_secret({HOST: {"auth": "eDp5"}}), "type": "Opaque"})
    world.cluster.put("batch", pull_secret({HOST: {"auth": "eDp5"}}))
    world.cluster.secrets["batch"]["metadata"]["labels"] = {MANAGED_BY_LABEL: "helm"}
    answer = {entry["namespace"]: entry for entry in world.status().namespaces}
    assert [answer[ns]["registry_entry"] for ns in NAMESPACES] == [False, False, True]
    assert [answer[ns]["managed"] for ns in NAMESPACES] == [False, False, False]
    assert world.journal.of("write") == []


def test_status_after_a_rotation_shows_the_entry_the_owner_and_the_alias(world):
    alias = world.rotate().token["alias"]
    answer = world.status().namespaces
    assert all(e["registry_entry"] and e["managed"] and e["token_alias"] == alias for e in answer)


# -- the token stays secret --------------------------------------------------------------------------------------


def test_the_minted_token_is_redacted_from_every_log_line_of_the_run(world, capsys):
    logger = logs.configure("DEBUG")

    def careless_write(manifest):
        config = json.loads(base64.b64decode(manifest["data"][".dockerconfigjson"]))
        logger.error("quoting the token by mistake: %s", config["auths"][HOST]["password"])

    world.cluster.on_write = careless_write
    report = world.rotate()
    token = world.registry.minted[0].token
    lines = capsys.readouterr().out.splitlines()
    assert any("quoting the token by mistake: [REDACTED]" in line for line in lines)
    assert all(token not in line for line in lines)
    assert token not in json.dumps(report.to_json())
    logging.getLogger("rotator").setLevel("INFO")


def test_rotate_reads_and_writes_the_configured_secret_name():
    world = World()
    world.cluster.secret_name = "team-pull"
    report = world.rotate(TARGET_SECRET_NAME="team-pull")
    assert report.status == "ok"
    assert world.status(TARGET_SECRET_NAME="team-pull").namespaces[0]["exists"] is True


# -- overlapping runs ----------------------------------------------------------------------------------------
# Two runs of the same targets overlap (a scheduler retry, a manual call, a second instance): one run's mint
# answer is held by the fake registry until the other run has finished. Whatever the order of their aliases,
# at the end every namespace holds a live token, nothing still held is revoked, and only the newest run revokes.


def _overlap(world, *, held_clock, other_clock):
    """Run A with its mint answer held until run B (started meanwhile) finished; return (A's report, B's)."""
    config = settings()
    deliver(world, OLD[-1])
    world.registry.seed(OLD[-1])
    b_finished = threading.Event()
    a_minted = threading.Event()
    held = []

    def hold(alias):
        if not held:  # only A's mint waits
            held.append(alias)
            a_minted.set()
            assert b_finished.wait(timeout=10), "run B never finished"

    world.registry.after_mint = hold
    reports = {}

    def run(name, clock):
        reports[name] = rotate(config, world.registry, world.targets(config), clock=clock, sleep=world.sleeps.append)

    a = threading.Thread(target=run, args=("a", held_clock))
    a.start()
    assert a_minted.wait(timeout=10)
    run("b", other_clock)
    b_finished.set()
    a.join(timeout=10)
    assert not a.is_alive()
    return reports["a"], reports["b"]


def _live_everywhere(world):
    held = {world.cluster.secrets[n]["metadata"]["annotations"][TOKEN_ALIAS] for n in NAMESPACES}
    assert len(held) == 1
    (alias,) = held
    assert alias in world.registry.aliases()  # live: minted and not revoked
    return alias


def test_overlap_slow_older_run_is_superseded_and_revokes_nothing(world):
    a, b = _overlap(world, held_clock=lambda: NOW, other_clock=lambda: NOW + timedelta(seconds=1))
    assert b.status == "ok"
    assert a.status == "ok"
    assert {n.result for n in a.namespaces} == {"superseded"}  # A never moved a namespace back to its token
    assert a.revoked == []
    assert any("newer rotation" in w for w in a.warnings)
    assert _live_everywhere(world) == b.token["alias"]
    assert a.token["alias"] not in world.registry.revoked  # B kept A's in-flight token


def test_overlap_slow_newer_run_overwrites_and_the_older_run_revokes_nothing(world):
    a, b = _overlap(world, held_clock=lambda: NOW + timedelta(seconds=1), other_clock=lambda: NOW)
    assert b.revoked == []  # a newer token (A's) was already minted: B leaves revocation to A
    assert {n.result for n in a.namespaces} == {"updated"}
    assert _live_everywhere(world) == a.token["alias"]
    assert b.token["alias"] not in world.registry.revoked  # briefly delivered: kept, a later run cleans


def test_overlap_undelivered_token_is_kept_while_a_run_may_still_write_it(world):
    deliver(world, OLD[-1])
    world.registry.seed(OLD[-1])
    in_flight = world.registry.seed("ccr-rotator-20261128T060000Z-abcdef")  # minted after what the secrets hold
    config = settings(RUN_DEADLINE_SECONDS="60")
    soon = rotate(config, world.registry, world.targets(config), clock=lambda: NOW + timedelta(seconds=90))
    assert in_flight.alias not in soon.revoked  # within the run deadline plus margin: a run may be writing it
    deliver(world, OLD[-1])  # as if nothing had happened since: the secrets still hold the older token
    later = rotate(config, world.registry, world.targets(config), clock=lambda: NOW + timedelta(minutes=10))
    assert in_flight.alias in later.revoked  # no run can still deliver it: a crashed run's stray, removed


def test_overlapping_older_token_is_revoked_once_every_namespace_holds_a_newer_one(world):
    _, b = _overlap(world, held_clock=lambda: NOW, other_clock=lambda: NOW + timedelta(seconds=1))
    leftover = next(alias for alias in world.registry.aliases() if alias not in {b.token["alias"], OLD[-1]})
    config = settings()
    after = rotate(config, world.registry, world.targets(config), clock=lambda: NOW + timedelta(minutes=2))
    # Older than the token every secret held: no run can write it any more (a conditional write would meet
    # the newer token and leave it), so it goes like any token outside the grace window.
    assert leftover in after.revoked


# -- exact reports, log lines and deadlines (what the mutation run asked to pin) -----------------------------------

SERVER = "fake-apiserver.example:6443"
LIFETIME = 12 * 3600.0  # TOKEN_EXPIRATION_HOURS' default, in seconds


def rotation_lines(caplog):
    """The rotation module's log lines: (level, message, fields)."""
    return [
        (r.levelname, r.getMessage(), getattr(r, "fields", None))
        for r in caplog.records
        if r.name == "rotator.rotation"
    ]


def line_of(caplog, event):
    (line,) = [line for line in rotation_lines(caplog) if line[2] and line[2].get("event") == event]
    return line


@pytest.fixture
def caught(caplog):
    caplog.set_level(logging.INFO, logger="rotator")
    return caplog


@pytest.fixture
def bounded_clock(monkeypatch):
    """The run deadline's clock, moved by the test: ``clock.advance_after(journal, kind)`` passes the deadline."""

    class Clock:
        def __init__(self):
            self.base = time.monotonic()
            self.late = lambda: False

        def monotonic(self):
            return self.base + (3600.0 if self.late() else 0.0)

    clock = Clock()
    monkeypatch.setattr(bounded, "time", clock)
    return clock


def expiring(alias, expires_at):
    return pull_secret({HOST: {"auth": "b2xkOm9sZA=="}}, alias=alias, expires_at=expires_at)


def test_rotate_logs_each_step_and_a_summary_with_exact_fields(world, caught, monkeypatch):
    world.registry.seed(OLD[0], created_at=NOW - timedelta(days=9))
    deliver(world, OLD[0])
    ticks = iter([10.0])
    monkeypatch.setattr(time, "monotonic", lambda: next(ticks, 11.0))
    report = world.rotate(KEEP_PREVIOUS_TOKENS="0")
    alias = report.token["alias"]
    assert report.duration_ms == 1000
    lines = rotation_lines(caught)
    assert lines[0] == (
        "INFO",
        f"minted registry token {alias}, expires 2026-11-28T18:00:00Z",
        {"token_alias": alias},
    )
    assert sorted(lines[1:4]) == [
        ("INFO", f"namespace default/{ns}: updated", {"cluster": "default", "namespace": ns, "result": "updated"})
        for ns in sorted(NAMESPACES)
    ]
    assert lines[4] == ("INFO", f"revoked registry token {OLD[0]}", {"token_alias": OLD[0]})
    assert lines[5] == (
        "INFO",
        f"cluster default ({SERVER}): ok",
        {
            "event": "cluster_summary",
            "cluster": "default",
            "server": SERVER,
            "status": "ok",
            "dry_run": False,
            "counts": {"updated": 3},
            "namespaces_failed": 0,
            "earliest_expiry_seconds": LIFETIME,
        },
    )
    assert lines[6] == (
        "INFO",
        "rotation succeeded: 3 updated; revoked 1 old token(s)",
        {
            "event": "rotation_summary",
            "status": "ok",
            "counts": {"updated": 3},
            "namespaces_failed": 0,
            "revoked": [OLD[0]],
            "revoked_count": 1,
            "duration_ms": 1000,
            "dry_run": False,
            "clusters": [f"default ({SERVER})"],
        },
    )
    assert len(lines) == 7
    assert report.to_json() == {
        "status": "ok",
        "token": {"alias": alias, "expires_at": "2026-11-28T18:00:00Z"},
        "namespaces": [{"cluster": "default", "namespace": ns, "result": "updated"} for ns in NAMESPACES],
        "clusters": [{"name": "default", "server": SERVER, "status": "ok", "counts": {"updated": 3}}],
        "revoked": [OLD[0]],
        "duration_ms": 1000,
    }
    assert world.cluster.dockerconfig("web")["auths"][HOST]["username"] == "ops@example.com"


def test_rotate_failure_is_logged_and_reported_with_exact_fields(world, caught):
    world.cluster.put("ml", expiring(OLD[0], "2026-11-28T08:00:00Z"))
    world.cluster.write_failures["ml"] = kube_error(403, retryable=False)
    report = world.rotate()
    assert len(world.cluster.manifests["ml"]) == 1  # a 403 is not a conflict: not tried again
    error = "1 of 1 cluster(s) failed; 1 namespace(s) do not hold the new token; nothing was revoked"
    assert (report.error, report.retryable, report.http_status()) == (error, False, 500)
    assert (
        "ERROR",
        "namespace default/ml: HTTP 403",
        {"cluster": "default", "namespace": "ml", "result": "failed"},
    ) in (rotation_lines(caught))
    cluster = line_of(caught, "cluster_summary")
    assert cluster[:2] == ("ERROR", f"cluster default ({SERVER}): failed")
    assert cluster[2]["counts"] == {"created": 2, "failed": 1}
    assert cluster[2]["namespaces_failed"] == 1
    assert cluster[2]["earliest_expiry_seconds"] == 7200.0  # ml still holds its old token, which expires first
    summary = line_of(caught, "rotation_summary")
    assert summary[:2] == ("ERROR", f"rotation failed: {error} (2 created, 1 failed)")
    assert (summary[2]["namespaces_failed"], summary[2]["revoked"], summary[2]["revoked_count"]) == (1, [], 0)
    body = report.to_json()
    assert body["error"] == error
    assert body["clusters"] == [
        {"name": "default", "server": SERVER, "status": "failed", "counts": {"created": 2, "failed": 1}}
    ]
    assert body["namespaces"][1] == {"cluster": "default", "namespace": "ml", "result": "failed", "error": "HTTP 403"}
    assert "dry_run" not in body
    assert "warnings" not in body


def test_an_unreachable_cluster_is_logged_as_not_reached(world, caught):
    config = settings()

    def unreachable():
        raise KubeError("connection refused", status=None, retryable=True)

    report = rotate(config, world.registry, [Target(config.clusters[0], unreachable)], clock=lambda: NOW)
    error = "no namespace can be written, so no token was minted: cluster 'default': connection refused"
    assert (report.error, report.retryable, report.http_status()) == (error, True, 503)
    assert report.to_json()["clusters"] == [
        {
            "name": "default",
            "server": "",
            "status": "failed",
            "counts": {},
            "error": "cluster 'default': connection refused",
        }
    ]
    cluster = line_of(caught, "cluster_summary")
    assert cluster[:2] == ("ERROR", "cluster default (not reached): cluster 'default': connection refused")
    assert cluster[2]["earliest_expiry_seconds"] is None
    summary = line_of(caught, "rotation_summary")
    assert summary[:2] == ("ERROR", f"rotation failed: {error} (no namespace)")
    assert summary[2]["clusters"] == ["default (not reached)"]
    assert summary[2]["counts"] == {}


def test_unreadable_namespaces_hold_no_time_left(world, caught):
    for namespace in NAMESPACES:
        world.cluster.read_failures[namespace] = kube_error(403, retryable=False)
    world.rotate()
    cluster = line_of(caught, "cluster_summary")[2]
    assert (cluster["counts"], cluster["namespaces_failed"]) == ({"failed": 3}, 3)
    assert cluster["earliest_expiry_seconds"] == 0.0
    assert line_of(caught, "rotation_summary")[2]["namespaces_failed"] == 3


def test_a_selection_that_matches_no_namespace_mints_nothing_and_says_so(world):
    report = world.rotate(settings(["team-*"]))
    assert (report.error, report.retryable, report.http_status()) == ("no namespace selected", False, 500)
    assert world.journal.of("mint") == []


def test_a_skipped_namespace_is_logged_as_such_and_holds_no_token_that_counts(world, caught):
    world.cluster.write_failures["ml"] = NamespaceGoneError(
        "namespace ml is being deleted", status=403, terminating=True
    )
    report = world.rotate()
    assert report.status == "ok"
    assert report.to_json()["namespaces"][1] == {
        "cluster": "default",
        "namespace": "ml",
        "result": "skipped",
        "error": "namespace ml is being deleted",
    }
    assert (
        "INFO",
        "namespace default/ml: skipped",
        {"cluster": "default", "namespace": "ml", "result": "skipped"},
    ) in (rotation_lines(caught))
    assert line_of(caught, "cluster_summary")[2]["earliest_expiry_seconds"] == LIFETIME


def test_a_namespace_holding_a_newer_runs_token_is_superseded_and_its_accounts_still_patched(world):
    newer = "ccr-rotator-20261128T060001Z-abcdef"  # minted a second after this run's token
    world.cluster.put("web", expiring(newer, "2026-11-28T18:00:01Z"))
    world.cluster.account("web", "default", [])
    report = world.rotate(PATCH_SERVICE_ACCOUNTS="default")
    (web, *_) = report.namespaces
    assert (web.namespace, web.cluster, web.result) == ("web", "default", "superseded")
    assert web.expires_at == NOW + timedelta(hours=12, seconds=1)
    assert [a.to_json() for a in web.service_accounts] == [{"name": "default", "result": "patched"}]
    assert world.cluster.manifests.get("web") is None
    assert world.cluster.secrets["web"]["metadata"]["annotations"][TOKEN_ALIAS] == newer


def test_a_token_of_the_same_second_is_overwritten_not_superseding(world):
    world.cluster.put("web", expiring("ccr-rotator-20261128T060000Z-ffffff", "2026-11-28T18:00:00Z"))
    world.cluster.account("web", "default", [])
    report = world.rotate(PATCH_SERVICE_ACCOUNTS="default")
    assert report.namespaces[0].result == "updated"
    assert [a.result for a in report.namespaces[0].service_accounts] == ["patched"]


def test_conflicts_are_retried_with_the_runs_sleep_and_named_in_the_retry_line(world, caplog):
    caplog.set_level(logging.INFO, logger="rotator")
    world.cluster.write_failures["web"] = kube_error(409, retryable=True)
    world.rotate()
    assert world.sleeps == [0.0, 0.0, 0.0]
    retries = [r.getMessage() for r in caplog.records if r.name == "rotator.retry"]
    assert retries[0] == "writing web failed (HTTP 409), retrying in 0.00s"


def test_a_service_account_conflict_waits_with_the_runs_sleep(world):
    world.cluster.account("web", "default", [])
    world.cluster.account_edits[("web", "default")] = [
        {"metadata": {"name": "default", "namespace": "web", "resourceVersion": "2"}}
    ]
    report = world.rotate(settings(["web"], PATCH_SERVICE_ACCOUNTS="default"))
    assert [a.result for a in report.namespaces[0].service_accounts] == ["patched"]
    assert world.sleeps == [0.0]


def test_mint_retries_are_named_in_the_retry_line(world, caplog):
    caplog.set_level(logging.INFO, logger="rotator")
    world.registry.mint_failures = [(api_error(503), False)]
    world.rotate()
    (retry,) = [r for r in caplog.records if r.name == "rotator.retry"]
    assert retry.getMessage().startswith("minting failed (")
    assert retry.fields == {"operation": "minting", "attempt": 1}


# -- plan ------------------------------------------------------------------------------------------------------


def test_plan_checks_the_whole_login_and_reports_exact_fields(world, caught):
    for namespace in NAMESPACES:
        world.cluster.put(namespace, expiring(OLD[1], "2026-11-28T08:00:00Z"))
    world.registry.seed(OLD[0], created_at=NOW - timedelta(days=9))
    world.registry.seed(OLD[1], created_at=NOW - timedelta(days=8))
    report = world.plan(KEEP_PREVIOUS_TOKENS="0")
    body = report.to_json()
    assert sorted(body.pop("would_revoke")) == [OLD[0], OLD[1]]  # the delivered one too: no grace window kept
    manifest = world.cluster.dry_manifests["web"][0]
    assert manifest["metadata"]["annotations"][REGISTRY] == HOST
    assert manifest["metadata"]["annotations"][EXPIRES_AT] == "2026-11-28T18:00:00Z"
    auth = json.loads(base64.b64decode(manifest["data"][".dockerconfigjson"]))["auths"][HOST]
    assert (auth["username"], auth["password"]) == ("ops@example.com", "dry-run-placeholder")
    assert body == {
        "status": "ok",
        "token": None,
        "namespaces": [{"cluster": "default", "namespace": ns, "result": "would-update"} for ns in NAMESPACES],
        "clusters": [{"name": "default", "server": SERVER, "status": "ok", "counts": {"would-update": 3}}],
        "revoked": [],
        "duration_ms": report.duration_ms,
        "dry_run": True,
    }
    cluster = line_of(caught, "cluster_summary")
    assert cluster[2]["dry_run"] is True
    assert cluster[2]["earliest_expiry_seconds"] == 7200.0  # a dry run leaves the held token in place
    summary = line_of(caught, "rotation_summary")
    assert summary[:2] == ("INFO", "rotation planned: 3 would-update; revoked 0 old token(s)")
    assert summary[2]["dry_run"] is True


def test_plan_keeps_the_delivered_token_in_its_grace_window(world):
    deliver(world, OLD[0])
    world.registry.seed(OLD[0], created_at=NOW - timedelta(days=9))
    world.registry.seed(OLD[1], created_at=NOW - timedelta(days=8))  # never delivered
    report = world.plan(KEEP_PREVIOUS_TOKENS="1")
    assert report.would_revoke == [OLD[1]]


def test_plan_with_a_failing_write_and_a_failing_key_reports_both(world, caught):
    for namespace in NAMESPACES:
        world.cluster.put(namespace, expiring(OLD[1], "2026-11-28T08:00:00Z"))
    world.cluster.write_failures["web"] = kube_error(409, retryable=True)
    world.registry.list_failure = api_error(401, operation="getLimitedUsageAPIKeys")
    report = world.plan()
    assert world.journal.of("dry-write").count("web") == 4  # conflicts retried like a real write
    body = report.to_json()
    assert body["dry_run"] is True
    assert body["namespaces"][0]["error"] == "HTTP 409"
    assert body["error"] == "the Crusoe API key does not work: Crusoe API getLimitedUsageAPIKeys failed: HTTP 401: x"
    assert report.http_status() == 500
    assert line_of(caught, "cluster_summary")[2]["earliest_expiry_seconds"] == 0.0  # a dry run's failure has no expiry
    assert line_of(caught, "rotation_summary")[2]["dry_run"] is True


# -- the run deadline --------------------------------------------------------------------------------------------


def test_a_run_past_its_deadline_mints_nothing_and_says_which_step(world):
    with run_deadline(0):
        report = world.rotate()
    assert report.error == (
        "the run reached its deadline (RUN_DEADLINE_SECONDS) before minting a token; the next run completes it"
    )
    assert (report.retryable, report.http_status()) == (True, 503)
    assert world.journal.of("mint") == []
    assert report.to_json()["clusters"] == [{"name": "default", "server": SERVER, "status": "ok", "counts": {}}]


def test_mint_retries_stop_before_a_wait_would_cross_the_run_deadline(world):
    world.registry.mint_failures = [(api_error(429, retry_after=120.0), False)]  # a wait of 8 s (the cap)
    with run_deadline(5):
        report = world.rotate()
    assert report.status == "failed"
    assert world.sleeps == []
    assert len(world.journal.of("mint")) == 1


def test_writes_not_started_by_the_deadline_fail_retryably_and_nothing_is_revoked(world, bounded_clock):
    world.registry.seed(OLD[0], created_at=NOW - timedelta(days=9))
    bounded_clock.late = lambda: bool(world.journal.of("mint"))
    with run_deadline(60):
        report = world.rotate(KEEP_PREVIOUS_TOKENS="0")
    assert report.namespaces[0].error == (
        "the run reached its deadline (RUN_DEADLINE_SECONDS) before writing namespace 'web'; the next run completes it"
    )
    assert (report.retryable, report.http_status()) == (True, 503)
    assert world.journal.of("write") == []
    assert world.journal.of("revoke") == []


def test_revocation_not_started_by_the_deadline_is_a_warning(world, bounded_clock):
    world.registry.seed(OLD[0], created_at=NOW - timedelta(days=9))
    bounded_clock.late = lambda: bool(world.journal.of("write"))
    with run_deadline(60):
        report = world.rotate(settings(["web"], KEEP_PREVIOUS_TOKENS="0"))
    assert report.status == "ok"
    assert (
        report.to_json()["warnings"]
        == report.warnings
        == [
            (
                "old tokens were not revoked this time: the run reached its deadline (RUN_DEADLINE_SECONDS) before "
                "revoking old tokens; the next run completes it"
            )
        ]
    )
    assert world.journal.of("list") == []


def test_strays_not_revoked_by_the_deadline_are_a_warning(world, bounded_clock):
    world.mint_backoff = Backoff(attempts=1, base_seconds=0.0)
    world.registry.mint_failures = [(api_error(503), True)]
    bounded_clock.late = lambda: bool(world.journal.of("mint"))
    with run_deadline(60):
        report = world.rotate()
    assert report.warnings == [
        (
            "tokens of lost mint answers were not revoked (a later run will): the run reached its deadline "
            "(RUN_DEADLINE_SECONDS) before revoking this run's stray tokens; the next run completes it"
        )
    ]
    assert report.revoked == []
    assert world.journal.of("list") == []


def test_a_failed_service_account_alone_is_named_in_the_error(world):
    world.cluster.account("web", "default", [])
    world.cluster.account_failures[("web", "default")] = kube_error(403, retryable=False)
    report = world.rotate(settings(["web"], PATCH_SERVICE_ACCOUNTS="default"))
    assert report.error == "1 of 1 cluster(s) failed; 1 service account(s) were not patched"
    assert report.namespaces[0].result == "created"
