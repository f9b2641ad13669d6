# One image, two roles: the controller (`msspctl server run`) and the gateway agent (`mssp-agent run`).
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables dnsmasq-base iproute2 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY controller ./controller
COPY gateway_agent ./gateway_agent
RUN pip install --no-cache-dir '.[controller]'
COPY docker/ /docker/
ENV MSSP_DATA_DIR=/data
ENTRYPOINT []
CMD ["msspctl", "server", "run"]
