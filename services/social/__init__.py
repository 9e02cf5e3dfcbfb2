"""The social service: follows, tiered subscriptions, gifts, payment-provider webhooks."""
