# syntax=docker/dockerfile:1
# Portcullis gateway image. Three stages: OPA compiles the policies, Node compiles the TypeScript,
# and a slim runtime on a supported Node LTS runs as a non-root user with production dependencies only.
# Build: docker build -t portcullis .   Run: see docker-compose.yml and README.

# 1. Policies -> WASM bundle, with the same OPA version the project pins (scripts/opa.mjs).
FROM openpolicyagent/opa:1.22.4-static AS policy
WORKDIR /work
COPY policies/ ./policies/
RUN ["/opa", "build", "-t", "wasm", "-e", "gateway/authz/decision", \
     "--ignore", "*_test.rego", "--ignore", "*.schema.json", "--ignore", "capabilities.json", \
     "-o", "/work/bundle.tar.gz", "policies"]

# 2. TypeScript -> dist/, from the lockfile.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src/ ./src/
RUN npm run build && npm prune --omit=dev --ignore-scripts

# 3. Runtime.
FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=root:root /app/package.json ./
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --from=policy --chown=root:root /work/bundle.tar.gz ./build/bundle.tar.gz
USER node
EXPOSE 8443 9090
# The gateway handles SIGTERM itself (drains, then exits), so node can be PID 1.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9090/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["start", "-c", "/etc/portcullis/config.yaml"]
