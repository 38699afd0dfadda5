"""Failover drill on real clusters: while 320 orders flow from create to PRICE_CALCULATED, SIGKILL in turn
the PostgreSQL leader (Patroni and PostgreSQL: the node dies), the RabbitMQ node leading the pricing queue,
the Redis master and the etcd leader. Afterwards every order the client was acknowledged is priced exactly
once in all three services' databases, the killed PostgreSQL node has rejoined as a replica by itself
(pg_rewind), the killed broker node has rejoined and its quorum queue members caught up, the former Redis
master follows the new one, and etcd has three healthy members again.

Figures (orders in flight, acknowledged, lost, duplicated, recovery seconds per fault) land in
``test-artifacts/ha-drill.json`` and are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alexandrite.devtools.simulate import simulate
from alexandrite.kit.messaging.topology import PRICING_QUEUE, consumer_queues
from alexandrite.kit.redis_clients import redis_client
from alexandrite.ops.ha.stack import HaStack
from tests.chaos.harness import ChaosPlatform, exactly_once_report, wait_until_priced_everywhere
from tests.ha.conftest import needs_ha_tools
from tests.ha.drill import Drill, acknowledged_at, ha_settings, per_fault_figures, provision_on, start_platform
from tests.observability_config import exporter_allow_list, exposed_names

pytestmark = [pytest.mark.ha, pytest.mark.e2e, needs_ha_tools]

ORDERS = 320
WORKERS = 3
MARKS = (40, 110, 180, 250)  # priced orders before each fault


@pytest.fixture
def drill_platform(ha_stack: HaStack, tmp_path: Path) -> Iterator[tuple[ChaosPlatform, str]]:
    settings, vhost = ha_settings(ha_stack, tmp_path)
    provision_on(ha_stack, settings, vhost)
    chaos = start_platform(ha_stack, settings, vhost, dict(os.environ), "ha-drill", WORKERS)
    try:
        yield chaos, vhost
    finally:
        chaos.stop()  # databases and vhost go with the layout


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alexandrite", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_status_names_the_leaders_and_up_refuses_a_running_layout(ha_stack: HaStack) -> None:
    root = str(ha_stack.root)
    status = cli("ha", "status", "--dir", root)
    assert status.returncode == 0, status.stderr
    leader = ha_stack.patroni.leader()
    assert leader is not None and f"postgres   leader {leader.name}, HAProxy writes to {leader.name}" in status.stdout
    assert "sync_standby running" in status.stdout
    assert "running " + ", ".join(sorted(n.node for n in ha_stack.layout.rabbit)) in status.stdout
    assert f"ALEX_AMQP_URL={ha_stack.layout.amqp_url()}" in status.stdout
    as_json = json.loads(cli("ha", "status", "--dir", root, "--json").stdout)
    assert set(as_json["etcd"].values()) == {"healthy"} and as_json["redis"]["master"] == "redis1"

    refused = cli("up", "--ha", "--dir", root)
    assert refused.returncode == 1 and "is running" in refused.stderr, refused.stderr
    assert len(ha_stack.running()) == 14, "the refused `up` left the running layout alone"


def test_patroni_exports_what_the_postgres_alerts_read(ha_stack: HaStack) -> None:
    wanted = {name for name in exporter_allow_list() if name.startswith("patroni_")}
    assert wanted
    for node in ha_stack.layout.postgres:
        with urllib.request.urlopen(f"http://127.0.0.1:{node.rest_port}/metrics", timeout=10) as response:
            assert wanted <= exposed_names(response.read().decode()), node.name


async def _poll(condition: Any, limit: float = 240, interval: float = 0.5) -> float:
    """Seconds until ``condition()`` (blocking, run in a thread) holds; AssertionError after ``limit``."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            if await asyncio.to_thread(condition):
                return round(time.monotonic() - started, 1)
        except Exception:
            pass
        await asyncio.sleep(interval)
    raise AssertionError(f"not within {limit} s: {getattr(condition, '__doc__', None) or condition}")


