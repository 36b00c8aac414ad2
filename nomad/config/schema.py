"""The typed schema of ``nomad.yaml``.

Every model forbids unknown keys, so a typo is an error that names the key
(and, through :mod:`nomad.config.load`, the file and line). Secrets are
``SecretStr`` so they never appear in reprs, logs or ``--json`` output.
Environment overrides are listed in :data:`nomad.config.env.ENV_VARS`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

MODEL_FOLDERS = (
    "checkpoints",
    "diffusion_models",
    "unet",
    "text_encoders",
    "clip",
    "clip_vision",
    "vae",
    "loras",
    "controlnet",
    "upscale_models",
    "embeddings",
    "style_models",
    "model_patches",
    "audio_encoders",
)


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, values validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RegistryConfig(Strict):
    """Where images are pushed. Empty ``url`` means the embedded ``nomad dev`` registry."""

    url: str | None = Field(None, description="registry base URL, e.g. https://reg.example.com or http://127.0.0.1:5000")
    repository: str | None = Field(None, description="repository name; defaults to the project name")
    username: str | None = None
    password: SecretStr | None = None
    insecure: bool = Field(False, description="allow plain HTTP / unverified TLS")
    parallel_blobs: int = Field(4, ge=1, le=64)
    direct_s3: bool = Field(
        False,
        description="write blobs straight into the registry's S3 layout when nomad holds the bucket keys",
    )


class StorageConfig(Strict):
    """S3-compatible object storage (outputs, registry backing store). Empty endpoint = embedded SeaweedFS."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    bucket: str = "nomad"
    registry_bucket: str = "registry"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    outputs_prefix: str = "outputs/"


class ComfyUIConfig(Strict):
    """How ComfyUI runs inside the image."""

    version: str = "v0.3.75"
    port: int = Field(8188, ge=1, le=65535)
    args: list[str] = Field(default_factory=list)
    custom_nodes: list[str] = Field(
        default_factory=list,
        description="GIT_URL@REV custom nodes: `nomad build` adds one deterministic layer (sources at"
        " the commit + their pip requirements, locked)",
    )
    pip_constraints: list[str] = Field(
        default_factory=list,
        description="pip constraints for the custom nodes' requirements, e.g. the base's"
        " `torch==2.5.1`, so a node never pulls in a second torch",
    )


class ImageConfig(Strict):
    """What ``nomad build`` assembles: base + model sets + workflows."""

    base: str = Field(
        "busybox",
        description="registry reference (docker.io/org/img:tag), oci:PATH[:TAG], oci-archive:PATH,"
        " or `busybox` (a tiny base nomad makes from busybox-static, for tests and demos)",
    )
    tag: str = "latest"
    model_sets: list[str] = Field(default_factory=list, description="names under `models:`; empty = all")
    models_from_workflows: bool = Field(
        False, description="also include every model the enabled workflows need"
    )
    models_root: str = "/opt/ComfyUI/models"
    workflows_root: str = "/opt/nomad/workflows"
    extra_files: dict[str, str] = Field(default_factory=dict, description="image path -> local path")
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    comfyui: ComfyUIConfig = Field(default_factory=ComfyUIConfig)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelFile(Strict):
    """One weight file: where it comes from, what it must hash to, where it goes."""

    dest: str = Field(..., description="path under the ComfyUI models tree, e.g. vae/ae.safetensors")
    source: str = Field(..., description="local path, http(s)://, s3://bucket/key or a Hugging Face resolve URL")
    sha256: str | None = None
    size: int | None = Field(None, ge=0)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and not _SHA256.match(v.lower()):
            raise ValueError("sha256 must be 64 lowercase hex characters")
        return v.lower() if v else v

    @field_validator("dest")
    @classmethod
    def _dest(cls, v: str) -> str:
        parts = v.strip("/").split("/")
        if len(parts) < 2 or ".." in parts or parts[0] not in MODEL_FOLDERS:
            raise ValueError(
                f"dest must be FOLDER/FILE with FOLDER one of {', '.join(MODEL_FOLDERS)} (no '..')"
            )
        return "/".join(parts)


class WorkflowsConfig(Strict):
    """Which workflows a deployment offers. Built-ins live in the repo's workflows/."""

    dirs: list[str] = Field(default_factory=list, description="extra folders with user workflows")
    enabled: list[str] = Field(default_factory=list, description="empty = every known workflow")


