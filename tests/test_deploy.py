"""deploy/: the Kubernetes manifests and the CI matrix example of docs/scale.md.

The manifests are validated offline against the Kubernetes OpenAPI schemas that
``kubernetes-validate`` ships (strict: an unknown field is an error), for the oldest version
whose Job API has everything they use (``backoffLimitPerIndex``, ``podFailurePolicy``: 1.31)
and the newest one it knows. The campaign and merge commands inside them are parsed by
faultrun's own argument parsers, so a renamed option breaks this test, not a night's run.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from harness.cli.campaign import build_campaign_parser
from harness.cli.merge import build_merge_parser

REPO = Path(__file__).resolve().parent.parent
K8S = sorted((REPO / "deploy" / "k8s").glob("*.yaml"))
CI = REPO / "deploy" / "ci" / "github-actions-campaign.yml"
VERSIONS = ("1.31.0", kubernetes_validate.latest_version())


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _by_kind(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for p in K8S for d in _docs(p) if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def _command(script: str, prefix: str, env: dict[str, str]) -> list[str]:
    """The ``prefix ...`` command of a shell snippet (continuation lines joined, $VARS and
    ${{ expr }} replaced from ``env``), as argv after ``prefix``."""
    text = re.sub(r"\\\n\s*", " ", script)
    line = next(x.strip() for x in text.splitlines() if prefix in x)
    line = line[line.index(prefix) + len(prefix):]
    line = re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: env[m.group(1)], line)
    line = re.sub(r"\$\{(\w+):-[^}]*\}", lambda m: env[m.group(1)], line)
    line = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], line)
    return shlex.split(line)


def test_there_are_manifests() -> None:
    assert [p.name for p in K8S] == ["campaign-job.yaml", "merge-job.yaml"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schemas(path: Path, version: str) -> None:
    for doc in _docs(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    job = copy.deepcopy(_by_kind("Job", "faultrun-campaign"))
    job["spec"]["completionMod"] = job["spec"].pop("completionMode")  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, VERSIONS[-1], strict=True)
    job = copy.deepcopy(_by_kind("Job", "faultrun-campaign"))
    job["spec"]["parallelism"] = "four"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, VERSIONS[-1], strict=True)


def test_the_indexed_job_runs_one_shard_per_index_against_the_redis_service() -> None:
    job = _by_kind("Job", "faultrun-campaign")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["SHARDS"]) == spec["completions"] >= spec["parallelism"] >= 1
    # the shard is the index the Job controller puts in every pod's environment
    argv = _command(container["args"][0], "python -m harness.cli campaign",
                    {**env, "JOB_COMPLETION_INDEX": "0", "out": "/artifacts/x/shard-0"})
    args = build_campaign_parser().parse_args(argv)
    assert str(args.shard) == f"0/{env['SHARDS']}" and args.seed == int(env["SEED"]) and args.keep_going
    assert "$JOB_COMPLETION_INDEX/$SHARDS" in container["args"][0]
    # the example database is the Redis Service; the artifacts the shared volume
    service = _by_kind("Service", "faultrun-redis")
    assert args.example_db == f"redis://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/0"
    redis = _by_kind("Deployment", "faultrun-redis")
    assert service["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    claim = _by_kind("PersistentVolumeClaim")["metadata"]["name"]
    (vol,) = spec["template"]["spec"]["volumes"]
    assert vol["persistentVolumeClaim"]["claimName"] == claim and "ReadWriteMany" in \
        _by_kind("PersistentVolumeClaim")["spec"]["accessModes"]
    assert str(args.artifacts).startswith(container["volumeMounts"][0]["mountPath"])
    # a shard that found failures must not be retried as if it broke: 1 becomes the pod's 0
    assert '[ "$rc" -le 1 ] && exit 0' in container["args"][0]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_the_merge_job_reads_every_shard_of_the_campaign() -> None:
    merge = _by_kind("Job", "faultrun-merge")
    (container,) = merge["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    argv = _command(container["args"][0], "python -m harness.cli merge", env)
    args = build_merge_parser().parse_args(argv)
    campaign = _by_kind("Job", "faultrun-campaign")["spec"]["template"]["spec"]["containers"][0]
    assert env["CAMPAIGN"] == {e["name"]: e["value"] for e in campaign["env"]}["CAMPAIGN"]
    assert [str(d) for d in args.dirs] == [f"/artifacts/{env['CAMPAIGN']}"]


def test_the_ci_matrix_example_runs_every_shard_then_merges() -> None:
    wf = yaml.safe_load(CI.read_text())
    shard_job, merge_job = wf["jobs"]["shard"], wf["jobs"]["merge"]
    shards = shard_job["strategy"]["matrix"]["shard"]
    assert shards == list(range(int(wf["env"]["SHARDS"])))
    assert shard_job["strategy"]["fail-fast"] is False
    script = next(s["run"] for s in shard_job["steps"] if "faultrun campaign" in s.get("run", ""))
    argv = _command(script, ".venv/bin/faultrun campaign",
                    {"matrix.shard": "2", "SHARDS": wf["env"]["SHARDS"], "github.run_number": "17",
                     "FAULTRUN_EXAMPLE_DB": "redis://db:6379/0", "out": "artifacts/shard-2"})
    args = build_campaign_parser().parse_args(argv)
    assert str(args.shard) == "2/4" and args.seed == 17 and args.example_db == "redis://db:6379/0"
    assert merge_job["needs"] == "shard" and merge_job["if"] == "always()"
    merge_run = next(s["run"] for s in merge_job["steps"] if "faultrun merge" in s.get("run", ""))
    build_merge_parser().parse_args(_command(merge_run, ".venv/bin/faultrun merge", {}))
