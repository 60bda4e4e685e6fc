# cairn in a container: the daemon as an unprivileged user.
#
#   docker build -t cairn .
#   docker run -d --name cairn \
#     -v /srv/cairn/cairn.toml:/etc/cairn/cairn.toml:ro \
#     -v /srv/cairn/state:/var/lib/cairn \
#     -v /srv/app/data:/data \
#     -v /srv/backups:/backups \
#     -e S3_SECRET=… cairn
#
# In the config: [state] path = "/var/lib/cairn/cairn-state.db". The dump tools
# come from Debian: pg_dump must be at least the server's major version (use an
# image with the PostgreSQL project's packages for newer servers).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/cairn

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql-client mariadb-client openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/cairn --create-home cairn \
 && mkdir -p /etc/cairn && chmod 0700 /var/lib/cairn
COPY --from=build /src/target/release/cairn /usr/local/bin/cairn
USER cairn
ENV CAIRN_CONFIG=/etc/cairn/cairn.toml
VOLUME ["/var/lib/cairn"]
# `cairn daemon` stops on SIGTERM (docker stop): give it the shutdown grace, e.g. --stop-timeout 90.
STOPSIGNAL SIGTERM
ENTRYPOINT ["cairn"]
CMD ["--log-format", "json", "daemon"]
