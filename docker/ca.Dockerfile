# The CA (apps/ca): issues SVIDs; its state (keys!) lives in /var/lib/amime/ca, keep it on a volume.
# Build context: dist/docker/context, prepared by `node tools/scripts/docker-context.mjs`
# (bundles in apps/, production packages in node_modules/):
#   docker build -f docker/ca.Dockerfile -t amime/ca dist/docker/context
# NODE_IMAGE: any image with node 20 or later on PATH and /bin/sh (podman here
# builds on the local Debian minbase image: docs/operations/docker.md).
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE}
# The packages the bundle leaves external (prom-client, etcd3, ws, yaml, ...).
COPY node_modules /opt/amime/node_modules
COPY apps/ca/ /opt/amime/ca/
RUN mkdir -p /var/lib/amime && chown 65532:65532 /var/lib/amime
USER 65532:65532
WORKDIR /var/lib/amime
EXPOSE 8443
ENTRYPOINT ["node", "/opt/amime/ca/main.mjs"]
CMD ["serve", "--dir", "/var/lib/amime/ca", "--host", "0.0.0.0", "--port", "8443", "--init-if-missing", "--trust-domain", "amime.demo"]
