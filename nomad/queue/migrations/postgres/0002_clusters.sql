-- The cluster ledger: one row per launch attempt, written before the launch call and
-- closed (closed_at set) only once the backend confirmed the cluster is gone.
-- Spend is price_per_hour over [started_at, ended_at or now). See docs/lifecycle.md.
CREATE TABLE clusters (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    backend TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('launching', 'up', 'failed', 'lost', 'stopping', 'gone')),
    requested_by TEXT NOT NULL,
    offer JSONB,
    price_per_hour DOUBLE PRECISION NOT NULL DEFAULT 0,
    endpoints JSONB NOT NULL DEFAULT '[]',
    owner TEXT,
    detail TEXT,
    started_at DOUBLE PRECISION NOT NULL,
    up_at DOUBLE PRECISION,
    ended_at DOUBLE PRECISION,
    closed_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX clusters_open_name ON clusters (project, name) WHERE closed_at IS NULL;
CREATE INDEX clusters_project_time ON clusters (project, started_at);
-- Leader leases: one holder per (project, name), e.g. the one `nomad serve` of a project.
CREATE TABLE leases (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project, name)
);