class LocalBackendConfig(Strict):
    """``local`` backend: docker with GPUs when an engine exists, else a command."""

    mode: Literal["auto", "docker", "command"] = "auto"
    command: list[str] = Field(
        default_factory=list,
        description="argv that starts one ComfyUI; {port} and {gpu} are substituted",
    )
    gpus: int = Field(1, ge=0, description="ComfyUI servers to start (one per GPU)")
    host: str = "127.0.0.1"
    price_per_hour: float = Field(0.0, ge=0, description="what this box costs you, for cost accounting")
    gpu_name: str = Field(
        "local",
        description="the GPU model, e.g. RTX4090: the name benchmarks use, so placement can price a job here",
    )
    models_dir: str | None = Field(
        None,
        description="command mode with node.weights: fetched: the host ComfyUI's models folder the "
        "pulled weights are symlinked into",
    )


class SSHHost(Strict):
    """One rented box reachable by SSH."""

    ip: str
    user: str = "root"
    identity_file: str | None = None
    port: int = Field(22, ge=1, le=65535)
    price_per_hour: float = Field(0.0, ge=0, description="what this box costs per hour (all its GPUs)")
    gpu: str | None = Field(
        None, description="its GPU model, e.g. RTX5090 (empty: the first of infra.gpus)"
    )
    gpu_count: int | None = Field(
        None, ge=1, le=16, description="GPUs in this box (empty: infra.gpu_count)"
    )


