# calendar-link-filter in a container: built with the dev dependencies, run with the production
# ones only, as the unprivileged `node` user of the official image.
#
#   docker build -t calendar-link-filter .
#   docker run -d --name calfilter \
#     -e CALFILTER_ALLOWED_CLIENTS=172.18.0.0/16 \
#     -e CALFILTER_NEXT_HOP=smtp://postfix:10026 \
#     -e CALFILTER_WEB_SERVER=cal.example.org \
#     calendar-link-filter
#
# Inside the container the filter listens on every interface (the MTA is in another container), so
# CALFILTER_ALLOWED_CLIENTS is required: without it the start stops with exit 78 rather than refuse
# every MTA with 554. /healthz and /metrics listen on loopback for the HEALTHCHECK; to scrape
# /metrics from outside set CALFILTER_HTTP=0.0.0.0:10080 and CALFILTER_HTTP_ALLOW_REMOTE=true.
# spec/dockerfile.test.ts checks every COPY source and runs ENTRYPOINT+CMD outside Docker.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# no install scripts: nothing we build needs one, and none runs with the registry's say-so
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY lib ./lib
COPY hooks ./hooks
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY LICENSE README.md ./
ENV CALFILTER_LISTEN=0.0.0.0:10025 \
    CALFILTER_HTTP=127.0.0.1:10080
USER node
EXPOSE 10025
# Readiness: 200 only when the next hop greets and Redis (if configured) answers PING. No curl in a
# slim image: node's own fetch. 0.0.0.0 / [::] in CALFILTER_HTTP are reached through loopback.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "const a=(process.env.CALFILTER_HTTP||'').replace(/^(0\\.0\\.0\\.0|\\[::\\]):/,'127.0.0.1:');fetch('http://'+a+'/healthz',{signal:AbortSignal.timeout(4000)}).then(async(r)=>{console.log(await r.text());process.exit(r.status===200?0:1)},(e)=>{console.log(String(e));process.exit(1)})"]
# SIGTERM: finish transactions in flight (shutdown_timeout, 30 s), so stop with `docker stop -t 40`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/bin/calendar-link-filter.js"]
CMD ["serve"]
