# exoroute on Node 24 (LTS): build stage compiles TypeScript and generates the Prisma client; the runtime stage
# carries production dependencies only and runs as a non-root user.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# `npm run build` generates the Prisma client into src/generated (with PRISMA_SCHEMA_ENGINE_BINARY
# set, as generating needs no schema engine) and compiles it with the rest into dist/src.
RUN npm run build && test -f dist/src/generated/prisma/client.js

FROM node:24-bookworm-slim
# A server: without EXOTEL_CALLBACK_SECRET the start stops, unless EXOTEL_CALLBACKS_OPEN=true.
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000 DATA_DIR=/data EXOTEL_REQUIRE_CALLBACK_SECRET=true
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The SQL migrations, applied at start (src/store/migrate.ts finds them beside dist/).
COPY prisma ./prisma
# DATA_DIR: generated admin key and the CDR spool. Mount a volume here, one per instance.
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 3000
# Liveness only, on PORT (as `docker run -e PORT=…` sets it); orchestrators should use GET /readyz for readiness (docker-compose.yml does).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/src/server.js"]