class SSHBackendConfig(Strict):
    """``ssh`` backend: SkyPilot SSH node pool built from these hosts."""

    pool: str = Field("nomad-pool", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    hosts: list[SSHHost] = Field(default_factory=list)


class PlacementConfig(Strict):
    """How offers are ranked: expected $ per job from benchmarks (docs/cost.md), else $/hour."""

    rank_by: Literal["job", "hour"] = Field(
        "job", description="job: expected $ per job when benchmark results exist; hour: $/hour"
    )
    bench: list[str] = Field(
        default_factory=list,
        description="benchmark result files (`nomad bench --out`), or @reference for the published figures",
    )
    mix: dict[str, float] = Field(
        default_factory=dict, description="workflow -> weight; empty = enabled workflows equally"
    )
    jobs_per_wake: float | None = Field(
        None, gt=0, description="jobs one wake serves; set to amortise cold start + idle tail per job"
    )
    cold_start_seconds: float = Field(
        0.0, ge=0, description="provision + pull + load, priced per wake (with jobs_per_wake)"
    )


FleetMember = Literal["skypilot", "local", "ssh"]


def _default_fleet() -> list[FleetMember]:
    return ["skypilot", "ssh"]


class StoppedDiskConfig(Strict):
    """What stop-vs-down weighs when a cluster goes idle (``infra.on_idle: auto``, docs/cost.md)."""

    usd_per_gb_month: float = Field(
        0.10, ge=0, description="storage price of a stopped node's disk (USD per GB-month; set your cloud's)"
    )
    idle_gap_hours: float = Field(
        12.0, gt=0, description="expected time to the next job when the queue's recent arrivals show none"
    )
    wait_usd_per_hour: float = Field(
        0.0, ge=0, description="what an hour of users waiting for a re-pull is worth to you (0: only GPU time)"
    )
    repull_seconds: float | None = Field(
        None, ge=0, description="seconds a kept disk saves on the next wake (empty: the recorded median cold start)"
    )


class InfraConfig(Strict):
    """Where and how the GPU runs, and how much it may cost."""

    backend: Literal["skypilot", "local", "ssh", "fleet"] = Field(
        "skypilot", description="fleet: offers of every member in infra.fleet ranked in one list"
    )
    fleet: list[FleetMember] = Field(
        default_factory=_default_fleet,
        description="members of backend: fleet (ssh = every pool: infra.ssh and infra.ssh_pools;"
        " local, this machine, only when listed)",
    )
    gpus: list[str] = Field(default_factory=lambda: ["RTX4090", "L40S", "A100-80GB"])
    ordered: bool = Field(False, description="true: gpus is a preference order; false: cheapest of any")
    gpu_count: int = Field(1, ge=1, le=16)
    min_vram_gb: float | None = Field(None, ge=0)
    max_price_per_hour: float | None = Field(None, gt=0, description="USD per hour per cluster")
    daily_budget: float | None = Field(None, gt=0, description="USD per day across clusters")
    spot: bool = False
    clouds: list[str] = Field(default_factory=list, description="empty = every enabled cloud")
    regions: list[str] = Field(default_factory=list)
    idle_minutes: float = Field(10, gt=0, description="serve tears a cluster down after this long without work")
    on_idle: Literal["auto", "stop", "down"] = Field(
        "auto",
        description="an idle cluster: auto = stop (keep the disk) when storing it until the next job"
        " costs less than pulling again, else down; stop/down force it (backends that can stop)",
    )
    stopped_disk: StoppedDiskConfig = Field(default_factory=StoppedDiskConfig)
    wide_failover: bool = Field(
        False,
        description="after the ranked offers failed, one SkyPilot launch over all the other offers"
        " within max_price_per_hour (SkyPilot's own any-of failover)",
    )
    node_idle_margin_minutes: float = Field(
        3,
        gt=0,
        description="the node's dead-man's switch waits idle_minutes + this (serve decides first)",
    )
    health_timeout_seconds: float = Field(
        900,
        gt=0,
        description="how long a wake waits for ComfyUI to answer (provisioning + image pull)",
    )
    max_clusters: int = Field(1, ge=1)
    backlog_per_cluster: int = Field(8, ge=1, description="scale out when waiting jobs per cluster exceed this")
    disk_gb: int | None = Field(None, ge=20)
    cluster_name: str | None = None
    catalog_dir: str | None = Field(None, description="pinned SkyPilot catalog snapshot")
    placement: PlacementConfig = Field(default_factory=PlacementConfig)
    local: LocalBackendConfig = Field(default_factory=LocalBackendConfig)
    ssh: SSHBackendConfig = Field(default_factory=SSHBackendConfig)
    ssh_pools: list[SSHBackendConfig] = Field(
        default_factory=list, description="more SSH pools (backend: fleet), each with its own hosts"
    )

    @model_validator(mode="after")
    def _pools_unique(self) -> InfraConfig:
        names = [p.pool for p in self.all_ssh_pools()]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"SSH pool names must be unique (infra.ssh, infra.ssh_pools): {', '.join(dup)}")
        return self

    def all_ssh_pools(self) -> list[SSHBackendConfig]:
        """``infra.ssh`` (when it has hosts) then ``infra.ssh_pools``: every SSH pool of the fleet."""
        return ([self.ssh] if self.ssh.hosts else []) + list(self.ssh_pools)

    @model_validator(mode="after")
    def _node_window_outlasts_the_drain(self) -> InfraConfig:
        """The node's switch must not fire while serve still drains (a job arriving then
        would go to a dead ComfyUI): the margin must exceed the drain (10% of idle, ≤ 30 s)."""
        drain_s = min(30.0, self.idle_minutes * 6.0)
        if self.node_idle_margin_minutes * 60.0 <= drain_s:
            raise ValueError(
                f"infra.node_idle_margin_minutes ({self.node_idle_margin_minutes:g} min) must be "
                f"longer than serve's drain ({drain_s:g} s), or the node stops before serve does"
            )
        return self


class QueueLimits(Strict):
    """Per-user limits enforced in the queue, for every front door."""

    in_flight_per_user: int | None = Field(2, ge=1)
    per_day_per_user: int | None = Field(100, ge=1)


class QueueConfig(Strict):
    """The durable job queue. Empty url = SQLite file in the nomad data dir."""

    url: SecretStr | None = Field(None, description="postgresql://… or sqlite:///path")
    lease_seconds: float = Field(300, gt=0)
    max_attempts: int = Field(3, ge=1)
    limits: QueueLimits = Field(default_factory=QueueLimits)


class WebhookConfig(Strict):
    url: str
    listen: str = "127.0.0.1"
    port: int = Field(8443, ge=1, le=65535)
    secret_token: SecretStr | None = None


