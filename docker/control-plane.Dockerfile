# The control plane (apps/control-plane): pushes config to agents, admin API, Prometheus discovery.
# Build context: dist/docker/context, prepared by `node tools/scripts/docker-context.mjs`
# (bundles in apps/, production packages in node_modules/):
#   docker build -f docker/control-plane.Dockerfile -t amime/control-plane dist/docker/context
# NODE_IMAGE: any image with node 20 or later on PATH and /bin/sh (podman here
# builds on the local Debian minbase image: docs/operations/docker.md).
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE}
# The packages the bundle leaves external (prom-client, etcd3, ws, yaml, ...).
COPY node_modules /opt/amime/node_modules
COPY apps/control-plane/ /opt/amime/control-plane/
RUN mkdir -p /var/lib/amime && chown 65532:65532 /var/lib/amime
USER 65532:65532
WORKDIR /var/lib/amime
EXPOSE 8444 9464
ENTRYPOINT ["node", "/opt/amime/control-plane/main.mjs"]
CMD ["serve", "--dir", "/var/lib/amime/control-plane", "--ca", "https://ca:8443", "--credentials", "/var/lib/amime/ca/admin", "--host", "0.0.0.0", "--port", "8444", "--metrics-host", "0.0.0.0", "--metrics-port", "9464"]
