# syntax=docker/dockerfile:1
# Build stage: install with dev dependencies (npm ci runs `prepare`, which compiles src/ to dist/),
# then drop dev dependencies so only runtime packages are copied on.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bin ./bin
COPY scripts/link-bin.mjs ./scripts/link-bin.mjs
RUN npm ci --no-audit --no-fund && npm prune --omit=dev --no-audit --no-fund

# Runtime stage: no compiler, no dev packages, runs as the unprivileged `node` user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --chown=root:root bin ./bin
COPY --chown=root:root package.json ./
COPY --chown=root:root config ./config
USER node
EXPOSE 8080 9901
# waygate drains on SIGTERM (ready turns 503, serves for drainDelay, then finishes in-flight requests).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9901/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "bin/waygate.js"]
CMD ["start", "--config", "/app/config/gateway.yaml"]
