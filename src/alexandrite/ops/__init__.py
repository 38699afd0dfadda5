"""Operations: replicas behind a load balancer, PostgreSQL replication and backups, RabbitMQ definitions."""
