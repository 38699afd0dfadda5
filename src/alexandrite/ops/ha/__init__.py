"""High availability on one machine: no single point of failure, every engine a real cluster.

- ``etcd``: three members, the store Patroni keeps its leader lock and configuration in;
- ``patroni``: PostgreSQL primary + synchronous standby (``synchronous_mode``), automatic
  failover, the old primary rejoins as a replica by itself (``pg_rewind``);
- ``pg_balancer``: HAProxy in front of them, writes to the leader and lag-tolerant reads to
  the replica, both chosen by Patroni's REST health checks;
- ``rabbit_cluster``: three RabbitMQ nodes, quorum queues replicated on all three;
- ``sentinel``: a Redis master, a replica and three sentinels;
- ``stack``: all of it together under one run directory (``alexandrite up --ha``).

Every daemon runs in its own process group and leaves a pid file in ``<run dir>/pids``, so
whichever process started it, ``alexandrite ha down`` finds and stops it.
"""
