-- The federationapi's record of the transactions other servers sent to this one
-- (`PUT /_matrix/federation/v1/send/{txnId}`), so that the same transaction sent again (a
-- retry after a lost answer) gets the stored answer without being processed twice. One row
-- per (origin, transaction ID), written once the transaction was processed; kept for a day,
-- as Synapse keeps them.
CREATE TABLE federationapi_received_transactions (
    -- The sending server, as its X-Matrix signature proved.
    origin TEXT NOT NULL,
    -- The transaction ID of the request path, unique per origin.
    txn_id TEXT NOT NULL,
    -- The answer given, JSON (`{"pdus": {event_id: {} or {"error": ...}}}`).
    response_json TEXT NOT NULL,
    -- When it was processed, ms since the epoch.
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX federationapi_received_transactions_ts ON federationapi_received_transactions (received_ts);
