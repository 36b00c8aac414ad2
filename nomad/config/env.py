"""Every ``NOMAD_*`` environment variable nomad reads, in one place.

Secrets and URLs are best given here rather than in ``nomad.yaml``. Each entry
maps a variable to the config path it overrides (``None`` = not a config key).
docs/configuration.md is generated from this table's content by hand; keep
both in step.
"""

from __future__ import annotations

ENV_VARS: dict[str, tuple[str | None, str]] = {
    "NOMAD_CONFIG": (None, "path of nomad.yaml (default: ./nomad.yaml)"),
    "NOMAD_DATA_DIR": (None, "data dir of the embedded stack, SQLite queue and state (default: $XDG_DATA_HOME/nomad)"),
    "NOMAD_CACHE_DIR": (None, "content-addressed model cache (default: $XDG_CACHE_HOME/nomad)"),
    "NOMAD_REGISTRY_URL": ("registry.url", "registry base URL"),
    "NOMAD_REGISTRY_USERNAME": ("registry.username", "registry user"),
    "NOMAD_REGISTRY_PASSWORD": ("registry.password", "registry password or token"),
    "NOMAD_S3_ENDPOINT": ("storage.endpoint_url", "S3 endpoint URL"),
    "NOMAD_S3_REGION": ("storage.region", "S3 region"),
    "NOMAD_S3_BUCKET": ("storage.bucket", "bucket for outputs"),
    "NOMAD_S3_ACCESS_KEY_ID": ("storage.access_key_id", "S3 access key id"),
    "NOMAD_S3_SECRET_ACCESS_KEY": ("storage.secret_access_key", "S3 secret key"),
    "NOMAD_QUEUE_URL": ("queue.url", "postgresql://… or sqlite:///… (may hold a password)"),
    "NOMAD_BOT_TOKEN": ("bot.token", "Telegram bot token"),
    "NOMAD_BOT_API_URL": ("bot.base_url", "Bot API base URL (self-hosted Bot API server, tests)"),
    "NOMAD_WEB_TOKEN": (None, "a bearer token for the web front door's submit API"),
    "NOMAD_WEBHOOK_SECRET": ("webhooks.secret", "HMAC key that signs completion webhooks"),
    "NOMAD_HF_TOKEN": (None, "Hugging Face token for gated model downloads (HF_TOKEN also read)"),
    "NOMAD_NODE_CACHE": (None, "`nomad node pull`: the node's weight cache folder (default: DATA_DIR/node-cache)"),
    "NOMAD_NODE_CACHE_LIMIT": (None, "`nomad node pull`: cache size limit, e.g. 200G (LRU eviction; default: none)"),
    "NOMAD_NODE_S3_BUCKET": (None, "`nomad node pull --from s3`: the registry's bucket (default: registry)"),
    "NOMAD_PROXY": ("privacy.proxy", "SOCKS5h proxy URL; setting it enables privacy routing"),
    "NOMAD_MAX_PRICE_PER_HOUR": ("infra.max_price_per_hour", "cap in USD/hour per cluster"),
    "NOMAD_BACKEND": ("infra.backend", "skypilot | local | ssh | fleet"),
}

SECRET_VARS = frozenset(
    {
        "NOMAD_REGISTRY_PASSWORD",
        "NOMAD_S3_ACCESS_KEY_ID",
        "NOMAD_S3_SECRET_ACCESS_KEY",
        "NOMAD_QUEUE_URL",
        "NOMAD_BOT_TOKEN",
        "NOMAD_HF_TOKEN",
        "NOMAD_WEB_TOKEN",
        "NOMAD_WEBHOOK_SECRET",
    }
)
