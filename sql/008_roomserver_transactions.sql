-- Client transaction IDs of events sent through PUT /rooms/{roomId}/send/{type}/{txnId}:
-- a retried request with the same device and transaction ID returns the same event.
-- Owned by the roomserver.
CREATE TABLE roomserver_transactions (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
