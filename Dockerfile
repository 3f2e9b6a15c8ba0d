FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY engine engine
COPY adapters adapters
COPY projections projections
COPY api api
COPY cli cli
RUN pip install --no-cache-dir .
ENV SENDSTREAM_DATA_DIR=/var/lib/sendstream
EXPOSE 8000
CMD ["sendstream", "serve", "--host", "0.0.0.0", "--port", "8000"]
