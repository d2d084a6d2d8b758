"""pytest plugin for implementers: the fault catalogue (and optionally a campaign) as tests.

::

    pytest -p harness.pytest_plugin --dap-images images.toml --dap-impl leader=X,helper=Y
    pytest -p harness.pytest_plugin --dap-faults duplicate-report,bad-leader-token --junitxml=out.xml
    pytest -p harness.pytest_plugin --dap-campaign 50 --dap-seed 7
    pytest -p harness.pytest_plugin --dap-scenario artifacts/.../scenario.json   # a stored or shrunk scenario
    pytest -p harness.pytest_plugin --dap-backend docker --dap-impl leader=janus,helper=reference

With ``--dap-images`` or ``--dap-impl`` (or ``--dap-faults`` / ``--dap-campaign`` /
``--dap-scenario``) the plugin adds one test item per catalogue fault
(``dap-catalogue::<fault>``; only the ``--dap-scenario`` files when those are given without
``--dap-faults``), one per ``--dap-scenario`` file (``dap-scenario::<name>``) and, with
``--dap-campaign N``, one item running an N-example campaign (``dap-campaign::seed<S>``). All
run against ONE session-scoped :class:`~harness.run.Stack`, started on the first item and
closed at session end (also on failure or Ctrl-C). Without these options the plugin adds
nothing, so it is safe to load always.

An item passes when the scenario's exit code is 0 (its verdict meets the scenario's
expectation), fails with the checker's summary and verdict table otherwise: a violation, an
outcome that misses the expectation (either way), an inconclusive run (the fault never
happened, the record is incomplete) and an infra verdict (reported as such) all fail. The
campaign item fails if the campaign found a violation and prints the reproduction
commands. JUnit XML is pytest's own ``--junitxml``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from faults.catalogue import CATALOGUE
from faults.errors import one_line
from faults.scenario import Scenario, scenario_from_dict
from harness.cli.args import one_impl_each
from harness.errors import UsageError

__all__ = ["pytest_addoption", "pytest_configure"]

_STACK_KEY = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("dap-faultrun", "DAP-09 fault-injection catalogue (dap-faultrun)")
    g.addoption("--dap-images", type=Path, metavar="FILE", help="images.toml naming the implementations")
    g.addoption("--dap-impl", metavar="ROLE=NAME,...", help="implementation per role, e.g. leader=X,helper=Y")
    g.addoption("--dap-faults", metavar="NAME,...", help="only these catalogue faults (default: all)")
    g.addoption("--dap-campaign", type=int, metavar="N", help="also run a hypothesis campaign of N examples")
    g.addoption("--dap-scenario", type=Path, action="append", metavar="FILE",
                help="also run a stored scenario.json (a run dir's, a campaign failure's); repeatable")
    g.addoption("--dap-seed", type=int, default=0, metavar="S", help="campaign seed (default 0)")
    g.addoption("--dap-timeout", type=float, default=60.0, metavar="S", help="per-scenario timeout (default 60)")
    g.addoption("--dap-network", choices=("loopback", "netns"), default="loopback",
                help="netns: roles in network namespaces; adds the catalogue's network entries (root; "
                     "docs/network.md)")
    g.addoption("--dap-backend", choices=("local", "docker"), default="local",
                help="how roles run: local processes or containers (docs/docker.md); default local")
    g.addoption("--dap-pull", action="store_true", help="docker backend: pull images missing from the engine")
    g.addoption("--dap-artifacts", type=Path, metavar="DIR", help="run directories (default: pytest's basetemp)")


def _wanted(config: pytest.Config) -> bool:
    o = config.option
    return any(x is not None for x in (o.dap_images, o.dap_impl, o.dap_faults, o.dap_campaign, o.dap_scenario))


def _parse_impl(text: str | None) -> dict[str, str]:
    try:
        return one_impl_each([text] if text else [])
    except UsageError as exc:
        raise pytest.UsageError(str(exc).replace("--impl", "--dap-impl")) from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dap_fault(name): a dap-faultrun catalogue fault item")
    if not _wanted(config):
        return
    _parse_impl(config.option.dap_impl)  # a usage error before anything starts
    faults = _fault_names(config)
    unknown = [f for f in faults if f not in CATALOGUE]
    if unknown:
        raise pytest.UsageError(f"--dap-faults: no such fault {unknown[0]!r} (faultrun --list shows them)")
    if config.option.dap_campaign is not None and config.option.dap_campaign < 1:
        raise pytest.UsageError("--dap-campaign: must be >= 1")
    for path in config.option.dap_scenario or ():
        _load_scenario(path)  # a bad file is a usage error before anything starts
    config.pluginmanager.register(_Session(config), "dap-faultrun-session")


def _load_scenario(path: Path) -> Scenario:
    try:
        return scenario_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except Exception as exc:  # missing, not JSON, wrong shape: the option is wrong
        raise pytest.UsageError(f"--dap-scenario {path}: {one_line(exc)}") from None


def _fault_names(config: pytest.Config) -> list[str]:
    text = config.option.dap_faults
    if text is None:
        if config.option.dap_scenario:
            return []
        netns = getattr(config.option, "dap_network", "loopback") == "netns"  # network entries need it
        return [n for n, s in CATALOGUE.items() if netns or not s.plan.needs_network]
    return [x.strip() for x in text.split(",") if x.strip()]


class _Session:
    """Owns the session's Stack and adds the items."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.stack: Any = None
        self.collected = False

    def stack_for(self, item: pytest.Item) -> Any:
        if self.stack is None:
            from harness.run import Stack  # the process machinery: only once an item runs
            root = self.config.option.dap_artifacts or self.config._tmp_path_factory.mktemp("dap-faultrun")  # type: ignore[attr-defined]
            opt = self.config.option
            self.stack = Stack.start(artifacts_root=root, impl=_parse_impl(opt.dap_impl), images=opt.dap_images,
                                     backend=opt.dap_backend, pull=opt.dap_pull, network=opt.dap_network)
        return self.stack

    @pytest.hookimpl
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        if self.collected:
            return
        self.collected = True
        parent = _DapCollector.from_parent(session, name="dap-faultrun")
        new: list[pytest.Item] = [CatalogueItem.from_parent(parent, name=f"dap-catalogue::{n}",
                                                            scenario=CATALOGUE[n], owner=self)
                                  for n in _fault_names(config)]
        for path in config.option.dap_scenario or ():
            sc = _load_scenario(path)
            new.append(CatalogueItem.from_parent(parent, name=f"dap-scenario::{sc.name}", scenario=sc, owner=self))
        if config.option.dap_campaign is not None:
            new.append(CampaignItem.from_parent(parent, name=f"dap-campaign::seed{config.option.dap_seed}", owner=self))
        items.extend(new)

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.stack is not None:
            self.stack.close()
            self.stack = None

    @pytest.hookimpl
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.stack is not None:
            self.stack.close()