class BotConfig(Strict):
    """The Telegram front door."""

    token: SecretStr | None = Field(None, description="prefer NOMAD_BOT_TOKEN")
    allowlist: list[int] = Field(default_factory=list, description="Telegram user ids allowed to spend GPU time")
    admins: list[int] = Field(default_factory=list)
    commands: dict[str, str] = Field(
        default_factory=lambda: {
            "f": "flux_schnell",
            "dev": "flux_dev",
            "sd": "sd35_large",
            "qwen": "qwen_image_edit",
            "wan": "wan22_t2v",
        },
        description="command (without /) -> workflow name",
    )
    mode: Literal["polling", "webhook"] = "polling"
    webhook: WebhookConfig | None = None
    base_url: str | None = Field(None, description="Bot API base URL (tests, self-hosted Bot API server)")

    @model_validator(mode="after")
    def _webhook(self) -> BotConfig:
        if self.mode == "webhook" and self.webhook is None:
            raise ValueError("mode: webhook needs a webhook: {url: …} section")
        return self


def _https_only() -> list[Literal["https", "http"]]:
    return ["https"]


class WebConfig(Strict):
    """The one-button web page + JSON API front door (``nomad web``)."""

    listen: str = Field("127.0.0.1", description="bind address; put a TLS proxy or hidden service in front")
    port: int = Field(8080, ge=1, le=65535)
    tokens: list[SecretStr] = Field(
        default_factory=list,
        description="bearer tokens allowed to submit jobs (NOMAD_WEB_TOKEN adds one); empty = no submissions",
    )
    max_upload_mb: float = Field(20, gt=0, le=200)
    workflows: list[str] = Field(default_factory=list, description="offered workflows; empty = all enabled")
    image_url_schemes: list[Literal["https", "http"]] = Field(
        default_factory=_https_only, description="schemes allowed for input images given by URL (image_url)"
    )
    image_url_allow_private: bool = Field(
        False, description="let image_url reach private/loopback addresses (your own network only)"
    )
    public_status: bool = Field(
        False, description="serve /api/status (queue depth, GPU state) without a token"
    )
    auth_failures_per_minute: int = Field(
        10, ge=1, description="wrong or missing tokens per client address per minute before 429"
    )

    @field_validator("tokens")
    @classmethod
    def _no_blank_tokens(cls, tokens: list[SecretStr]) -> list[SecretStr]:
        """An empty token would let anyone who sends ``Bearer `` spend GPU money."""
        for token in tokens:
            if len(token.get_secret_value().strip()) < 8:
                raise ValueError("a token must have at least 8 non-blank characters (try `openssl rand -hex 16`)")
        return tokens


class WebhooksConfig(Strict):
    """Completion webhooks for API users (signed, retried, recorded; sent by ``nomad serve``)."""

    secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key for X-Nomad-Signature (NOMAD_WEBHOOK_SECRET); unset = webhooks refused"
    )
    allow_private: bool = Field(False, description="allow webhook URLs on private/loopback addresses")
    max_attempts: int = Field(6, ge=1, le=20, description="tries per job (exponential backoff from 5 s)")
    timeout_seconds: float = Field(10, gt=0, le=120)


class BatchLimits(Strict):
    """A batch job's own limits (the interactive per-user quotas never apply to batch jobs)."""

    in_flight: int | None = Field(
        1, ge=1, description="runs of this job waiting or running at once; a due slot waits for a free one"
    )
    per_day: int | None = Field(
        None, ge=1, description="runs enqueued in any 24 hours (filter re-runs included); empty = no cap"
    )


class BlankCheck(Strict):
    """Reject near-uniform images (a broken model's flat grey or black frame)."""

    check: Literal["blank"]
    min_stddev: float = Field(3.0, ge=0, description="luminance standard deviation (0-255) below which an image is blank")


class SizeCheck(Strict):
    """Reject images whose pixel size is not what was asked for."""

    check: Literal["size"]
    width: int | None = Field(None, ge=1, description="exact width in pixels")
    height: int | None = Field(None, ge=1, description="exact height in pixels")
    min_width: int | None = Field(None, ge=1)
    min_height: int | None = Field(None, ge=1)


class MinBytesCheck(Strict):
    """Reject output files smaller than a floor (truncated or empty results)."""

    check: Literal["min_bytes"]
    bytes: int = Field(..., ge=1)


