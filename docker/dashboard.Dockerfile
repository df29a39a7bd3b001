# The web dashboard (apps/dashboard): the live service graph; it holds the admin credential, keep it behind access control.
# Build context: dist/docker/context, prepared by `node tools/scripts/docker-context.mjs`
# (bundles in apps/, production packages in node_modules/):
#   docker build -f docker/dashboard.Dockerfile -t amime/dashboard dist/docker/context
# NODE_IMAGE: any image with node 20 or later on PATH and /bin/sh (podman here
# builds on the local Debian minbase image: docs/operations/docker.md).
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE}
# The packages the bundle leaves external (prom-client, etcd3, ws, yaml, ...).
COPY node_modules /opt/amime/node_modules
COPY apps/dashboard/ /opt/amime/dashboard/
RUN mkdir -p /var/lib/amime && chown 65532:65532 /var/lib/amime
USER 65532:65532
WORKDIR /var/lib/amime
EXPOSE 18090
ENTRYPOINT ["node", "/opt/amime/dashboard/main.mjs"]
# 0.0.0.0 so the port can be published; the dashboard warns that the page is then exposed:
# publish it on the host's loopback only (-p 127.0.0.1:18090:18090) or behind access control.
CMD ["--host", "0.0.0.0", "--port", "18090", "--credentials", "/var/lib/amime/ca/admin"]
