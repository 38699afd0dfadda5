# syntax=docker/dockerfile:1
# One small image for every process type; the command picks the process:
#   serve shop|crm|mes [--port P]   an API (with its outbox relay and event consumer)
#   worker --metrics-port 9100      a pricing worker
#   migrate [--service S]           databases + Alembic migrations + RabbitMQ topology (a Job)

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-compile . \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3.11/site-packages/pip /opt/venv/lib/python3.11/site-packages/setuptools

FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 alexandrite \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin alexandrite \
 && mkdir -p /var/lib/alexandrite/storage /var/lib/alexandrite/secrets \
 && chown 10001:10001 /var/lib/alexandrite/storage /var/lib/alexandrite/secrets \
 && chmod 0711 /var/lib/alexandrite/secrets
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ALEX_HOST=0.0.0.0 \
    ALEX_STORAGE_DIR=/var/lib/alexandrite/storage
WORKDIR /var/lib/alexandrite
USER 10001:10001
EXPOSE 8001 8002 8003 9100
STOPSIGNAL SIGTERM
ENTRYPOINT ["alexandrite"]
CMD ["serve", "shop"]