class _DapCollector(pytest.Collector):
    def collect(self) -> list[pytest.Item]:  # items are added by the session object
        return []


class DapFailure(Exception):
    """A scenario or campaign result that is not what the implementation must do."""


class CatalogueItem(pytest.Item):
    """One scenario (a catalogue fault, or a stored scenario file) run on the session's stack."""

    def __init__(self, *, scenario: Scenario, owner: _Session, **kw: Any) -> None:
        super().__init__(**kw)
        self.scenario = scenario
        self.fault = scenario.name
        self.owner = owner
        self.add_marker(pytest.mark.dap_fault(scenario.name))

    def runtest(self) -> None:
        scenario = self.scenario
        stack = self.owner.stack_for(self)
        result = stack.run_scenario(scenario, timeout_s=self.config.option.dap_timeout)
        self.user_properties.append(("verdict_class", result.report.verdict_class.value))
        self.user_properties.append(("run_dir", str(result.run_dir)))
        if result.exit_code != 0:
            lines = [f"{self.fault}: {result.report.verdict_class.value.upper()} "
                     f"(expected {scenario.expect.outcome.value}; exit {result.exit_code})",
                     result.report.summary]
            lines += [f"  {'holds' if v.valid else 'VIOLATED' if v.valid is False else 'unknown'}  "
                      f"{v.invariant}: {v.detail}" for v in result.report.verdicts]
            lines += [f"  {result.report.verdict_class.value}: {r}" for r in result.report.reasons]
            lines += [f"  infrastructure: {e}" for e in result.record.infra_errors]
            lines.append(f"run dir: {result.run_dir}")
            raise DapFailure("\n".join(lines))

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, DapFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


class CampaignItem(pytest.Item):
    def __init__(self, *, owner: _Session, **kw: Any) -> None:
        super().__init__(**kw)
        self.owner = owner

    def runtest(self) -> None:
        from harness.campaign import run_campaign  # hypothesis + the process machinery: only when asked
        stack = self.owner.stack_for(self)
        o = self.config.option
        result = run_campaign(stack, seed=o.dap_seed, examples=o.dap_campaign,
                              artifacts=stack.artifacts_root / f"campaign-seed{o.dap_seed}",
                              timeout_s=min(o.dap_timeout, 30.0))
        self.user_properties.append(("verdicts", dict(result.verdicts)))
        if result.failures or result.infra_aborted:
            lines = [f"campaign seed {o.dap_seed}: {result.examples_run} examples, verdicts {dict(result.verdicts)}"]
            for f in result.failures:
                lines += [f"VIOLATION {f.report.summary}", f"  reproduce: {f.command}"]
            if result.infra_aborted:
                lines += ["campaign stopped by infrastructure errors:"]
                lines += [f"  {r.run_dir}: {r.summary}" for r in result.infra_runs]
            raise DapFailure("\n".join(lines))

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, DapFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name