async def inject_faults(drill: Drill, stack: HaStack, vhost: str) -> list[asyncio.Task[Any]]:
    """The four faults, one after another; returns the tasks that bring the killed nodes back."""
    comebacks: list[asyncio.Task[Any]] = []
    patroni, rabbit, redis, etcd = stack.patroni, stack.rabbit, stack.redis, stack.etcd

    # Without faults, how long pricing takes for the 5 results a recovery waits for (the floor of every
    # recovery figure below on this machine at this moment), averaged over the 20 results before the first fault.
    await drill.when_priced(MARKS[0] - 20)
    steady = time.monotonic()
    priced = await drill.when_priced(MARKS[0])
    drill.baseline_seconds = round((time.monotonic() - steady) / 4, 1)

    # 1. The PostgreSQL leader's node dies: Patroni and every PostgreSQL process SIGKILLed at once.
    leader = patroni.leader()
    assert leader is not None and patroni.synchronous_standby(), "a leader with a synchronous standby"
    timeline = patroni.timeline(leader)
    fault = await drill.begin("PostgreSQL leader (Patroni + postgres SIGKILLed)", leader.name)
    await asyncio.to_thread(patroni.kill, leader.name)
    await drill.recovered(fault, priced)
    new_leader = patroni.leader()
    fault.details.update(new_leader=new_leader.name if new_leader else None, timeline_before=timeline)
    assert new_leader is not None and new_leader.name != leader.name

    async def pg_rejoins(fault: Any = fault) -> None:
        await asyncio.to_thread(patroni.start_node, leader.name)

        def replica_on_new_timeline() -> bool:
            """the killed PostgreSQL node streams from the new leader on the new timeline"""
            member = patroni.member(leader.name)
            new_timeline = patroni.timeline(new_leader)
            return (member.get("role") in ("sync_standby", "replica") and member.get("state") == "running"
                    and new_timeline is not None and member.get("timeline") == new_timeline
                    and new_timeline > (timeline or 0))

        fault.details["rejoined_as_replica_after_s"] = await _poll(replica_on_new_timeline)
        fault.details["pg_rewind"] = "pg_rewind: Done!" in patroni.daemons[leader.name].tail(200_000)

    comebacks.append(asyncio.create_task(pg_rejoins()))

    # 2. The RabbitMQ node leading the pricing queue's Raft group dies.
    priced = await drill.when_priced(MARKS[1])
    node = await asyncio.to_thread(rabbit.queue_leader, PRICING_QUEUE, vhost)
    fault = await drill.begin("RabbitMQ node leading mes.pricing.jobs (SIGKILL)", node)
    await asyncio.to_thread(rabbit.kill, node)
    await drill.recovered(fault, priced)
    fault.details["new_queue_leader"] = await asyncio.to_thread(rabbit.queue_leader, PRICING_QUEUE, vhost)

    async def broker_rejoins(fault: Any = fault) -> None:
        started = time.monotonic()
        await asyncio.to_thread(rabbit.start_node, node)
        fault.details["node_back_after_s"] = round(time.monotonic() - started, 1)

    comebacks.append(asyncio.create_task(broker_rejoins()))

    # 3. The Redis master dies (throttling fails open meanwhile; the page cache reads the database).
    priced = await drill.when_priced(MARKS[2])
    master = redis.master()
    assert master is not None
    fault = await drill.begin("Redis master (SIGKILL)", master.name)
    await asyncio.to_thread(redis.kill, master.name)
    promoted = asyncio.create_task(_poll(lambda: (m := redis.master()) is not None and m.name != master.name))
    await drill.recovered(fault, priced)
    fault.details["sentinels_promoted_replica_after_s"] = await promoted

    async def redis_rejoins(fault: Any = fault) -> None:
        await asyncio.to_thread(redis.start_node, master.name)
        fault.details["former_master_replica_after_s"] = await _poll(
            lambda: redis.role(master) == "slave" and redis.link_up(master))

    comebacks.append(asyncio.create_task(redis_rejoins()))

    # 4. The etcd leader dies: two of three members keep the quorum Patroni's leader lock lives in.
    priced = await drill.when_priced(MARKS[3])
    member = etcd.leader()
    assert member is not None
    pg_leader = patroni.leader()
    fault = await drill.begin("etcd leader (SIGKILL)", member)
    await asyncio.to_thread(etcd.kill, member)
    await drill.recovered(fault, priced)
    after = patroni.leader()
    fault.details["postgres_leader_kept"] = bool(pg_leader and after and after.name == pg_leader.name)

    async def etcd_rejoins(fault: Any = fault) -> None:
        started = time.monotonic()
        await asyncio.to_thread(etcd.start_member, member)
        fault.details["member_back_after_s"] = round(time.monotonic() - started, 1)

    comebacks.append(asyncio.create_task(etcd_rejoins()))
    return comebacks