class PythonCheck(Strict):
    """A user hook: ``module:function`` called with the output's path, returns accept/reject."""

    check: Literal["python"]
    entry: str = Field(
        ...,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:function; the module may sit next to nomad.yaml",
    )


class CommandCheck(Strict):
    """A user hook: a command given the output's path; exit 0 accepts, 1 rejects (stdout = reason)."""

    check: Literal["command"]
    argv: list[str] = Field(..., min_length=1, description="{path} is replaced by the output file")
    timeout: float = Field(60, gt=0, le=3600)


FilterCheck = Annotated[
    BlankCheck | SizeCheck | MinBytesCheck | PythonCheck | CommandCheck,
    Field(discriminator="check"),
]
_WINDOW = r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$"


class BatchJob(Strict):
    """A cron-triggered job, e.g. a daily wallpaper stored to S3 (see docs/batch.md)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    schedule: str = Field(..., description="cron expression, UTC")
    workflow: str
    params: dict[str, Any] = Field(default_factory=dict)
    output_key: str = Field(
        "batch/{name}/{date}/{time}/{index}{ext}",
        description="S3 key template; must be unique per run ({time}+{date}, {slot} or {job})",
    )
    manifest_key: str | None = Field(
        None, description="manifest key template; default: output_key with {index}=manifest, {ext}=.json"
    )
    latest_key: str = Field("batch/{name}/latest.json", description="the per-job `latest` pointer")
    catch_up: Literal["latest", "none"] = Field(
        "latest", description="after downtime: run the latest missed slot, or none"
    )
    filters: list[FilterCheck] = Field(default_factory=list, description="checks on each output before it is stored: blank, size, min_bytes, python, command (docs/batch.md)")
    max_tries: int = Field(3, ge=1, le=20, description="runs per slot when filters reject (each with a new seed)")
    limits: BatchLimits = Field(default_factory=BatchLimits)
    window: str | None = Field(
        None, pattern=_WINDOW, description="UTC hours the run may start in, e.g. 02:00-05:00"
    )
    spot: bool = Field(False, description="this job may run on spot (preemptible) offers")
    max_price_per_hour: float | None = Field(None, gt=0, description="USD/hour cap for this job's runs")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(v):
            raise ValueError(f"not a valid cron expression: {v!r}")
        return v


class BatchConfig(Strict):
    jobs: list[BatchJob] = Field(default_factory=list)


class HiddenService(Strict):
    name: str
    port: int = Field(80, ge=1, le=65535)
    target: str = Field(..., description="host:port the service forwards to")


class NodePrivacy(Strict):
    """How GPU nodes publish their ComfyUI servers as hidden services (docs/privacy.md)."""

    publish: Literal["auto", "always", "never"] = Field(
        "auto",
        description="each ComfyUI as a hidden service, no open port on the node (auto: when "
        "privacy.enabled); serve reaches it by its .anon/.onion address",
    )
    client: Literal["anon", "tor"] | None = Field(
        None, description="the node's client (default: privacy.client); decides .anon or .onion"
    )
    binary: str | None = Field(
        None, description="the client on the node: a path or a name on its PATH (default: client)"
    )
    ship_binary: str | None = Field(
        None,
        description="a local static binary nomad copies to the node when the image has no "
        "client (default for anon: the static linux/x86-64 anon this machine runs, if it is one)",
    )
    port: int = Field(80, ge=1, le=65535, description="the hidden service's virtual port")


class PrivacyLegs(Strict):
    """Which traffic goes through the proxy when privacy is on (``false``: that leg goes direct).

    Every leg defaults to on; an explicit ``false`` is reported by ``nomad doctor`` and warned
    about once per process. Nothing here matters while ``privacy.enabled`` is false.
    """

    comfy: bool = Field(True, description="ComfyUI HTTP/WebSocket and the health checks of up/serve")
    telegram: bool = Field(True, description="the bot's Bot API calls (long polling, sends, file downloads)")
    registry: bool = Field(True, description="registry pushes/verifies, build's base pull, weight pulls on this side")
    s3: bool = Field(True, description="S3 (boto3): outputs, direct registry-bucket writes, s3:// models, presigned GETs")
    downloads: bool = Field(True, description="model weights fetched by URL in `nomad build` (http/https/Hugging Face)")
    webhooks: bool = Field(
        True,
        description="completion webhooks: they can't go through the proxy (their SSRF check pins "
        "the resolved IP), so with this true they are off; false sends them direct",
    )


class PrivacyConfig(Strict):
    """Route nomad's HTTP/WS through the Anyone network (or Tor) via SOCKS5h."""

    enabled: bool = False
    proxy: str = "socks5h://127.0.0.1:9050"
    mode: Literal["external", "managed"] = Field(
        "external",
        description="external: you run the SOCKS proxy; managed: nomad starts and supervises anon/tor",
    )
    client: Literal["anon", "tor"] = "anon"
    binary: str | None = None
    connect_timeout: float = Field(
        30.0, gt=0, description="hard deadline (s) for a proxied connect incl. the SOCKS handshake"
    )
    strip_metadata: Literal["auto", "always", "never"] = Field(
        "auto", description="remove prompt/workflow text chunks from PNG outputs (auto: when enabled)"
    )
    hidden_services: list[HiddenService] = Field(default_factory=list)
    node: NodePrivacy = Field(default_factory=NodePrivacy)
    extra_config: list[str] = Field(
        default_factory=list,
        description="lines appended to every anonrc/torrc nomad writes (bridges, a private network)",
    )
    legs: PrivacyLegs = Field(default_factory=PrivacyLegs, description="per leg: through the proxy (true) or direct")

    @field_validator("extra_config")
    @classmethod
    def _one_line_each(cls, v: list[str]) -> list[str]:
        for line in v:
            if "\n" in line or "\r" in line or not line.strip():
                raise ValueError(f"each line must be one non-empty config line, got {line!r}")
        return v

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: str) -> str:
        if v.startswith("socks5://"):  # some clients resolve socks5:// names locally: DNS leak
            return "socks5h://" + v.removeprefix("socks5://")
        if not v.startswith("socks5h://"):
            raise ValueError("proxy must be a socks5h:// URL (names resolved by the proxy)")
        return v

    def strips_metadata(self) -> bool:
        """Whether outputs lose their generation metadata before they are stored or sent."""
        return self.strip_metadata == "always" or (self.strip_metadata == "auto" and self.enabled)


