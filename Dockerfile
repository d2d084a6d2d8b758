# dap-faultrun's reference DAP-09 implementation as an interop test image (docs/docker.md):
# one image for every role, the interop test API on port 8080, logs (and role state) in /logs.
#
#   docker build -t dap-faultrun:local .
#   docker run --rm -p 127.0.0.1:8080:8080 dap-faultrun:local leader     # helper, client, collector
#
# The same image runs the fault proxy for `faultrun --backend docker` (mitmdump + our addon).
# Works with the classic builder (no BuildKit syntax). BASE must have Python >= 3.12 with the
# venv module; the default comes from a registry, `--build-arg BASE=...` picks a local image.
ARG BASE=python:3.12-slim-bookworm
FROM ${BASE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/dap-faultrun/venv \
    PATH=/opt/dap-faultrun/venv/bin:$PATH \
    PYTHONPATH=/opt/dap-faultrun/src
WORKDIR /opt/dap-faultrun/src

# Dependencies first, pinned by constraints.txt: this layer is reused until pyproject.toml or
# constraints.txt change.
COPY pyproject.toml constraints.txt ./
RUN python3 -m venv "$VIRTUAL_ENV" \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -q -c constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The project itself, importable from /opt/dap-faultrun/src (PYTHONPATH).
COPY README.md images.toml ./
COPY dap ./dap
COPY faults ./faults
COPY proxy_addons ./proxy_addons
COPY harness ./harness
RUN python -m compileall -q dap faults proxy_addons harness \
 && python -c "import dap.roles.cli, proxy_addons.addon, harness.stack.interop_image" \
 && mkdir -p /logs && chmod 1777 /logs

EXPOSE 8080
ENTRYPOINT ["python", "-m", "harness.stack.interop_image"]
CMD ["--help"]
