-- Web Push sends keep why their last try failed, as webhook deliveries do, so both queues are retried by the
-- same statements (delivery_store.retry).
ALTER TABLE push_deliveries ADD COLUMN last_error text NOT NULL DEFAULT '';
