# The agent (apps/agent): one self-contained bundle; mount its config at /etc/amime/agent.yaml.
# Build context: dist/docker/context, prepared by `node tools/scripts/docker-context.mjs`
# (bundles in apps/, production packages in node_modules/):
#   docker build -f docker/agent.Dockerfile -t amime/agent dist/docker/context
# NODE_IMAGE: any image with node 20 or later on PATH and /bin/sh (podman here
# builds on the local Debian minbase image: docs/operations/docker.md).
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE}
COPY apps/agent/ /opt/amime/agent/
RUN mkdir -p /var/lib/amime && chown 65532:65532 /var/lib/amime
USER 65532:65532
WORKDIR /var/lib/amime
EXPOSE 15443 15000
ENTRYPOINT ["node", "/opt/amime/agent/main.mjs"]
CMD ["run", "--config", "/etc/amime/agent.yaml", "--token-file", "/etc/amime/token"]
