# Ferry image: build with tsc, run the compiled server (workers load from dist/).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --no-audit --no-fund
COPY src ./src
COPY workers ./workers
COPY test ./test
COPY web ./web
COPY scripts ./scripts
# npm run build: tsc, then the browser uploader's bundle (dist/web).
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production FERRY_HOST=0.0.0.0 FERRY_PORT=8080 FERRY_DATA_DIR=/data
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
USER node
EXPOSE 8080
CMD ["node", "dist/src/main.js"]
