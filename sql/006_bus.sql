-- Durable, ordered streams between components (the embedded bus). A component appends its
-- outputs to the outbox in the same transaction as the change that causes them; consumers
-- read them in order and record how far they got in the same transaction as what they
-- applied.

-- The head of each stream: the position of its newest output. Taking the next position
-- updates this row, so concurrent writers of one stream get positions in commit order.
CREATE TABLE bus_streams (
    stream TEXT PRIMARY KEY,
    head BIGINT NOT NULL
);

CREATE TABLE bus_outbox (
    -- The stream, named after the producing component (e.g. roomserver).
    stream TEXT NOT NULL,
    -- 1, 2, 3, ... within the stream, without gaps, in commit order.
    position BIGINT NOT NULL,
    -- What orders outputs when the stream is partitioned (Kafka key), e.g. the room ID.
    partition_key TEXT NOT NULL,
    -- The component's Output enum, JSON.
    payload TEXT NOT NULL,
    -- When it was appended, ms since the epoch.
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (stream, position)
);

-- How far each consumer has applied its stream.
CREATE TABLE bus_offsets (
    consumer TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    position BIGINT NOT NULL
);
