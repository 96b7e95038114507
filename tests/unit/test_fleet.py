"""Many clusters, groups, service accounts, dry runs, status and events, against in-memory fakes."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from rotator import logs
from rotator.config import load_settings, parse_clusters
from rotator.errors import ConfigError, KubeError, NamespaceGoneError
from rotator.fleet import Target, alias_prefix_for, choose
from rotator.rotation import plan, rotate
from rotator.status import status
from rotator.tokens import owned_alias_pattern

from tests.unit.fakes import FakeCluster, FakeRegistry, Journal, pull_secret

HOST = "registry.us-east1-a.ccr.crusoecloudcompute.com"
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
BASE = {
    "CRUSOE_ACCESS_KEY": "key-id",
    "CRUSOE_SECRET_KEY": "c2VjcmV0LWtleS0xMjM0NTY3OA",
    "REGISTRY_URL": HOST,
    "REGISTRY_USERNAME": "ops@example.com",
}


def one_cluster(**env):
    return load_settings({**BASE, "TARGET_NAMESPACES": "web,ml", "KUBECONFIG": "/nowhere", **env})


def fleet(*clusters, **env):
    return load_settings({**BASE, "CLUSTERS": json.dumps(list(clusters)), **env})


def entry(name, **fields):
    return {"name": name, "kubeconfig": f"/kube/{name}", "namespaces": "web,ml", **fields}


class World:
    def __init__(self, *names):
        self.journal = Journal()
        self.registry = FakeRegistry(self.journal)
        self.clusters = {name: FakeCluster(self.journal) for name in names or ("default",)}
        self.unreachable: set[str] = set()

    def connect(self, name):
        def connector():
            if name in self.unreachable:
                raise KubeError(f"cannot reach the API server of {name}", status=None, retryable=True)
            return self.clusters[name]

        return connector

    def targets(self, settings):
        return [Target(config, self.connect(config.name)) for config in settings.clusters]

    def rotate(self, settings):
        return rotate(settings, self.registry, self.targets(settings), clock=lambda: NOW, sleep=lambda _: None)

    def plan(self, settings):
        return plan(settings, self.registry, self.targets(settings), clock=lambda: NOW)

    def status(self, settings, now=NOW):
        return status(settings, self.targets(settings), clock=lambda: now)


def results(report):
    return {(n.cluster, n.namespace): n.result for n in report.namespaces}


# -- configuration ---------------------------------------------------------------------------------------------


def test_clusters_json_is_parsed_with_every_field():
    settings = fleet(
        entry("east", namespaces=["team-*"], namespace_selector="gpu=true", exclude_namespaces="team-x"),
        {
            "name": "west",
            "kubeconfig_secret": "projects/p/secrets/k/versions/2",
            "context": "w",
            "namespaces": "*",
            "service_accounts": "*",
        },
    )
    east, west = settings.clusters
    assert east.selection.patterns == ("team-*",)
    assert east.selection.selector.text == "gpu=true"
    assert east.selection.exclude == ("team-x",)
    assert west.context == "w"
    assert west.service_accounts.every


@pytest.mark.parametrize(
    ("clusters", "problem"),
    [
        ("not json", r"CLUSTERS: is not valid JSON"),
        ("[]", r"CLUSTERS: must be a non-empty JSON list"),
        (json.dumps([entry("a"), entry("a")]), r"CLUSTERS: names clusters more than once: a"),
        (json.dumps([{"name": "a", "namespaces": "x"}]), r"CLUSTERS\[0\].kubeconfig_secret: set exactly one"),
        (json.dumps([entry("Bad")]), r"CLUSTERS\[0\].name: must be 1 to 40"),
        (json.dumps([entry("a", colour="red")]), r"CLUSTERS\[0\]: unknown field\(s\) colour"),
        (json.dumps([entry("a", namespace_selector="a in (")]), r"namespace_selector: is not a valid label selector"),
        (json.dumps([entry("a", service_accounts=["Bad"])]), r"service_accounts: not valid service account names"),
    ],
)
def test_clusters_json_problems_are_named(clusters, problem):
    with pytest.raises(ConfigError, match=problem):
        load_settings({**BASE, "CLUSTERS": clusters})


def test_clusters_and_the_one_cluster_variables_are_not_mixed():
    with pytest.raises(ConfigError, match="also set: TARGET_NAMESPACES"):
        fleet(entry("a"), TARGET_NAMESPACES="web")


def test_clusters_secret_is_read_later_and_checked_like_clusters():
    settings = load_settings({**BASE, "CLUSTERS_SECRET": "projects/p/secrets/clusters/versions/latest"})
    assert settings.clusters == ()
    assert settings.clusters_secret.version_name.endswith("/clusters/versions/latest")
    assert [c.name for c in parse_clusters(json.dumps([entry("a")]), "CLUSTERS_SECRET")] == ["a"]


def test_expiry_warning_defaults_to_a_quarter_of_the_lifetime_and_must_be_below_it():
    assert one_cluster(TOKEN_EXPIRATION_HOURS="12").expiry_warning == timedelta(hours=3)
    with pytest.raises(ConfigError, match="EXPIRY_WARNING_HOURS: must be less than TOKEN_EXPIRATION_HOURS"):
        one_cluster(EXPIRY_WARNING_HOURS="12")


def test_a_selector_alone_is_a_selection():
    settings = load_settings({**BASE, "TARGET_NAMESPACE_SELECTOR": "team=ml", "KUBECONFIG": "/k"})
    assert settings.clusters[0].selection.needs_listing


# -- groups ------------------------------------------------------------------------------------------------------


def test_alias_prefix_of_a_subset_is_its_own_and_the_whole_fleet_keeps_the_plain_one():
    assert alias_prefix_for("ccr-rotator", ["a", "b"], ["b", "a"]) == "ccr-rotator"
    group = alias_prefix_for("ccr-rotator", ["b", "a"], ["a", "b", "c"])
    assert re.fullmatch(r"ccr-rotator-g[0-9a-f]{6}", group)
    assert group == alias_prefix_for("ccr-rotator", ["a", "b"], ["c", "b", "a"])
    assert group != alias_prefix_for("ccr-rotator", ["c"], ["a", "b", "c"])
    long = alias_prefix_for("p" * 40, ["a"], ["a", "b"])
    assert len(long) <= 40
    assert re.fullmatch(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$", long)


def test_the_plain_prefix_never_owns_a_group_alias():
    group = alias_prefix_for("ccr-rotator", ["a"], ["a", "b"])
    assert not owned_alias_pattern("ccr-rotator").match(f"{group}-20261128T060000Z-abcdef")


def test_choose_refuses_unknown_cluster_names():
    world = World("a", "b")
    targets = world.targets(fleet(entry("a"), entry("b")))
    assert [t.config.name for t in choose(targets, ["b"])] == ["b"]
    with pytest.raises(Exception, match="unknown cluster"):
        choose(targets, ["c"])


# -- many clusters -----------------------------------------------------------------------------------------------


def test_one_token_for_every_cluster_and_the_report_names_each_cluster():
    world = World("east", "west")
    report = world.rotate(fleet(entry("east"), entry("west")))
    assert report.status == "ok", report.to_json()
    assert len(world.registry.minted) == 1
    assert results(report) == {(c, n): "created" for c in ("east", "west") for n in ("web", "ml")}
    body = report.to_json()
    assert [(c["name"], c["server"], c["status"]) for c in body["clusters"]] == [
        ("east", "fake-apiserver.example:6443", "ok"),
        ("west", "fake-apiserver.example:6443", "ok"),
    ]
    assert body["namespaces"][0] == {"cluster": "east", "namespace": "web", "result": "created"}


def test_an_unreachable_cluster_fails_the_run_the_others_are_written_and_nothing_is_revoked():
    world = World("east", "west")
    world.registry.seed("ccr-rotator-20261101T000000Z-0a0a0a")
    world.unreachable.add("west")
    report = world.rotate(fleet(entry("east"), entry("west"), KEEP_PREVIOUS_TOKENS="0"))
    assert report.status == "failed"
    assert results(report) == {("east", "web"): "created", ("east", "ml"): "created"}
    assert report.clusters[1].error.startswith("cluster 'west': cannot reach")
    assert world.registry.revoked == []
    assert report.http_status() == 503


def test_no_readable_cluster_mints_nothing():
    world = World("east", "west")
    world.unreachable |= {"east", "west"}
    report = world.rotate(fleet(entry("east"), entry("west")))
    assert report.status == "failed"
    assert "no token was minted" in report.error
    assert world.registry.minted == []


def test_cluster_summary_lines_name_each_cluster_with_its_earliest_expiry(capsys):
    logs.configure("INFO")
    world = World("east", "west")
    world.unreachable.add("west")
    world.rotate(fleet(entry("east"), entry("west")))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    summaries = {line["cluster"]: line for line in lines if line.get("event") == "cluster_summary"}
    assert summaries["east"]["earliest_expiry_seconds"] == 12 * 3600
    assert summaries["east"]["status"] == "ok"
    assert summaries["west"]["earliest_expiry_seconds"] is None
    assert summaries["west"]["status"] == "failed"
    (run,) = [line for line in lines if line.get("event") == "rotation_summary"]
    assert {"status", "dry_run", "counts", "namespaces_failed", "revoked", "revoked_count", "duration_ms"} <= set(run)


# -- selection at run time ---------------------------------------------------------------------------------------


def test_globs_pick_up_new_namespaces_and_skip_terminating_and_excluded_ones():
    world = World()
    cluster = world.clusters["default"]
    for name in ("team-a", "kube-system"):
        cluster.namespace(name)
    cluster.namespace("team-old", terminating=True)
    settings = one_cluster(TARGET_NAMESPACES="*", EXCLUDE_NAMESPACES="kube-*")
    first = world.rotate(settings)
    assert results(first) == {("default", "team-a"): "created", ("default", "team-old"): "skipped"}
    cluster.namespace("team-b")
    second = world.rotate(settings)
    assert results(second)[("default", "team-b")] == "created"
    assert "kube-system" not in world.journal.of("write")
    assert "team-old" not in world.journal.of("write") + world.journal.of("read")


def test_a_named_namespace_that_does_not_exist_fails_clearly_when_namespaces_are_listed():
    world = World()
    world.clusters["default"].namespace("team-a")
    report = world.rotate(one_cluster(TARGET_NAMESPACES="team-*,nowhere"))
    (missing,) = [n for n in report.namespaces if n.namespace == "nowhere"]
    assert (missing.result, missing.error) == ("failed", "namespace 'nowhere' does not exist")
    assert report.status == "failed"


def test_a_named_namespace_being_deleted_is_skipped_when_the_write_says_so():
    world = World()
    gone = NamespaceGoneError("the namespace is being deleted", status=403, terminating=True)
    world.clusters["default"].write_failures["ml"] = gone
    report = world.rotate(one_cluster())
    assert results(report) == {("default", "web"): "created", ("default", "ml"): "skipped"}
    assert report.status == "ok"
    assert [e["regarding"]["namespace"] for e in world.clusters["default"].events] == ["web"]


def test_a_failed_namespace_listing_is_that_clusters_failure():
    world = World()
    world.clusters["default"].list_failure = KubeError("forbidden", status=403, retryable=False)
    report = world.rotate(one_cluster(TARGET_NAMESPACES="*"))
    assert report.status == "failed"
    assert world.registry.minted == []


# -- robustness --------------------------------------------------------------------------------------------------


def deep_secret(depth=2000):
    data = base64.b64encode(b"[" * depth + b"]" * depth).decode()
    return {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": data}, "metadata": {}}


def test_a_hostile_secret_fails_only_its_namespace():
    world = World()
    world.clusters["default"].put("ml", deep_secret())
    report = world.rotate(one_cluster())
    assert results(report) == {("default", "web"): "created", ("default", "ml"): "failed"}
    assert "nested deeper than" in report.namespaces[1].error


def test_any_exception_in_a_namespace_step_is_that_namespaces_failure():
    world = World()
    world.clusters["default"].read_failures["ml"] = ZeroDivisionError("boom")  # type: ignore[assignment]
    report = world.rotate(one_cluster())
    assert results(report) == {("default", "web"): "created", ("default", "ml"): "failed"}
    assert report.namespaces[1].error == "unexpected ZeroDivisionError (see the logs)"


# -- service accounts --------------------------------------------------------------------------------------------


def test_service_accounts_get_the_secret_appended_keeping_other_entries_in_order():
    world = World()
    cluster = world.clusters["default"]
    cluster.account("web", "default", ["ghcr", "quay"])
    cluster.account("web", "builder", ["crusoe-image-pull-secrets"])
    report = world.rotate(one_cluster(TARGET_NAMESPACES="web", PATCH_SERVICE_ACCOUNTS="default,builder,ghost"))
    assert report.status == "ok", report.to_json()
    assert cluster.pull_secrets_of("web", "default") == ["ghcr", "quay", "crusoe-image-pull-secrets"]
    assert [(a.name, a.result) for a in report.namespaces[0].service_accounts] == [
        ("default", "patched"),
        ("builder", "unchanged"),
        ("ghost", "missing"),
    ]
    assert ("web", "ghost") not in cluster.accounts


def test_a_concurrent_service_account_edit_is_merged_not_lost():
    world = World()
    cluster = world.clusters["default"]
    cluster.account("web", "default", ["ghcr"])
    edited = {
        "metadata": {"name": "default", "resourceVersion": "7"},
        "imagePullSecrets": [{"name": "ghcr"}, {"name": "new"}],
    }
    cluster.account_edits[("web", "default")] = [edited]
    report = world.rotate(one_cluster(TARGET_NAMESPACES="web", PATCH_SERVICE_ACCOUNTS="default"))
    assert report.namespaces[0].service_accounts[0].result == "patched"
    assert cluster.pull_secrets_of("web", "default") == ["ghcr", "new", "crusoe-image-pull-secrets"]


def test_every_service_account_with_star_and_a_failed_patch_fails_the_run_but_not_the_revocation():
    world = World()
    cluster = world.clusters["default"]
    cluster.account("web", "a", [])
    cluster.account("web", "b")
    cluster.account_failures[("web", "b")] = KubeError("forbidden", status=403, retryable=False)
    report = world.rotate(one_cluster(TARGET_NAMESPACES="web", PATCH_SERVICE_ACCOUNTS="*"))
    assert [(a.name, a.result) for a in report.namespaces[0].service_accounts] == [("a", "patched"), ("b", "failed")]
    assert report.status == "failed"
    assert "1 service account(s) were not patched" in report.error
    assert "list" in world.journal.kinds()  # the token was delivered everywhere, so old ones may go


# -- dry run -----------------------------------------------------------------------------------------------------


def test_dry_run_checks_every_write_with_the_server_and_changes_nothing():
    world = World()
    cluster = world.clusters["default"]
    cluster.put("ml", pull_secret({}, alias="ccr-rotator-20261120T000000Z-0a0a0a"))
    cluster.account("web", "default", ["ghcr"])
    world.registry.seed("ccr-rotator-20261101T000000Z-0b0b0b")
    world.registry.seed("ccr-rotator-20261120T000000Z-0a0a0a")
    cluster.write_failures["web"] = KubeError("cannot write: HTTP 403: forbidden", status=403, retryable=False)
    report = world.plan(one_cluster(PATCH_SERVICE_ACCOUNTS="default", KEEP_PREVIOUS_TOKENS="0"))
    assert results(report) == {("default", "web"): "failed", ("default", "ml"): "would-update"}
    assert report.namespaces[0].error == "cannot write: HTTP 403: forbidden"
    assert report.would_revoke == ["ccr-rotator-20261120T000000Z-0a0a0a", "ccr-rotator-20261101T000000Z-0b0b0b"]
    assert report.status == "failed"
    assert world.registry.minted == []
    assert world.registry.revoked == []
    assert set(world.journal.kinds()) == {"read", "dry-write", "read-account", "list"}
    assert cluster.pull_secrets_of("web", "default") == ["ghcr"]


def test_dry_run_names_the_service_accounts_that_would_be_patched():
    world = World()
    world.clusters["default"].account("web", "default", [])
    report = world.plan(one_cluster(TARGET_NAMESPACES="web", PATCH_SERVICE_ACCOUNTS="default"))
    assert report.namespaces[0].service_accounts[0].result == "would-patch"
    assert "patch" not in world.journal.kinds()


def test_dry_run_with_a_key_that_does_not_work_fails():
    world = World()
    from tests.unit.test_rotation import api_error  # noqa: PLC0415 - one helper, one place

    world.registry.list_failure = api_error(401, operation="getLimitedUsageAPIKeys")
    report = world.plan(one_cluster())
    assert report.status == "failed"
    assert report.error.startswith("the Crusoe API key does not work")
    assert report.http_status() == 500


# -- status and events -------------------------------------------------------------------------------------------


def test_status_is_ok_until_the_margin_then_names_the_targets_at_risk():
    world = World()
    world.rotate(one_cluster())
    fresh = world.status(one_cluster())
    assert fresh.http_status() == 200
    assert fresh.namespaces[0]["seconds_left"] == 12 * 3600
    late = world.status(one_cluster(), now=NOW + timedelta(hours=9, seconds=1))
    assert late.http_status() == 503
    assert late.at_risk == ["default/web", "default/ml"]
    assert late.to_json()["earliest_expiry_seconds"] == 3 * 3600 - 1


def test_status_counts_an_unreachable_cluster_and_a_missing_secret_as_at_risk(capsys):
    logs.configure("INFO")
    world = World("east", "west")
    world.unreachable.add("west")
    world.clusters["east"].put("web", pull_secret({HOST: {"auth": "eDp5"}}, expires_at="2026-11-29T06:00:00Z"))
    answer = world.status(fleet(entry("east"), entry("west")))
    assert answer.at_risk == ["west/*", "east/ml"]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (line,) = [line for line in lines if line.get("event") == "status_summary"]
    assert line["at_risk"] == ["west/*", "east/ml"]
    assert line["earliest_expiry_seconds"] == 0


def test_status_says_whether_each_service_account_references_the_secret():
    world = World()
    world.clusters["default"].account("web", "default", ["crusoe-image-pull-secrets"])
    answer = world.status(one_cluster(TARGET_NAMESPACES="web", PATCH_SERVICE_ACCOUNTS="default,other"))
    assert answer.namespaces[0]["service_accounts"] == [
        {"name": "default", "result": "references"},
        {"name": "other", "result": "missing"},
    ]


def test_events_record_each_outcome_without_a_secret():
    world = World()
    cluster = world.clusters["default"]
    cluster.write_failures["ml"] = KubeError("cannot write: HTTP 422", status=422, retryable=False)
    report = world.rotate(one_cluster())
    events = {e["regarding"]["namespace"]: e for e in cluster.events}
    assert (events["web"]["type"], events["web"]["reason"]) == ("Normal", "Rotated")
    assert report.token["alias"] in events["web"]["note"]
    assert (events["ml"]["type"], events["ml"]["reason"]) == ("Warning", "RotationFailed")
    assert events["ml"]["regarding"] == {
        "apiVersion": "v1",
        "kind": "Secret",
        "namespace": "ml",
        "name": "crusoe-image-pull-secrets",
    }
    token = world.registry.minted[0].token
    assert token not in json.dumps(cluster.events)


@pytest.mark.parametrize(("events", "recorded"), [("all", ["web", "ml"]), ("failures", ["ml"]), ("none", [])])
def test_events_setting_chooses_which_outcomes_are_recorded(events, recorded):
    world = World()
    world.clusters["default"].write_failures["ml"] = KubeError("cannot write: HTTP 422", status=422, retryable=False)
    world.rotate(one_cluster(EVENTS=events))
    assert sorted(e["regarding"]["namespace"] for e in world.clusters["default"].events) == sorted(recorded)


def test_events_setting_is_checked():
    with pytest.raises(ConfigError, match="EVENTS: must be one of all, failures, none, got 'some'"):
        one_cluster(EVENTS="some")


def test_a_failing_event_never_fails_the_rotation():
    world = World()
    world.clusters["default"].event_failure = RuntimeError("events are down")
    assert world.rotate(one_cluster()).status == "ok"