async def test_orders_survive_the_death_of_each_clusters_leader(
        ha_stack: HaStack, drill_platform: tuple[ChaosPlatform, str]) -> None:
    chaos, vhost = drill_platform
    drill = Drill(chaos)
    started = time.monotonic()
    faults = asyncio.create_task(inject_faults(drill, ha_stack, vhost))
    outcomes, elapsed = await simulate(chaos.settings, ORDERS, concurrency=16, timeout=300, seed=2027)
    comebacks = await faults
    await asyncio.gather(*comebacks)

    errors = [f"{o.order_id}: {o.error}" for o in outcomes if o.error]
    accepted = [uuid.UUID(o.order_id) for o in outcomes if o.order_id and not o.error]
    acknowledged = {uuid.UUID(o.order_id): at for o in outcomes if o.order_id
                    and (at := acknowledged_at(o.history)) is not None}
    try:
        await wait_until_priced_everywhere(chaos.settings, accepted)
    finally:
        chaos.report.update(await exactly_once_report(chaos.settings, accepted), orders=ORDERS,
                            simulate_seconds=round(elapsed, 1), client_errors=errors[:5],
                            faults=await per_fault_figures(chaos.settings, drill.faults, acknowledged),
                            steady_state_seconds_per_5_priced=drill.baseline_seconds,
                            elapsed_seconds=round(time.monotonic() - started, 1))
        chaos.write_report("ha-drill")
    assert not errors, errors[:3]
    assert chaos.report["accepted"] == ORDERS
    assert chaos.report["lost"] == chaos.report["duplicated"] == chaos.report["diverged"] == 0, chaos.report
    assert [f["recovery_seconds"] is not None for f in chaos.report["faults"]] == [True] * 4

    # Every node is back in its cluster by itself.
    postgres, _, redis_fault, _ = drill.faults
    assert postgres.details["rejoined_as_replica_after_s"] is not None
    await _poll(ha_stack.patroni.synchronous_standby)  # the rejoined node is the synchronous standby again
    # The restarted broker's quorum queue members caught up with their leaders (nothing is published now).
    for queue in consumer_queues():
        await _poll(lambda q=queue: ha_stack.rabbit.members_in_sync(q, vhost), limit=120)
    queues = await asyncio.to_thread(ha_stack.rabbit.queues, vhost)
    assert all(len(q["online"]) == 3 for q in queues.values()), {n: q["online"] for n, q in queues.items()}
    assert redis_fault.details["former_master_replica_after_s"] is not None
    assert all(ha_stack.etcd.healthy(name) for name in ha_stack.etcd.members)

    # A client made by the kit finds the new Redis master through the sentinels.
    client = redis_client(chaos.settings, timeout=2)
    try:
        assert await client.set(f"{chaos.settings.redis.prefix}:drill", "1")
        assert (await client.info("replication"))["role"] == "master"
    finally:
        await client.aclose()
    print(f"\nsteady state: 5 orders priced in {drill.baseline_seconds} s\n" + "\n".join(f"{f['fault']}: in flight {f['in_flight']}, acknowledged {f['acknowledged']}, "
                           f"lost {f['lost']}, duplicated {f['duplicated']}, recovery {f['recovery_seconds']} s"
                           for f in chaos.report["faults"]))
