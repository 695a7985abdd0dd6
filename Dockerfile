# paxostob node image: `docker build -t paxostob .`, then see deploy/compose.yaml.
# The entrypoint is `paxostob serve`; its flags (or --config FILE) are the container's command.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# Wheels for paxostob and its dependencies (msgpack, uvloop), built once here.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
# A fixed uid, so a secret file or volume on the host can be given to it (chown 10001).
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin paxostob \
    && mkdir /data && chown paxostob:paxostob /data && chmod 0700 /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
USER paxostob
WORKDIR /data
# The node's durable state: promises, votes, the log and snapshots. Never share it between nodes.
VOLUME ["/data"]
# Peers (TCP, HMAC-authenticated) and clients (the Redis protocol).
EXPOSE 7001 8001
# SIGTERM stops a node cleanly (exit status 0); a storage failure exits with status 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["paxostob", "serve"]
CMD ["--help"]
