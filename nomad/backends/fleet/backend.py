"""``FleetBackend``: several backends (SkyPilot clouds, SSH pools, this box) behind one.

The blog's fleet is a rented 2xRTX 5090 over SSH at $0.80/h, an RTX 4090 at
home at $0.12/h and whatever the clouds offer. Placement can only choose by
$/job if all of them are offers in one list, so ``plan`` concatenates the
members' offers and ``launch`` hands the chosen offer to the member it came
from. Which member holds a cluster is written to ``DATA_DIR/fleet/<name>.json``
*before* the member is asked to launch, so ``status``/``teardown`` after a
crash or a restart (the autoscaler's adoption, ``nomad status``/``down``) go
to the right member; the cluster ledger keeps ``fleet`` as the backend and the
offer (whose cloud/region name the member again).

Members are keyed ``skypilot``, ``local`` and ``ssh/<pool>``; an offer's member
follows from the offer itself (:func:`member_key`), so an offer read back from
the ledger still names its member.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nomad.backends.base import (
    Backend,
    ClusterInfo,
    ClusterState,
    LaunchSpec,
    Offer,
    SupportsStop,
)
from nomad.errors import BackendError, NomadError

log = logging.getLogger(__name__)

RECORDS = "fleet"


def member_key(offer: Offer) -> str:
    """The member an offer belongs to: ``local``, ``ssh/<pool>``, else the cloud member ``skypilot``."""
    if offer.cloud == "local":
        return "local"
    if offer.cloud == "ssh":
        return f"ssh/{offer.region}"
    return "skypilot"


class FleetBackend(Backend, SupportsStop):
    """Offers of every member in one list; each cluster lives on (and is asked about at) one member."""

    name = "fleet"

    def __init__(self, members: Mapping[str, Backend], data_dir: Path) -> None:
        if not members:
            raise BackendError(
                "infra.backend is fleet but it has no members",
                hint="list members in infra.fleet (skypilot, ssh, local) and give ssh pools hosts",
            )
        self.members = dict(members)
        self.data_dir = Path(data_dir)
        self.skipped: list[str] = []  # members whose plan failed in the last plan(), with why

    # -- plan / launch ---------------------------------------------------------------------------

    def plan(self, spec: LaunchSpec) -> list[Offer]:
        """Every member's offers, cheapest $/hour first (config order when ``spec.ordered``).

        A member that cannot plan (no cloud credentials, SkyPilot missing) is
        skipped and named in :attr:`skipped`; only when none can plan is it an error.
        """
        offers: list[Offer] = []
        self.skipped = []
        errors: list[NomadError] = []
        for key, member in self.members.items():
            try:
                got = member.plan(spec)
            except NomadError as exc:
                errors.append(exc)
                self.skipped.append(f"{key}: {exc.message}")
                log.warning("fleet member %s cannot plan: %s", key, exc.message)
                continue
            offers.extend(o for o in got if member_key(o) == key)  # routable back to it
        if not offers and errors:
            raise BackendError(
                "no fleet member could plan: " + "; ".join(self.skipped),
                hint=errors[0].hint or "check infra.fleet and each member's config",
            )
        if not spec.ordered:
            offers.sort(key=lambda o: o.price_per_hour)  # stable: member order among equal prices
        return offers

    def launch(self, spec: LaunchSpec, offer: Offer | None = None) -> ClusterInfo:
        """Launch on the member the offer came from (the cheapest offer when none is given)."""
        if offer is None and spec.any_of:  # wide failover: SkyPilot's any-of launch
            return self._launch_on("skypilot", spec, None)
        if offer is None:
            offers = self.plan(spec)
            if not offers:
                raise BackendError(
                    f"the fleet offered nothing for {spec.cluster_name}",
                    hint="check infra.gpus, infra.fleet and the members' hosts/prices",
                )
            offer = offers[0]
        return self._launch_on(member_key(offer), spec, offer)

    def _launch_on(self, key: str, spec: LaunchSpec, offer: Offer | None) -> ClusterInfo:
        member = self._member(key)
        self._remember(spec.cluster_name, key, offer)  # before the call: a crash still knows where
        info = member.launch(spec, offer)
        info.backend = self.name
        info.extra = {**info.extra, "fleet_member": key}
        return info

    # -- one cluster -----------------------------------------------------------------------------

    def status(self, cluster_name: str) -> ClusterInfo:
        """The holding member's view (found by the record, else by asking each member)."""
        key = self._recorded(cluster_name)
        if key is None:
            return self._search(cluster_name)
        info = self._member(key).status(cluster_name)
        return self._tag(info, key)

    def teardown(self, cluster_name: str) -> None:
        """The holding member's teardown; a cluster no member holds is already gone."""
        key = self._recorded(cluster_name)
        if key is None:
            found = self._search(cluster_name)
            key = found.extra.get("fleet_member")
            if key is None:
                return
        self._member(str(key)).teardown(cluster_name)

    def stop(self, cluster_name: str) -> None:
        """Stop (disk kept) on the holding member; refused when that member cannot stop."""
        key = self._recorded(cluster_name)
        member = self._member(key) if key else None
        if not isinstance(member, SupportsStop):
            raise BackendError(
                f"{cluster_name} is on {key or 'no known member'}, which cannot stop a cluster",
                hint="tear it down instead (`nomad down`)",
            )
        member.stop(cluster_name)

    def can_stop(self, cluster_name: str) -> bool:
        """Whether the member holding ``cluster_name`` can stop it (keep its disk)."""
        key = self._recorded(cluster_name)
        return key is not None and isinstance(self.members.get(key), SupportsStop)

    def startup_failure(self, cluster_name: str) -> str | None:
        """The holding member's verdict while the cluster starts."""
        key = self._recorded(cluster_name)
        return self._member(key).startup_failure(cluster_name) if key else None

    def member_of(self, cluster_name: str) -> str | None:
        """The member key recorded for ``cluster_name`` (None: not launched through this fleet)."""
        return self._recorded(cluster_name)

    # -- internals -------------------------------------------------------------------------------

    def _member(self, key: str) -> Backend:
        try:
            return self.members[key]
        except KeyError:
            raise BackendError(
                f"fleet member {key!r} is not configured",
                hint=f"add it to infra.fleet (members now: {', '.join(self.members)})",
            ) from None

    def _tag(self, info: ClusterInfo, key: str) -> ClusterInfo:
        info.backend = self.name
        info.extra = {**info.extra, "fleet_member": key}
        if info.state is ClusterState.GONE:
            self._forget(info.name)
        return info

    def _search(self, cluster_name: str) -> ClusterInfo:
        """No record (launched elsewhere, record lost): ask each member. A member that cannot
        answer makes the answer unknown (raised), never GONE: GONE would close the ledger row."""
        failure: NomadError | None = None
        for key, member in self.members.items():
            try:
                info = member.status(cluster_name)
            except NomadError as exc:
                failure = failure or exc
                continue
            if info.state is not ClusterState.GONE:
                self._remember(cluster_name, key, info.offer)
                return self._tag(info, key)
        if failure is not None:
            raise failure
        return ClusterInfo(name=cluster_name, backend=self.name, state=ClusterState.GONE)

    def _path(self, cluster_name: str) -> Path:
        if not cluster_name or "/" in cluster_name or cluster_name.startswith("."):
            raise BackendError(f"invalid cluster name {cluster_name!r}")
        return self.data_dir / RECORDS / f"{cluster_name}.json"

    def _remember(self, cluster_name: str, key: str, offer: Offer | None) -> None:
        path = self._path(cluster_name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc: dict[str, Any] = {
            "cluster": cluster_name,
            "member": key,
            "offer": offer.to_json() if offer else None,
            "at": time.time(),
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)

    def _recorded(self, cluster_name: str) -> str | None:
        try:
            doc = json.loads(self._path(cluster_name).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        key = doc.get("member") if isinstance(doc, dict) else None
        return str(key) if key else None

    def _forget(self, cluster_name: str) -> None:
        self._path(cluster_name).unlink(missing_ok=True)
