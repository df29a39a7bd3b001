# The demo service reviews (apps/demo-reviews): plain HTTP on 127.0.0.1, run in its agent's network namespace.
# Build context: dist/docker/context, prepared by `node tools/scripts/docker-context.mjs`
# (bundles in apps/, production packages in node_modules/):
#   docker build -f docker/demo-reviews.Dockerfile -t amime/demo-reviews dist/docker/context
# NODE_IMAGE: any image with node 20 or later on PATH and /bin/sh (podman here
# builds on the local Debian minbase image: docs/operations/docker.md).
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE}
COPY apps/demo-reviews/ /opt/amime/demo-reviews/
RUN mkdir -p /var/lib/amime && chown 65532:65532 /var/lib/amime
USER 65532:65532
WORKDIR /var/lib/amime
EXPOSE 18080
ENTRYPOINT ["node", "/opt/amime/demo-reviews/main.mjs"]
CMD ["--port", "18080"]
