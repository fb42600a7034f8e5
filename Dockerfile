# One image for all four services; the command picks the service:
#   docker run media-jobs node gateway/dist/main.js   (the default)
#   docker run media-jobs node download-worker/dist/main.js
# docker-compose.yml runs the whole stack with it.

ARG NODE_IMAGE=node:22-bookworm-slim

# --- build: TypeScript → each package's dist/ -------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY libs/package.json libs/
COPY gateway/package.json gateway/
COPY download-worker/package.json download-worker/
COPY normalize-worker/package.json normalize-worker/
COPY janitor/package.json janitor/
RUN npm ci --no-audit --no-fund
COPY tsconfig.base.json tsconfig.build.json ./
COPY libs libs
COPY gateway gateway
COPY download-worker download-worker
COPY normalize-worker normalize-worker
COPY janitor janitor
RUN npm run build

# --- runtime ------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# ffmpeg/ffprobe for the workers; Debian's yt-dlp (and python3) as the fallback.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg yt-dlp python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Debian's yt-dlp (bookworm: 2023.03.04) is too old for YouTube today: install a current one
# in its own virtualenv, ahead of it on PATH, when the build can reach PyPI. Rebuild the image
# (docker compose build --no-cache) to pick up a newer yt-dlp; --build-arg YTDLP_PIP=0 keeps Debian's.
ARG YTDLP_PIP=1
RUN if [ "$YTDLP_PIP" = 1 ]; then \
      if python3 -m venv /opt/yt-dlp \
         && timeout 180 /opt/yt-dlp/bin/pip install --no-cache-dir --disable-pip-version-check -U yt-dlp; then \
        ln -s /opt/yt-dlp/bin/yt-dlp /usr/local/bin/yt-dlp; \
      else \
        echo "No current yt-dlp from PyPI; using Debian's"; rm -rf /opt/yt-dlp; \
      fi; \
    fi \
 && yt-dlp --version && ffmpeg -version | head -n 1

WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
COPY libs/package.json libs/
COPY gateway/package.json gateway/
COPY download-worker/package.json download-worker/
COPY normalize-worker/package.json normalize-worker/
COPY janitor/package.json janitor/
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/libs/dist libs/dist
COPY --from=build /app/gateway/dist gateway/dist
COPY --from=build /app/download-worker/dist download-worker/dist
COPY --from=build /app/normalize-worker/dist normalize-worker/dist
COPY --from=build /app/janitor/dist janitor/dist

# Every service shares one data volume; the image's /data belongs to the unprivileged user,
# so a new named volume does too.
RUN mkdir -p /data && chown node:node /data
ENV DATA_DIR=/data HOST=0.0.0.0 PORT=8000
VOLUME /data
USER node
EXPOSE 8000
CMD ["node", "--enable-source-maps", "gateway/dist/main.js"]
