# Portcullis gateway image. Three stages: OPA compiles the policies, Node compiles the TypeScript,
# and a slim runtime on a supported Node LTS runs as a non-root user with production dependencies only.
# Build: docker build -t portcullis .   Run: see docker-compose.yml and the README.
#
# Base images are pinned by version. No digest is pinned: this project's build machines reach no
# container registry, so none could be verified. Add the digests your mirror reports
# (e.g. node:24.22.3-trixie-slim@sha256:...) when you import them.
# The OPA version must equal OPA_VERSION in scripts/opa.mjs (test/container checks it).
ARG NODE_IMAGE=node:24.22.3-trixie-slim
ARG OPA_IMAGE=openpolicyagent/opa:1.22.4

# 1. Policies -> WASM bundle, compiled as scripts/opa.mjs does (same entrypoints and ignore list).
FROM ${OPA_IMAGE} AS policy
WORKDIR /src/policies
COPY policies/ ./
# Exec form: the official OPA image has no shell. /tmp, because the image may run as a non-root user.
RUN ["/opa", "build", "-t", "wasm", "-e", "gateway/authz/decision", \
     "-e", "library/rbac/decision", "-e", "library/tenant_isolation/decision", "-e", "library/device_admin/decision", \
     "-e", "library/network_time/decision", "-e", "library/tiers/decision", "-e", "library/scopes_data/decision", \
     "--capabilities", "capabilities.json", \
     "--ignore", "*_test.rego", "--ignore", "*.schema.json", "--ignore", "capabilities.json", "--ignore", "schemas", \
     "-o", "/tmp/bundle.tar.gz", "."]

# 2. TypeScript -> dist/, from the lockfile; then only production dependencies are kept.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.verify.json ./
COPY src/ ./src/
RUN npm run build && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# 3. Runtime: no compiler, no dev dependencies; runs with a read-only root.
FROM ${NODE_IMAGE}
ENV NODE_ENV=production
# A young generation sized for a proxy (src/lifecycle/node-flags.ts, docs/operations.md#memory-and-garbage-collection);
# set NODE_OPTIONS to change it.
ENV NODE_OPTIONS=--max-semi-space-size=32
WORKDIR /app
# Owned by root and not writable by the user that runs the gateway.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=policy /tmp/bundle.tar.gz ./build/bundle.tar.gz
# No package manager at run time: nothing here installs anything, and npm and corepack would only add
# code (and scanner findings) that never runs. Then the one place the gateway writes, when
# policy.persistDirectory points here: the last good policy bundle from a bundle server. A fresh volume
# mounted over it takes this owner (Docker and Podman copy it up), so the non-root user can write there
# while the root filesystem stays read-only.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
 && mkdir -p /var/lib/portcullis && chown 1000:1000 /var/lib/portcullis
# The official Node image's unprivileged user `node`, numeric so that Kubernetes can verify runAsNonRoot.
USER 1000:1000
# Public listener and admin listener; nothing else listens.
EXPOSE 8443 9090
# node is PID 1 and handles SIGTERM itself: stop accepting, drain in-flight requests, exit 0.
STOPSIGNAL SIGTERM
# Liveness of the admin listener (set PORTCULLIS_ADMIN_PORT when the config moves it). Readiness
# (/readyz: policy loaded, issuer keys fetched) is for load balancers and Kubernetes probes: restarting
# a gateway whose IdP is down would not bring the IdP back.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORTCULLIS_ADMIN_PORT||9090)+'/healthz',{signal:AbortSignal.timeout(2500)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["start", "-c", "/etc/portcullis/config.yaml"]
