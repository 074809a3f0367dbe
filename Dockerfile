FROM python:3.11-slim
RUN useradd --system --home /var/lib/canary canary && mkdir -p /var/lib/canary && chown canary /var/lib/canary
WORKDIR /src
COPY pyproject.toml README.md ./
COPY canary ./canary
RUN pip install --no-cache-dir .
USER canary
EXPOSE 8088 2525 6432
ENTRYPOINT []
CMD ["canary", "listen"]
