-- Jobs, small state documents. Times are unix seconds (double precision); JSON as JSONB.
CREATE TABLE jobs (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    workflow TEXT NOT NULL,
    params JSONB NOT NULL DEFAULT '{}',
    inputs JSONB NOT NULL DEFAULT '{}',
    status TEXT NOT NULL CHECK (status IN ('queued', 'waking', 'running', 'succeeded', 'failed', 'cancelled')),
    front_door TEXT NOT NULL DEFAULT 'cli',
    user_ref TEXT,
    chat TEXT,
    client_key TEXT UNIQUE,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    error TEXT,
    outputs JSONB NOT NULL DEFAULT '[]',
    times JSONB NOT NULL DEFAULT '{}',
    gpu TEXT,
    cluster TEXT,
    cost DOUBLE PRECISION,
    progress DOUBLE PRECISION,
    detail TEXT,
    lease_token TEXT,
    lease_expires_at DOUBLE PRECISION,
    worker TEXT,
    meta JSONB NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION
);
CREATE INDEX jobs_active ON jobs (seq) WHERE status IN ('queued', 'waking', 'running');
CREATE INDEX jobs_user ON jobs (user_ref, created_at);
CREATE INDEX jobs_finished ON jobs (finished_at);
CREATE TABLE state (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value JSONB NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, key)
);
