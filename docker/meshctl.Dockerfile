# meshctl (apps/meshctl): the operator CLI; mount the admin credential and pass --credentials.
# Build context: dist/docker/context, prepared by `node tools/scripts/docker-context.mjs`
# (bundles in apps/, production packages in node_modules/):
#   docker build -f docker/meshctl.Dockerfile -t amime/meshctl dist/docker/context
# NODE_IMAGE: any image with node 20 or later on PATH and /bin/sh (podman here
# builds on the local Debian minbase image: docs/operations/docker.md).
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE}
# The packages the bundle leaves external (prom-client, etcd3, ws, yaml, ...).
COPY node_modules /opt/amime/node_modules
COPY apps/meshctl/ /opt/amime/meshctl/
RUN mkdir -p /var/lib/amime && chown 65532:65532 /var/lib/amime
USER 65532:65532
WORKDIR /var/lib/amime
ENTRYPOINT ["node", "/opt/amime/meshctl/main.mjs"]
CMD ["--help"]
