# The fraudrules image: the CLI with the example plugin installed.
#   docker build -t fraudrules .   then   docker run --rm fraudrules --help
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY plugins ./plugins
RUN pip install --no-cache-dir . ./plugins/fraudrules-round-amount \
    && useradd --create-home fraudrules \
    && mkdir -p /var/lib/fraudrules && chown fraudrules /var/lib/fraudrules
USER fraudrules
ENV FRAUDRULES_STATE_DIR=/var/lib/fraudrules
ENTRYPOINT ["fraudrules"]
CMD ["run"]
