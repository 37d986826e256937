# Berth's container image. Two stages: the build stage installs every dependency and compiles the
# TypeScript; the runtime stage keeps only production dependencies and the compiled server and
# worker, runs as an unprivileged user, and writes nothing outside its volumes, so it runs with a
# read-only root filesystem (mount /var/lib/berth for the cache and /tmp as scratch).
#
#   docker build -t berth .
#   docker run -p 5000:5000 -v berth-data:/var/lib/berth --read-only --tmpfs /tmp berth
#
# The defaults come from /etc/berth/berth.yaml (deploy/docker/berth.yaml): mount your own config
# there, point BERTH_CONFIG elsewhere, or override single keys with BERTH_* / REGISTRY_* variables.

FROM node:20-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not reinstall them. Scripts run later, once the
# sources they compile are present.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
COPY workers ./workers
RUN npx tsc -p tsconfig.json \
 && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    BERTH_CONFIG=/etc/berth/berth.yaml
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/dist/workers ./dist/workers
COPY deploy/docker/berth.yaml /etc/berth/berth.yaml
# The cache volume belongs to the unprivileged user (uid 1000, "node" in the base image).
RUN mkdir -p /var/lib/berth && chown 1000:1000 /var/lib/berth
USER 1000:1000
VOLUME ["/var/lib/berth"]
EXPOSE 5000
# Liveness from inside the container, on the port the config resolves to (the YAML at
# BERTH_CONFIG, BERTH_HTTP_PORT or REGISTRY_HTTP_ADDR): `berth healthcheck` loads the config as
# serve does and asks /healthz. Node's own fetch, no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "dist/src/cli.js", "healthcheck", "/healthz"]
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["serve"]