ProjectName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


class WarmupConfig(Strict):
    """A workflow run once on every new node before the first real job (docs/cold-start.md)."""

    workflow: str = Field(..., description="a known workflow name; its model load is paid here")
    params: dict[str, Any] = Field(default_factory=dict, description="parameters (small: a few steps)")
    timeout_s: float = Field(900, gt=0, description="give up after this; the node still serves")


class NodeConfig(Strict):
    """The GPU node's side of a wake: how weights arrive, the node cache, warm-up."""

    weights: Literal["auto", "baked", "fetched"] = Field(
        "auto",
        description="baked: the provider pulls the full image; fetched: slim image + `nomad node "
        "pull` on the host; auto: fetched on SkyPilot VM clouds and ssh pools when base_image is "
        "set, baked on pod clouds (the local backend: fetched only when set explicitly)",
    )
    base_image: str | None = Field(
        None, description="fetched mode: the slim image the engine pulls (REPO@sha256:…, `nomad node slim`)"
    )
    cache_dir: str = Field("~/.nomad/cache", description="the node's weight cache (on the node)")
    cache_max_gb: float | None = Field(None, gt=0, description="cache limit; least recently used weights go first")
    warmup: WarmupConfig | None = None


class NomadConfig(Strict):
    """The whole of ``nomad.yaml``."""

    project: ProjectName = "nomad"
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    image: ImageConfig = Field(default_factory=ImageConfig)
    models: dict[str, list[ModelFile]] = Field(default_factory=dict, description="model sets")
    workflows: WorkflowsConfig = Field(default_factory=WorkflowsConfig)
    infra: InfraConfig = Field(default_factory=InfraConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    bot: BotConfig = Field(default_factory=BotConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    node: NodeConfig = Field(default_factory=NodeConfig)

    @model_validator(mode="after")
    def _sets_exist(self) -> NomadConfig:
        missing = [s for s in self.image.model_sets if s not in self.models]
        if missing:
            raise ValueError(f"image.model_sets names unknown model sets: {', '.join(missing)}")
        return self
